#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write a tiny fake EuroSAT S1+S2 (Copernicus-Bench layout) next to this script."""

import os
import shutil

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

SIZE = 16
SPLITS = {
    'train': ['AnnualCrop_1', 'Forest_7', 'SeaLake_3', 'Residential_2029'],
    'val': ['Forest_12', 'SeaLake_40'],
    'test': ['AnnualCrop_5', 'Residential_11'],
}
# UTM zone 33N, ~10 m pixels, like TorchGeo's fake
CRS_UTM = CRS.from_epsg(32633)
PIXEL = 9.9


def write_tif(path: str, data: np.ndarray, west: float, north: float) -> None:
    """Write one (C, H, W) GeoTIFF."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    profile = {
        'driver': 'GTiff',
        'dtype': data.dtype,
        'count': data.shape[0],
        'height': data.shape[1],
        'width': data.shape[2],
        'crs': CRS_UTM,
        'transform': from_origin(west, north, PIXEL, PIXEL),
    }
    with rasterio.open(path, 'w', **profile) as f:
        f.write(data)


def main() -> None:
    """Write both sensors, the split files and the zips."""
    root = os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(0)
    for sensor in ('eurosat_s1', 'eurosat_s2'):
        shutil.rmtree(os.path.join(root, sensor), ignore_errors=True)
    for split, ids in SPLITS.items():
        for sample_id in ids:
            classname = sample_id.split('_')[0]
            west = float(rng.uniform(400_000, 600_000))
            north = float(rng.uniform(5_000_000, 5_800_000))
            # S1 backscatter in dB, S2 top-of-atmosphere reflectance x 10000
            s1 = rng.normal(-15, 5, (2, SIZE, SIZE)).astype(np.float32)
            s2 = rng.integers(0, 10_000, (13, SIZE, SIZE), dtype=np.uint16)
            for sensor, data in (('eurosat_s1', s1), ('eurosat_s2', s2)):
                path = os.path.join(
                    root, sensor, 'all_imgs', classname, f'{sample_id}.tif'
                )
                write_tif(path, data, west, north)
        # the S1 list is written in reverse order so that positional pairing fails the tests
        for sensor, order in (('eurosat_s1', ids[::-1]), ('eurosat_s2', ids)):
            with open(os.path.join(root, sensor, f'eurosat-{split}.txt'), 'w') as f:
                f.writelines(f'{sample_id}.jpg\n' for sample_id in order)
    for sensor in ('eurosat_s1', 'eurosat_s2'):
        shutil.make_archive(os.path.join(root, sensor), 'zip', root, sensor)


if __name__ == '__main__':
    main()
