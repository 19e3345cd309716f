# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from torchgeo_colearn.datamodules import kfold_split
from torchgeo_colearn.datamodules.cropharvest import CropHarvestDataModule
from torchgeo_colearn.datamodules.kfold import group_folds, latlon_blocks
from torchgeo_colearn.datamodules.lfmc import LFMCDataModule
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset

LFMC_ROOT = os.path.join(os.path.dirname(__file__), '..', 'data', 'lfmc')
CROPHARVEST_ROOT = os.path.join(os.path.dirname(__file__), '..', 'data', 'cropharvest')

pytestmark = pytest.mark.filterwarnings('ignore:.*dropped \\d+ row:UserWarning')


def uneven_groups(seed: int = 0) -> np.ndarray:
    """83 samples in 17 groups of 1 to 9 samples, shuffled."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 10, size=17)
    labels = np.repeat([f'site {i}' for i in range(17)], sizes)
    return rng.permutation(labels)


class TestSampleLevelFolds:
    def test_bit_identical_to_earlier_releases(self) -> None:
        # recorded with the release before grouped folds: results of earlier runs must reproduce
        train, val, test = kfold_split(10, 5, 0, 10)
        assert train.tolist() == [0, 1, 3, 4, 7, 9]
        assert val.tolist() == [5, 6]
        assert test.tolist() == [2, 8]
        train, val, test = kfold_split(23, 4, 2, 3, val_is_test=True)
        assert test.tolist() == [5, 6, 7, 9, 11, 18] and np.array_equal(val, test)
        assert len(train) == 17


class TestGroupedFolds:
    @pytest.mark.parametrize('num_folds', [3, 5, 10])
    def test_groups_whole_and_every_sample_tested_once(self, num_folds: int) -> None:
        groups = uneven_groups()
        tested = []
        for fold in range(num_folds):
            train, val, test = kfold_split(
                len(groups), num_folds, fold, 7, groups=groups
            )
            parts = [set(groups[train]), set(groups[val]), set(groups[test])]
            assert not parts[0] & parts[1]
            assert not parts[0] & parts[2]
            assert not parts[1] & parts[2]
            assert len(train) + len(val) + len(test) == len(groups)
            tested.extend(test.tolist())
        assert sorted(tested) == list(range(len(groups)))

    def test_balanced(self) -> None:
        groups = uneven_groups()
        sizes = [len(f) for f in group_folds(groups, 5, 0)]
        largest_group = max(np.unique(groups, return_counts=True)[1])
        assert max(sizes) - min(sizes) <= largest_group
        assert sum(sizes) == len(groups)

    def test_deterministic_from_seed(self) -> None:
        groups = uneven_groups()
        first = kfold_split(len(groups), 5, 1, 3, groups=groups)
        again = kfold_split(len(groups), 5, 1, 3, groups=groups)
        other = kfold_split(len(groups), 5, 1, 4, groups=groups)
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
        assert not all(np.array_equal(a, b) for a, b in zip(first, other))

    def test_independent_of_sample_order(self) -> None:
        groups = uneven_groups()
        order = np.random.default_rng(1).permutation(len(groups))
        folds = group_folds(groups, 4, 2)
        shuffled = group_folds(groups[order], 4, 2)
        as_sets = [set(groups[f]) for f in folds]
        assert as_sets == [set(groups[order][f]) for f in shuffled]

    def test_val_is_test(self) -> None:
        groups = uneven_groups()
        train, val, test = kfold_split(len(groups), 4, 0, 0, True, groups)
        assert np.array_equal(val, test)
        assert not set(groups[train]) & set(groups[test])

    def test_numeric_groups(self) -> None:
        groups = np.repeat(np.arange(6), 3)
        _, _, test = kfold_split(18, 3, 0, 0, groups=groups)
        assert len(set(groups[test])) == 2 and len(test) == 6

    @pytest.mark.parametrize(
        'groups,match',
        [
            (['a', 'a', 'b', 'b', 'a', 'b'], 'cannot split 2 groups into 3 folds'),
            (['a', 'b', 'c'], 'groups has 3 labels for 6 samples'),
        ],
    )
    def test_bad_groups(self, groups: list[str], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            kfold_split(6, 3, 0, 0, groups=groups)


class TestLatLonBlocks:
    def test_cells(self) -> None:
        lat = np.array([10.1, 10.4, 10.6, -0.1, 0.1])
        lon = np.array([20.2, 20.3, 20.3, 5.0, 5.0])
        blocks = latlon_blocks(lat, lon, 0.5)
        assert blocks[0] == blocks[1]
        assert len(set(blocks.tolist())) == 4
        # cells are aligned on 0 degrees: -0.1 and 0.1 fall in different cells
        assert len(set(latlon_blocks(lat, lon, 20.0).tolist())) == 3

    def test_bad_input(self) -> None:
        with pytest.raises(ValueError, match=r'sample 1 has no finite latitude'):
            latlon_blocks(np.array([1.0, np.nan]), np.array([2.0, 3.0]), 1.0)
        with pytest.raises(ValueError, match='block_size must be > 0'):
            latlon_blocks(np.array([1.0]), np.array([2.0]), 0.0)


def lfmc(**kwargs: object) -> LFMCDataModule:
    dm = LFMCDataModule(root=LFMC_ROOT, modality_groups={'s1': ['s1']}, **kwargs)  # type: ignore[arg-type]
    dm.setup('fit')
    return dm


def split(dataset: object) -> TensorMultiModalDataset:
    assert isinstance(dataset, TensorMultiModalDataset)
    return dataset


def sites(dataset: object) -> set[str]:
    return set(split(dataset).attribute('site').tolist())


class TestGroupedDataModule:
    def test_site_folds(self) -> None:
        tested: list[str] = []
        for fold in range(5):
            dm = lfmc(num_folds=5, fold=fold, group_by='site')
            train, val, test = (
                sites(dm.train_dataset),
                sites(dm.val_dataset),
                sites(dm.test_dataset),
            )
            assert len(test) == len(val) == 1 and len(train) == 3
            assert not (train & val) | (train & test) | (val & test)
            tested.extend(split(dm.test_dataset).ids or [])
            summary = dm.split_summary()
            assert summary['group_by'] == 'site'
            assert summary['test']['groups'] == 1
            assert sum(summary[s]['samples'] for s in ('train', 'val', 'test')) == 38
        assert len(tested) == len(set(tested)) == 38

    def test_default_is_sample_level(self) -> None:
        dm = lfmc()
        summary = dm.split_summary()
        assert summary['group_by'] is None
        assert summary['test'] == {'groups': 4, 'samples': 4}
        # 5 sites in 38 samples: a random fold of 4 samples shares sites with training
        assert sites(dm.test_dataset) & sites(dm.train_dataset)

    def test_latlon_blocks(self) -> None:
        dm = lfmc(num_folds=3, group_by='latlon_block', block_size=5.0)
        summary = dm.split_summary()
        assert summary['block_size'] == 5.0
        train = split(dm.train_dataset)
        blocks = latlon_blocks(train.attribute('lat'), train.attribute('lon'), 5.0)
        assert len(set(blocks.tolist())) == summary['train']['groups']

    def test_unknown_attribute(self) -> None:
        with pytest.raises(
            KeyError, match=r"group_by='region'.*'site'.*'latlon_block'"
        ):
            lfmc(num_folds=3, group_by='region')

    def test_bad_block_size(self) -> None:
        with pytest.raises(ValueError, match='block_size must be > 0'):
            LFMCDataModule(root=LFMC_ROOT, group_by='latlon_block', block_size=-1)

    def test_summary_before_setup(self) -> None:
        with pytest.raises(RuntimeError, match='after setup'):
            LFMCDataModule(root=LFMC_ROOT).split_summary()


@pytest.mark.filterwarnings('ignore:.*have no.*:UserWarning')
def test_cropharvest_grouped_by_source_dataset(tmp_path: Path) -> None:
    root = str(tmp_path / 'cropharvest')
    shutil.copytree(CROPHARVEST_ROOT, root, ignore=shutil.ignore_patterns('data.py'))
    tested: list[str] = []
    for fold in range(3):
        dm = CropHarvestDataModule(root, fold=fold, num_folds=3, group_by='dataset')
        dm.setup('fit')
        parts = [split(d) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
        names = [set(p.attribute('dataset').tolist()) for p in parts]
        assert len(names[2]) == 1 and not names[2] & (names[0] | names[1])
        assert not names[0] & names[1]
        tested.extend(parts[2].ids or [])
    # geowiki-landcover-2017, lem-brazil and central-asia; togo-eval rows are test rows
    assert len(tested) == len(set(tested)) == 40
