#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write a fake LFMC table (kkraoj/lfmc_from_sar CSV) and TorchGeo-style GeoJSON files."""

import json
import os
import shutil
from collections.abc import Hashable, Mapping

import numpy as np
import pandas as pd

STEPS = ('t-3', 't-2', 't-1', 't')
STATIC = ('slope', 'elevation', 'canopy_height', 'forest_cover', 'silt', 'sand', 'clay')
OPTICAL = ('red', 'green', 'blue', 'swir', 'nir')
INDICES = ('ndvi', 'ndwi', 'nirv')
RATIOS = tuple(f'{s}_{o}' for s in ('vv', 'vh') for o in (*OPTICAL, *INDICES))
DYNAMIC = ('vv', 'vh', *OPTICAL, *INDICES, *RATIOS, 'vh_vv')
GLOBCOVER = (14, 20, 30, 50, 70, 90, 100, 110, 130, 140, 150, 160)

# site name: (latitude, longitude, number of samples)
SITES = {
    'Blackstone': (42.44111111, -115.8855556, 8),
    'Mt. Emma': (37.38833333, -118.8436111, 7),
    'Hall Creek': (46.31694444, -111.7711111, 6),
    'Bitter Canyon': (34.53555556, -118.6152778, 9),
    'Pebble Beach': (36.58138889, -121.9552778, 8),
}
# Hall Creek has a second coordinate entry: its first samples appear twice, like the real table
SECOND_ENTRY = ('Hall Creek', (42.65111111, -108.4475), 2)
# the GeoJSON layout gets the first samples of the de-duplicated table, then every repeated row
GEOJSON_SAMPLES = 4

ROOT = os.path.dirname(os.path.abspath(__file__))


def header() -> list[str]:
    """Return the 142 field names of training_features.csv (the first, the index, is empty)."""
    static_t = [f'{v}(t)' for v in STATIC]
    dynamic = [f'{v}({s})' for s in STEPS for v in DYNAMIC]
    static_past = [f'{v}({s})' for s in STEPS[:3] for v in STATIC]
    return [
        '',
        'percent(t)',
        'date',
        'site',
        *static_t,
        *dynamic,
        *static_past,
        'latitude',
        'longitude',
    ]


def monthly(rng: np.random.Generator, months: int) -> dict[str, np.ndarray]:
    """Draw one site's monthly composites of every dynamic variable."""
    vv = rng.normal(-11, 2, months)
    vh = vv + rng.normal(-6.7, 1.2, months)
    nir = rng.uniform(1500, 3500, months)
    red = nir * rng.uniform(0.3, 0.8, months)
    series = {
        'vv': vv,
        'vh': vh,
        'red': red,
        'green': red * rng.uniform(0.8, 0.95, months),
        'blue': red * rng.uniform(0.55, 0.75, months),
        'swir': nir * rng.uniform(0.8, 1.3, months),
        'nir': nir,
    }
    series['ndvi'] = (nir - red) / (nir + red)
    series['ndwi'] = (nir - series['swir']) / (nir + series['swir'])
    series['nirv'] = series['ndvi'] * nir
    for sar in ('vv', 'vh'):
        for optical in (*OPTICAL, *INDICES):
            series[f'{sar}_{optical}'] = series[sar] / series[optical]
    series['vh_vv'] = vh - vv
    return series


def site_rows(
    rng: np.random.Generator, site: str, count: int, first_index: int
) -> list[dict[str, object]]:
    """Draw *count* consecutive monthly samples of a site."""
    series = monthly(rng, count + 3)
    start = pd.Timestamp(2015 + int(rng.integers(0, 3)), int(rng.integers(1, 13)), 1)
    dates = pd.date_range(start, periods=count, freq='ME')
    silt, sand = rng.integers(10, 45, 2)
    static = {
        'slope': float(rng.uniform(0.1, 10)),
        'elevation': int(rng.integers(40, 3100)),
        'canopy_height': int(rng.integers(0, 36)),
        'forest_cover': int(rng.choice(GLOBCOVER)),
        'silt': float(silt),
        'sand': float(sand),
        'clay': float(100 - silt - sand),
    }
    rows = []
    for k in range(count):
        row: dict[str, object] = {
            '': first_index + k,
            'percent(t)': float(rng.uniform(40, 220)),
            'date': dates[k].strftime('%Y-%m-%d'),
            'site': site,
        }
        for step_offset, step in enumerate(STEPS):
            for variable in DYNAMIC:
                row[f'{variable}({step})'] = float(series[variable][k + step_offset])
        for step in STEPS:
            row.update({f'{v}({step})': value for v, value in static.items()})
        rows.append(row)
    return rows


def geojson_feature(row: Mapping[Hashable, object]) -> dict[str, object]:
    """Turn a CSV row into a TorchGeo WesternUSALiveFuelMoisture Feature."""
    date = pd.Timestamp(str(row['date']))
    properties: dict[str, object] = {
        'percent(t)': row['percent(t)'],
        'site': row['site'],
        'date': f'{date.month}/{date.day}/{date.year % 100:02d}',
    }
    for step in ('t', 't-1', 't-2', 't-3'):
        for variable in (*STATIC, *DYNAMIC):
            properties[f'{variable}({step})'] = row[f'{variable}({step})']
    return {
        'type': 'Feature',
        'properties': properties,
        'geometry': {
            'type': 'Point',
            'coordinates': [row['longitude'], row['latitude']],
        },
    }


def main() -> None:
    """Write training_features.csv and su_sar_moisture_content/feature_*.geojson."""
    rng = np.random.default_rng(0)
    rows = []
    index = 198
    for site, (lat, lon, count) in SITES.items():
        site_block = site_rows(rng, site, count, index)
        for row in site_block:
            row.update(latitude=lat, longitude=lon)
        rows.extend(site_block)
        if site == SECOND_ENTRY[0]:
            (lat2, lon2), repeats = SECOND_ENTRY[1], SECOND_ENTRY[2]
            rows.extend(
                {**row, 'latitude': lat2, 'longitude': lon2}
                for row in site_block[:repeats]
            )
        index += count
    # rows of the same index are adjacent, as in the real table
    rows.sort(key=lambda row: int(str(row[''])))
    table = pd.DataFrame(rows, columns=header())
    table.to_csv(os.path.join(ROOT, 'training_features.csv'), index=False)

    directory = os.path.join(ROOT, 'su_sar_moisture_content')
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    repeated = table[table[''].duplicated(keep=False)]
    selected = pd.concat(
        [table.drop_duplicates('', keep='last').head(GEOJSON_SAMPLES), repeated]
    )
    for number, record in enumerate(selected.to_dict('records'), start=1):
        path = os.path.join(directory, f'feature_{number:04}.geojson')
        with open(path, 'w') as f:
            json.dump(geojson_feature(record), f)


if __name__ == '__main__':
    main()
