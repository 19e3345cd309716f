#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Grouped fold sizes and load times of the real datasets in ../shared/data.

Prints, for LFMC and fuel moisture grouped by site, the groups and samples of every test fold; then the
time to load each real dataset into memory (rounds interleaved over the datasets; median and range of
the rounds, with the load average before and after), skipping the folders that are absent.

    OMP_NUM_THREADS=1 python benchmarks/real_data.py [--folds 10] [--seed 10] [--rounds 5]
"""

import argparse
import os
import time
import warnings
from collections.abc import Callable

from timing import load_average, spread  # run as a file: this folder is on sys.path

from torchgeo_colearn.datamodules import (
    FuelMoistureDataModule,
    KFoldDataModule,
    LFMCDataModule,
)
from torchgeo_colearn.datasets import (
    LFMC,
    AlgaeBlooms,
    CropHarvestExport,
    CropHarvestExports,
    FuelMoisture,
    TreeSatAITimeSeries,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, '..', 'shared', 'data')


def fold_sizes(name: str, make: Callable[[int], KFoldDataModule], folds: int) -> None:
    rows = []
    for fold in range(folds):
        dm = make(fold)
        dm.setup('fit')
        summary = dm.split_summary()
        rows.append((summary['test']['groups'], summary['test']['samples']))
    groups = [g for g, _ in rows]
    samples = [s for _, s in rows]
    print(f'{name}: test folds (groups, samples): {rows}')
    print(
        f'  groups {min(groups)}-{max(groups)} per fold, samples {min(samples)}-{max(samples)} '
        f'(total {sum(samples)} samples, {sum(groups)} groups)'
    )


def treesatai_labels(root: str) -> None:
    # the label parsing only: the rasters are not shipped (see tests/datasets/test_treesatai_ts_real.py)
    import tempfile
    from unittest import mock

    with tempfile.TemporaryDirectory() as tmp:
        for folder in ('split', 'labels', 'aerial'):
            os.makedirs(os.path.join(tmp, folder))
        name = 'TreeSatBA_v9_60m_multi_labels.json'
        os.symlink(
            os.path.abspath(os.path.join(root, name)), os.path.join(tmp, 'labels', name)
        )
        lst = 'train_filenames.lst'
        os.symlink(
            os.path.abspath(os.path.join(root, lst)), os.path.join(tmp, 'split', lst)
        )
        with mock.patch.object(
            TreeSatAITimeSeries,
            '_index_aerial',
            lambda self: dict.fromkeys(self.names, ''),
        ):
            TreeSatAITimeSeries(tmp, 'train', sensors=('aerial',))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--folds', type=int, default=10)
    parser.add_argument('--seed', type=int, default=10)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter('ignore')

    lfmc = os.path.join(DATA, 'lfmc')
    fuel = os.path.join(DATA, 'presto_fuel_moisture')
    if os.path.isdir(lfmc):
        fold_sizes(
            'LFMC by site',
            lambda f: LFMCDataModule(
                lfmc, num_folds=args.folds, fold=f, seed=args.seed, group_by='site'
            ),
            args.folds,
        )
    if os.path.isdir(fuel):
        fold_sizes(
            'fuel moisture by site (k folds over all samples)',
            lambda f: FuelMoistureDataModule(
                root=fuel, split='kfold', num_folds=args.folds, fold=f, seed=args.seed
            ),
            args.folds,
        )

    export = os.path.join(DATA, 'cropharvest_export')
    loaders: dict[str, tuple[str, Callable[[], object]]] = {
        'LFMC (CSV, 2578 samples)': (lfmc, lambda: LFMC(lfmc).to_tensor_dataset()),
        'fuel moisture (2313 samples)': (
            fuel,
            lambda: FuelMoisture(fuel).to_tensor_dataset(),
        ),
        'algae blooms (1122 samples)': (
            os.path.join(DATA, 'presto_algae_blooms'),
            lambda: AlgaeBlooms(
                os.path.join(DATA, 'presto_algae_blooms')
            ).to_tensor_dataset(),
        ),
        # one sample read through the dataset (to_tensor_dataset would write its cache into the
        # shared folder)
        'CropHarvest export: 1 labelled sample': (
            export,
            lambda: CropHarvestExports(export)[0],
        ),
        'CropHarvest export: whole 17 x 17 raster': (
            export,
            lambda: CropHarvestExport(
                os.path.join(export, '98-togo_2019-02-06_2020-02-01.tif')
            ).read(),
        ),
        'TreeSatAI labels, train split (45,337 names)': (
            os.path.join(DATA, 'treesatai_labels'),
            lambda: treesatai_labels(os.path.join(DATA, 'treesatai_labels')),
        ),
    }
    present = {
        name: load for name, (root, load) in loaders.items() if os.path.isdir(root)
    }
    times: dict[str, list[float]] = {name: [] for name in present}
    load_before = load_average()
    for _ in range(args.rounds):
        for name, load in present.items():
            start = time.perf_counter()
            load()
            times[name].append(time.perf_counter() - start)
    print(
        f'load times over {args.rounds} interleaved rounds, median [min-max] s (load average '
        f'before {load_before}, after {load_average()}):'
    )
    for name, values in times.items():
        print(f'  {name}: {spread(values, 3)}')


if __name__ == '__main__':
    main()
