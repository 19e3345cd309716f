#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write a fake CropHarvest (Zenodo 7257688 layout): labels.geojson and features/arrays/*.h5."""

import json
import os
import shutil
from typing import Any

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
ARRAYS = os.path.join(ROOT, 'features', 'arrays')

# (label, classification_label, is_crop): one crop of each FAO group, cycled over the labelled rows
CROPS = (
    ('pasture', 'non_crop', 0),
    ('maize', 'cereals', 1),
    ('tomato', 'vegetables_melons', 1),
    ('banana', 'fruits_nuts', 1),
    ('sunflower', 'oilseeds', 1),
    ('cassava', 'root_tuber', 1),
    ('coffee', 'beverage_spice', 1),
    ('beans', 'leguminous', 1),
    ('sugarcane', 'sugar', 1),
    ('hay', 'other', 1),
)

# dataset: (rows, rows without an array at the end, centre lat, centre lon, export year)
DATASETS = {
    # crop / non-crop only: null label and classification_label
    'geowiki-landcover-2017': (10, 0, 5.0, 20.0, 2018),
    # crop types, with field polygons
    'lem-brazil': (15, 0, -12.0, -45.0, 2020),
    # crop types; the last two rows were never exported
    'central-asia': (17, 2, 41.0, 64.0, 2019),
    # CropHarvest test region: is_test true, arrays present
    'togo-eval': (3, 0, 8.5, 1.0, 2020),
}
# an array whose row is missing from labels.geojson
ORPHAN = (99, 'lem-brazil')


def properties(
    rng: np.random.Generator, dataset: str, index: int, crop_number: int
) -> dict[str, Any]:
    """Return one label row, with every property of the real labels.geojson, in its order."""
    _, _, lat, lon, year = DATASETS[dataset]
    label: str | None = None
    group: str | None = None
    planting = harvest = None
    match dataset:
        case 'geowiki-landcover-2017':
            is_crop = index % 2
        case 'togo-eval':
            is_crop = int(index != 1)
            if index == 0:
                label, group = 'maize', 'cereals'
        case _:
            label, group, is_crop = CROPS[crop_number % len(CROPS)]
            if dataset == 'central-asia':
                planting = f'{year - 1}-04-15T00:00:00'
                harvest = f'{year - 1}-09-20T00:00:00'
    return {
        'harvest_date': harvest,
        'planting_date': planting,
        'label': label,
        'classification_label': group,
        'index': index,
        'is_crop': is_crop,
        'lat': round(lat + rng.uniform(-1, 1), 6),
        'lon': round(lon + rng.uniform(-1, 1), 6),
        'dataset': dataset,
        'collection_date': f'{year - 1}-0{rng.integers(5, 10)}-01T00:00:00',
        'export_end_date': f'{year}-02-01T00:00:00',
        'externally_contributed_dataset': False,
        'is_test': dataset == 'togo-eval',
    }


def geometry(row: dict[str, Any]) -> dict[str, Any]:
    """Return a point, or a small field polygon for lem-brazil."""
    lon, lat = row['lon'], row['lat']
    if row['dataset'] != 'lem-brazil':
        return {'type': 'Point', 'coordinates': [lon, lat]}
    d = 0.001
    ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
    return {'type': 'Polygon', 'coordinates': [ring]}


def array(rng: np.random.Generator, is_crop: int) -> np.ndarray:
    """Return a float64 (12, 18) pixel time series in the CropHarvest band order and units."""
    months = 12
    season = np.sin(np.linspace(0, 2 * np.pi, months))[:, None]
    s1 = rng.normal([-11.0, -18.0], 1.5, (months, 2))  # VV, VH (dB)
    s2 = rng.normal(1500 + 800 * is_crop * season, 300, (months, 11)).round()  # B2..B12
    weather = np.column_stack(
        [rng.normal(295, 4, months), rng.gamma(1.0, 0.002, months)]
    )  # temperature_2m (K), total_precipitation (m)
    dem = np.tile([rng.uniform(50, 1500), rng.uniform(0, 15)], (months, 1))
    red, nir = s2[:, 2], s2[:, 6]  # B4, B8
    ndvi = ((nir - red) / (nir + red))[:, None]
    return np.concatenate([s1, s2, weather, dem, ndvi], axis=1)


def write_array(path: str, data: np.ndarray, row: dict[str, Any]) -> None:
    """Write one h5 file like cropharvest's Engineer: dataset ``array`` plus attributes."""
    with h5py.File(path, 'w') as f:
        f.create_dataset('array', data=data)
        f.attrs['dataset'] = row['dataset']
        f.attrs['label_lat'] = row['lat']
        f.attrs['label_lon'] = row['lon']
        f.attrs['instance_lat'] = row['lat'] + 5e-5
        f.attrs['instance_lon'] = row['lon'] - 5e-5
        f.attrs['is_crop'] = row['is_crop']
        if row['label'] is not None:
            f.attrs['label'] = row['label']


def main() -> None:
    """Write labels.geojson and the arrays next to this script."""
    rng = np.random.default_rng(0)
    shutil.rmtree(os.path.join(ROOT, 'features'), ignore_errors=True)
    os.makedirs(ARRAYS)

    rows = []
    crop_number = 0
    for dataset, (count, without_array, *_) in DATASETS.items():
        for index in range(count):
            row = properties(rng, dataset, index, crop_number)
            crop_number += dataset in ('lem-brazil', 'central-asia')
            rows.append(row)
            if index < count - without_array:
                path = os.path.join(ARRAYS, f'{index}_{dataset}.h5')
                write_array(path, array(rng, row['is_crop']), row)
    orphan = properties(rng, ORPHAN[1], ORPHAN[0], 0)
    write_array(
        os.path.join(ARRAYS, f'{ORPHAN[0]}_{ORPHAN[1]}.h5'), array(rng, 1), orphan
    )

    # one feature per line, like the GeoJSON that OGR writes
    features = [
        json.dumps({'type': 'Feature', 'properties': row, 'geometry': geometry(row)})
        for row in rows
    ]
    with open(os.path.join(ROOT, 'labels.geojson'), 'w') as f:
        f.write('{\n"type": "FeatureCollection",\n')
        f.write(
            '"crs": { "type": "name", "properties": '
            '{ "name": "urn:ogc:def:crs:OGC:1.3:CRS84" } },\n'
        )
        f.write('"features": [\n' + ',\n'.join(features) + '\n]\n}\n')


if __name__ == '__main__':
    main()
