#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write a fake TreeSatAI Benchmark Archive in the layout of TorchGeo 0.8.1's TreeSatAI dataset."""

import json
import os

import numpy as np
import rasterio
from rasterio.transform import from_origin

ROOT = os.path.dirname(os.path.abspath(__file__))
# sensor: (bands, size in pixels, dtype): aerial CIR at 0.2 m is 304 px in the real archive
SENSORS = {'aerial': (4, 8, 'uint8'), 's1': (3, 6, 'float32'), 's2': (12, 6, 'uint16')}
GENERA = ('Abies', 'Fagus', 'Picea', 'Pinus', 'Quercus')
TRAIN = [f'{GENERA[i % 5]}_{i}_{1000 + i}_WEFL_NLF.tif' for i in range(8)]
TEST = [f'{GENERA[i % 5]}_{i}_{2000 + i}_BI_NLF.tif' for i in range(3)]


def main() -> None:
    rng = np.random.default_rng(0)
    labels = {}
    for name in TRAIN + TEST:
        first = name.split('_')[0]
        second = GENERA[int(rng.integers(0, 5))]
        share = round(float(rng.uniform(0.5, 0.9)), 5)
        labels[name] = [[first, share], [second, round(1 - share, 5)]]
        for sensor, (bands, size, dtype) in SENSORS.items():
            folder = os.path.join(ROOT, sensor, '60m')
            os.makedirs(folder, exist_ok=True)
            data: np.ndarray
            match sensor:
                case 'aerial':
                    data = rng.integers(0, 256, (bands, size, size))
                case 's1':
                    data = rng.normal(-12, 4, (bands, size, size))
                case _:
                    data = rng.integers(0, 4000, (bands, size, size))
            profile = {
                'driver': 'GTiff',
                'dtype': dtype,
                'count': bands,
                'height': size,
                'width': size,
                'crs': 'EPSG:25832',
                'transform': from_origin(550_000, 5_800_000, 60 / size, 60 / size),
            }
            with rasterio.open(os.path.join(folder, name), 'w', **profile) as dst:
                dst.write(data.astype(dtype))
    os.makedirs(os.path.join(ROOT, 'labels'), exist_ok=True)
    with open(
        os.path.join(ROOT, 'labels', 'TreeSatBA_v9_60m_multi_labels.json'), 'w'
    ) as f:
        json.dump(labels, f, indent=1)
    # the official lists use CRLF line endings
    for split, names in (('train', TRAIN), ('test', TEST)):
        with open(os.path.join(ROOT, f'{split}_filenames.lst'), 'w', newline='') as f:
            f.write('\r\n'.join(names) + '\r\n')


if __name__ == '__main__':
    main()
