#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write a synthetic raster in the CropHarvest / Earth Engine export layout, for timing `colearn map`.

206 bands named as an export (12 monthly steps of VV, VH, B1..B12, temperature_2m, total_precipitation, then
elevation, slope; torchgeo_colearn.datasets.cropharvest_export.export_band_names), float32 (the real exports
are float64: 2048 x 2048 pixels make 3.5 GB in float32), tiled 256 x 256 and pixel-interleaved like the real
ones, EPSG:4326 at 10 m. Values in the exports' ranges, smooth in space, with 1 % of the Sentinel-2 values
missing (NaN). Written strip by strip, so the raster may be larger than memory.

    python benchmarks/make_export_raster.py OUTPUT.tif [--size 2048] [--seed 0]
    OMP_NUM_THREADS=1 /usr/bin/time -v colearn map --ckpt_path CKPT --modality s2 --raster OUTPUT.tif \
        --output map.tif
"""

import argparse

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from torchgeo_colearn.datasets.cropharvest_export import (
    DYNAMIC_BANDS,
    export_band_names,
)

PIXEL = 8.983152841195215e-05  # 10 m in degrees, as the real exports
STEPS = 12


def strip(rng: np.random.Generator, rows: int, width: int) -> np.ndarray:
    """Return (206, rows, width) float32 values in the ranges of an export."""
    data = np.empty((len(export_band_names()), rows, width), np.float32)
    field = rng.uniform(0, 1, (1, rows, width)).astype(np.float32)
    for step in range(STEPS):
        first = step * len(DYNAMIC_BANDS)
        season = 0.5 + 0.5 * np.sin(2 * np.pi * step / STEPS)
        data[first : first + 2] = (
            -20 + 8 * field + rng.normal(0, 1, (2, rows, width))
        )  # VV, VH (dB)
        optical = 500 + 2500 * season * field + rng.normal(0, 100, (13, rows, width))
        optical[rng.uniform(size=optical.shape) < 0.01] = np.nan
        data[first + 2 : first + 15] = optical  # B1..B12 (reflectance x 10^4)
        data[first + 15] = 295 + 5 * season  # temperature_2m (K)
        data[first + 16] = 0.005 * season  # total_precipitation (m)
    data[-2] = 200 + 100 * field[0]  # elevation (m)
    data[-1] = 5 * field[0]  # slope (degrees)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('output')
    parser.add_argument(
        '--size', type=int, default=2048, help='height and width in pixels'
    )
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    names = export_band_names()
    profile = {
        'driver': 'GTiff',
        'dtype': 'float32',
        'count': len(names),
        'height': args.size,
        'width': args.size,
        'crs': 'EPSG:4326',
        'transform': from_origin(1.4, 7.7, PIXEL, PIXEL),
        'tiled': True,
        'blockxsize': 256,
        'blockysize': 256,
        'interleave': 'pixel',
        'BIGTIFF': 'YES',
    }
    rng = np.random.default_rng(args.seed)
    with rasterio.open(args.output, 'w', **profile) as dst:
        dst.descriptions = names
        for row in range(0, args.size, 256):
            rows = min(256, args.size - row)
            dst.write(
                strip(rng, rows, args.size), window=Window(0, row, args.size, rows)
            )
    print(f'Wrote {args.output}: {args.size} x {args.size} pixels, {len(names)} bands')


if __name__ == '__main__':
    main()
