#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write fake Presto evaluation folders (fuel_moisture/, algae_blooms/) in the real NumPy layout."""

import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))


def arrays(rng: np.random.Generator, count: int, steps: int) -> np.ndarray:
    """(N, T, 18) float64 in the CropHarvest band order, with realistic ranges."""
    x = np.empty((count, steps, 18))
    x[..., 0] = rng.normal(-12, 3, (count, steps)).clip(-30, -1)  # VV, dB
    x[..., 1] = x[..., 0] - rng.uniform(4, 9, (count, steps))  # VH, dB
    x[..., 2:13] = rng.uniform(300, 4000, (count, steps, 11)).round()  # S2 x 10^4
    x[..., 13] = rng.uniform(265, 305, (count, steps))  # temperature, K
    x[..., 14] = rng.uniform(0, 0.01, (count, steps))  # precipitation, m
    x[..., 15] = rng.uniform(30, 3000, (count, 1)).round()  # elevation, m: static
    x[..., 16] = rng.uniform(0, 25, (count, 1))  # slope, degrees: static
    b7, b3 = x[..., 7], x[..., 3]
    x[..., 17] = (b7 - b3) / (b7 + b3)  # the exporter's "NDVI"
    return x


def calendar(rng: np.random.Generator, count: int, steps: int) -> dict[str, np.ndarray]:
    """Month of each step (consecutive from a random start) and a Dynamic World class per step."""
    months = (rng.integers(0, 12, count)[:, None] + np.arange(steps)) % 12
    land_cover = rng.integers(0, 9, (count, steps)).astype(np.uint8)
    return {'month': months.astype(np.int64), 'dynamic_world': land_cover}


def save(folder: str, **arrays: np.ndarray) -> None:
    """Write each array as ``<folder>/<name>.npy``."""
    os.makedirs(folder, exist_ok=True)
    for name, array in arrays.items():
        np.save(os.path.join(folder, f'{name}.npy'), array)


def fuel_moisture(rng: np.random.Generator) -> None:
    """40 samples of 8 sites (2 to 8 dates each), 3 steps; sites 0-5 train, 6-7 test."""
    folder = os.path.join(ROOT, 'fuel_moisture')
    sizes = [8, 6, 5, 5, 4, 4, 4, 4]
    sites = np.repeat([f'Site {i}, CA' for i in range(len(sizes))], sizes)
    count = len(sites)
    order = rng.permutation(count)
    sites = sites[order]
    split = {f'Site {i}, CA': 'test' if i >= 6 else 'train' for i in range(len(sizes))}
    is_test = np.array([split[s] == 'test' for s in sites], dtype=np.int64)
    centres = {s: (rng.uniform(33, 45), rng.uniform(-122, -105)) for s in split}
    save(
        folder,
        s1_s2_era5_srtm=arrays(rng, count, 3),
        target=rng.uniform(40, 250, count),
        site=sites,
        is_test=is_test,
        latlon=np.array([centres[s] for s in sites]),
        **calendar(rng, count, 3),
    )
    with open(os.path.join(folder, 'train_test_split.json'), 'w') as f:
        json.dump(split, f, indent=1)


def algae_blooms(rng: np.random.Generator) -> None:
    """30 samples, 12 steps, severity 1-5 (every class present), 20 train / 10 test."""
    count = 30
    target = rng.permutation(
        np.concatenate([np.arange(1, 6), rng.integers(1, 5, count - 5)])
    )
    is_test = rng.permutation(np.repeat([0, 1], [20, 10])).astype(np.int64)
    latlon = np.stack([rng.uniform(30, 45, count), rng.uniform(-120, -75, count)], 1)
    save(
        os.path.join(ROOT, 'algae_blooms'),
        s1_s2_era5_srtm=arrays(rng, count, 12),
        target=target.astype(np.int64),
        is_test=is_test,
        uid=np.array([f'a{i:03d}' for i in range(count)]),
        latlon=latlon,
        **calendar(rng, count, 12),
    )


if __name__ == '__main__':
    generator = np.random.default_rng(0)
    fuel_moisture(generator)
    algae_blooms(generator)
