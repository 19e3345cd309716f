#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write a tiny fake TreeSatAI-Time-Series in the layout of the Hugging Face archives."""

import json
import os
import shutil
from datetime import datetime, timedelta

import h5py
import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

SIZE = 32  # aerial pixels (304 in the real data)
HERE = os.path.dirname(os.path.abspath(__file__))

# Patch names follow genus_species_ageclass_sampleID_dataset_source; labels are [genus, area share].
SPLITS = {
    'train': {
        'Abies_alba_1_1005_WEFL_NLF': [['Abies', 0.82], ['Picea', 0.18]],
        'Fagus_sylvatica_6_154201_BI_NLF': [['Fagus', 0.8], ['Quercus', 0.2]],
        'Tilia_spec._9_99911_WEFL_NLF': [['Tilia', 1.0]],
        # Betula and Larix are below the 0.07 threshold
        'Pinus_sylvestris_3_42145_WEFL_NLF': [
            ['Pinus', 0.93],
            ['Betula', 0.05],
            ['Larix', 0.02],
        ],
        # no genus above the threshold: dropped
        'Quercus_robur_2_71203_WEFL_NLF': [['Quercus', 0.05], ['Fagus', 0.03]],
    },
    'val': {
        'Picea_abies_4_20548_WEFL_NLF': [['Picea', 1.0]],
        'Larix_decidua_3_11811_BI_NLF': [['Larix', 0.7], ['Pseudotsuga', 0.3]],
    },
    'test': {
        'Quercus_petraea_5_32870_WEFL_NLF': [['Quercus', 0.6], ['Fagus', 0.4]],
        'Betula_spec._2_3320_BI_NLF': [['Betula', 0.9], ['Alnus', 0.1]],
    },
}
# the real labels file covers all 50,381 patches, more than the three lists
UNLISTED = {'Acer_pseudoplatanus_4_6625_WEFL_NLF.tif': [['Acer', 1.0]]}

TILES = ('T32UNC', 'T32UND', 'T32UPC', 'T32UPD')


def acquisitions(
    rng: np.random.Generator, year: int, count: int, hour: int
) -> list[datetime]:
    days = np.sort(rng.choice(365, size=count, replace=False))
    return [
        datetime(year, 1, 1, hour) + timedelta(days=int(d), seconds=int(s))
        for d, s in zip(days, rng.integers(0, 3600, count))
    ]


def s1_products(
    rng: np.random.Generator, year: int, count: int, hour: int
) -> np.ndarray:
    names = []
    for start in acquisitions(rng, year, count, hour):
        stop = start + timedelta(seconds=25)
        names.append(
            f'S1{"AB"[int(rng.integers(2))]}_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_'
            f'{stop:%Y%m%dT%H%M%S}_{int(rng.integers(10000, 40000)):06d}_'
            f'{int(rng.integers(0x10000, 0x40000)):06X}_{int(rng.integers(0x10000)):04X}'
        )
    return np.array(names, dtype='S')


def s2_products(rng: np.random.Generator, year: int, count: int) -> np.ndarray:
    names = []
    for start in acquisitions(rng, year, count, 10):
        names.append(
            f'S2{"AB"[int(rng.integers(2))]}_MSIL2A_{start:%Y%m%dT%H%M%S}_N0208_'
            f'R{int(rng.choice([8, 65, 108])):03d}_{TILES[int(rng.integers(4))]}_'
            f'{start + timedelta(hours=3):%Y%m%dT%H%M%S}'
        )
    return np.array(names, dtype='S')


def write_aerial(rng: np.random.Generator, path: str) -> None:
    profile = {
        'driver': 'GTiff',
        'dtype': 'uint8',
        'count': 4,
        'height': SIZE,
        'width': SIZE,
        'crs': CRS.from_epsg(25832),
        'transform': from_origin(
            float(rng.uniform(5e5, 6e5)), float(rng.uniform(5.75e6, 5.9e6)), 0.2, 0.2
        ),
    }
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(rng.integers(0, 256, (4, SIZE, SIZE), dtype=np.uint8))


def write_time_series(rng: np.random.Generator, path: str, year: int) -> None:
    t_asc, t_des, t_s2 = (int(t) for t in rng.integers([3, 4, 2], [8, 10, 7]))
    with h5py.File(path, 'w') as f:
        # over Lower Saxony, ascending passes are in the evening, descending ones in the morning
        for orbit, count, hour in (('asc', t_asc, 17), ('des', t_des, 5)):
            # backscatter in dB, VV around -12, VH around -18, with a few missing values
            data = rng.normal([-12, -18], 3, (count, 6, 6, 2)).transpose(0, 3, 1, 2)
            data[rng.random(data.shape) < 0.02] = np.nan
            f.create_dataset(f'sen-1-{orbit}-data', data=data.astype(np.float32))
            f.create_dataset(
                f'sen-1-{orbit}-products', data=s1_products(rng, year, count, hour)
            )
        reflectance = rng.integers(100, 5000, (t_s2, 10, 6, 6), dtype=np.uint16)
        f.create_dataset('sen-2-data', data=reflectance)
        masks = np.where(
            rng.random((t_s2, 2, 6, 6)) < 0.8, 0, rng.integers(0, 101, (t_s2, 2, 6, 6))
        )
        f.create_dataset('sen-2-masks', data=masks.astype(np.uint8))
        f.create_dataset('sen-2-products', data=s2_products(rng, year, t_s2))


def main() -> None:
    rng = np.random.default_rng(0)
    for folder in ('aerial', 'labels', 'sentinel-ts', 'split'):
        shutil.rmtree(os.path.join(HERE, folder), ignore_errors=True)
        os.makedirs(os.path.join(HERE, folder))

    labels = {}
    for split, patches in SPLITS.items():
        with open(os.path.join(HERE, 'split', f'{split}_filenames.lst'), 'w') as f:
            f.writelines(f'{name}.tif\n' for name in patches)
        for name, genera in patches.items():
            labels[f'{name}.tif'] = genera
            write_aerial(rng, os.path.join(HERE, 'aerial', f'{name}.tif'))
            year = int(rng.choice([2017, 2018, 2019, 2020]))
            write_time_series(
                rng, os.path.join(HERE, 'sentinel-ts', f'{name}_{year}.h5'), year
            )
    labels.update(UNLISTED)
    with open(
        os.path.join(HERE, 'labels', 'TreeSatBA_v9_60m_multi_labels.json'), 'w'
    ) as f:
        json.dump(labels, f)


if __name__ == '__main__':
    main()
