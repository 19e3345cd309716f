#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write fake raw CropHarvest Earth Engine exports (GeoTIFF, 206 named bands) and their labels.geojson."""

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine, from_origin

from torchgeo_colearn.datasets.cropharvest_export import (
    DYNAMIC_BANDS,
    export_band_names,
)

ROOT = os.path.dirname(os.path.abspath(__file__))
STEPS = 12
NAMES = export_band_names(STEPS)
PIXEL = 8.983152841195215e-05  # 10 m in degrees, as the real exports

# file name: (height, width, top-left lon, top-left lat, label pixel (row, col), label row)
EXPORTS: dict[str, tuple[int, int, float, float, tuple[int, int], dict[str, Any]]] = {
    '3-kenya_2018-02-06_2019-02-01.tif': (
        4,
        5,
        36.2,
        0.4,
        (1, 3),
        {'label': 'maize', 'classification_label': 'cereals', 'is_crop': 1},
    ),
    '12-togo-eval_2019-02-06_2020-02-01.tif': (
        4,
        4,
        1.1,
        8.3,
        (2, 1),
        {'label': None, 'classification_label': 'non_crop', 'is_crop': 0},
    ),
}


def bands(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(206, H, W) float64 with realistic ranges."""
    data = np.empty((len(NAMES), height, width))
    for t in range(STEPS):
        step = data[t * len(DYNAMIC_BANDS) : (t + 1) * len(DYNAMIC_BANDS)]
        step[0] = rng.uniform(-20, -8, (height, width))  # VV, dB
        step[1] = rng.uniform(-28, -15, (height, width))  # VH, dB
        step[2:15] = rng.integers(300, 3000, (13, height, width))  # S2 x 10^4
        step[15] = rng.uniform(290, 305)  # temperature, K: one ERA5 cell
        step[16] = rng.uniform(0, 0.01)  # precipitation, m
    data[-2] = rng.integers(100, 400, (height, width))  # elevation, m
    data[-1] = rng.uniform(0, 10, (height, width))  # slope, degrees
    return data


def write(
    path: str,
    data: np.ndarray,
    names: Sequence[str],
    transform: Affine,
    crs: str = 'EPSG:4326',
    **profile: Any,
) -> None:
    """Write a (C, H, W) array as a GeoTIFF whose band descriptions are *names*."""
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        dtype=data.dtype,
        count=data.shape[0],
        height=data.shape[1],
        width=data.shape[2],
        crs=crs,
        transform=transform,
        **profile,
    ) as dst:
        dst.write(data)
        dst.descriptions = tuple(names)


def main() -> None:
    rng = np.random.default_rng(0)
    features = []
    for name, (height, width, west, north, (row, col), row_props) in EXPORTS.items():
        data = bands(rng, height, width)
        if name.startswith('3-'):
            # missing values at the label pixel: VH at steps 2 and 5, B7 at step 4 (its index is 0)
            data[2 * len(DYNAMIC_BANDS) + 1, row, col] = np.nan
            data[5 * len(DYNAMIC_BANDS) + 1, row, col] = np.nan
            data[4 * len(DYNAMIC_BANDS) + DYNAMIC_BANDS.index('B7'), row, col] = np.nan
            data[-1, 0, :] = (
                np.nan
            )  # no slope on the first row, as on the edges of real exports
        else:
            data[-1, :, 1] = (
                np.nan
            )  # no slope in the label's column: the mean slope fills it
        write(
            os.path.join(ROOT, name),
            data,
            NAMES,
            from_origin(west, north, PIXEL, PIXEL),
            compress='lzw',
        )
        index, dataset = name.split('_')[0].split('-', 1)
        # the label point: inside the label pixel, off its centre
        lat = north - (row + 0.3) * PIXEL
        lon = west + (col + 0.6) * PIXEL
        features.append(feature(int(index), dataset, lat, lon, row_props))
    # a label row whose export is missing
    features.append(
        feature(
            5,
            'kenya',
            0.39,
            36.21,
            {'label': None, 'classification_label': None, 'is_crop': 0},
        )
    )
    with open(os.path.join(ROOT, 'labels.geojson'), 'w') as f:
        json.dump({'type': 'FeatureCollection', 'features': features}, f, indent=1)


def feature(
    index: int, dataset: str, lat: float, lon: float, props: dict[str, Any]
) -> dict[str, Any]:
    """A label row with every property of CropHarvest's labels.geojson."""
    d = 0.00005
    polygon = [
        [lon - d, lat - d],
        [lon + d, lat - d],
        [lon + d, lat + d],
        [lon - d, lat + d],
        [lon - d, lat - d],
    ]
    return {
        'type': 'Feature',
        'properties': {
            'harvest_date': None,
            'planting_date': None,
            'label': props['label'],
            'classification_label': props['classification_label'],
            'index': index,
            'is_crop': props['is_crop'],
            'lat': lat,
            'lon': lon,
            'dataset': dataset,
            'collection_date': '2019-05-09',
            'export_end_date': '2019-02-01' if dataset == 'kenya' else '2020-02-01',
            'is_test': dataset == 'togo-eval',
            'externally_contributed_dataset': False,
        },
        'geometry': {'type': 'Polygon', 'coordinates': [polygon]},
    }


if __name__ == '__main__':
    main()
