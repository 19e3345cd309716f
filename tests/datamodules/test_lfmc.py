# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torchgeo.main
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_colearn.channel_stats import ChannelStatsWarning
from torchgeo_colearn.datamodules.lfmc import LFMCDataModule
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset
from torchgeo_colearn.main import main
from torchgeo_colearn.trainers.colearn import CoLearnTask

from ..fakes import fast_dev_run_args

ROOT = os.path.join(os.path.dirname(__file__), '..', 'data', 'lfmc')
CONFIG = os.path.join(os.path.dirname(__file__), '..', '..', 'experiments', 'lfmc.yaml')
REAL_ROOT = os.path.join(
    os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'lfmc'
)
PAPER_GROUPS = {'s1': ['s1', 's1_ratio'], 'optical': ['optical', 'optical_indices']}

pytestmark = pytest.mark.filterwarnings('ignore:.*dropped \\d+ row:UserWarning')


def datamodule(**options: Any) -> LFMCDataModule:
    """The test table with the paper's modality groups and *options*, set up for fitting."""
    dm = LFMCDataModule(root=ROOT, modality_groups=PAPER_GROUPS, **options)
    dm.setup('fit')
    return dm


def splits(
    dm: LFMCDataModule,
) -> tuple[TensorMultiModalDataset, TensorMultiModalDataset, TensorMultiModalDataset]:
    train, val, test = dm.train_dataset, dm.val_dataset, dm.test_dataset
    assert isinstance(train, TensorMultiModalDataset)
    assert isinstance(val, TensorMultiModalDataset)
    assert isinstance(test, TensorMultiModalDataset)
    return train, val, test


def split_ids(dm: LFMCDataModule) -> tuple[set[str], ...]:
    return tuple(set(split.ids or ()) for split in splits(dm))


class TestLFMCDataModule:
    def test_folds(self) -> None:
        dm = datamodule()
        train, val, test = split_ids(dm)
        # 38 samples in 10 folds: 8 folds of 4, 2 of 3
        assert (len(train), len(val), len(test)) == (30, 4, 4)
        assert not (train & val or train & test or val & test)
        tests = [split_ids(datamodule(fold=fold))[2] for fold in range(10)]
        assert set().union(*tests) == train | val | test
        assert sum(map(len, tests)) == 38

    def test_val_is_test(self) -> None:
        train, val, test = split_ids(datamodule(val_is_test=True))
        assert val == test
        assert len(train) == 34

    def test_seed_changes_folds(self) -> None:
        assert split_ids(datamodule(seed=10))[2] != split_ids(datamodule(seed=11))[2]

    def test_normalised_batch(self) -> None:
        dm = datamodule(batch_size=8)
        assert dm.modalities == ('s1', 'optical')
        batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
        assert batch['image_s1'].shape == (8, 4, 3)
        assert batch['image_optical'].shape == (8, 4, 8)
        assert batch['valid_s1'].shape == (8, 4)
        assert batch['valid_s1'].all()
        # the statistics are those of the training folds
        train = splits(dm)[0].tensors['image_optical']
        assert dm.normalizer is not None
        mean, std = dm.normalizer.stats('optical')
        torch.testing.assert_close(mean, train.double().mean((0, 1)).float())
        torch.testing.assert_close(
            std, train.double().std((0, 1), unbiased=False).float()
        )
        # the target stays in %
        assert batch['label'].min() > 10

    def test_target_stats(self) -> None:
        dm = datamodule()
        labels = splits(dm)[0].tensors['label'].double()
        mean, std = dm.target_stats()
        assert mean == pytest.approx(labels.mean().item())
        assert std == pytest.approx(labels.std(unbiased=False).item())

    def test_all_modalities_by_default(self) -> None:
        dm = LFMCDataModule(root=ROOT)
        dm.setup('test')
        assert len(dm.modalities) == 9
        assert len(splits(dm)[2]) == 4

    def test_geojson(self) -> None:
        train, val, test = split_ids(datamodule(source='geojson', num_folds=3))
        assert len(train | val | test) == 6
        assert all(i.startswith('feature_') for i in train)

    def test_modality_selection(self) -> None:
        dm = datamodule(modalities=['optical'])
        batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
        assert [k for k in batch if k.startswith(('image_', 'valid_'))] == [
            'image_optical',
            'valid_optical',
        ]

    def test_infinite_feature_is_missing(self, tmp_path: Path) -> None:
        table = pd.read_csv(os.path.join(ROOT, 'training_features.csv'), dtype=str)
        table.loc[:, 'vv(t-1)'] = table['vv(t-1)'].where(table.index % 2 == 0, 'inf')
        table.to_csv(tmp_path / 'training_features.csv', index=False)
        dm = LFMCDataModule(
            root=str(tmp_path), modality_groups=PAPER_GROUPS, batch_size=64
        )
        dm.setup('fit')
        assert dm.normalizer is not None
        mean, std = dm.normalizer.stats('s1')
        assert torch.isfinite(mean).all() and torch.isfinite(std).all()
        batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
        assert torch.isfinite(batch['image_s1']).all()

    def test_not_found(self, tmp_path: Path) -> None:
        dm = LFMCDataModule(root=str(tmp_path))
        with pytest.raises(
            DatasetNotFoundError, match=r'input_data/training_features\.csv'
        ):
            dm.setup('fit')
        dm = LFMCDataModule(root=str(tmp_path), source='geojson')
        with pytest.raises(DatasetNotFoundError, match='Source Cooperative'):
            dm.setup('fit')


class TestLFMCExperiment:
    def args(self, tmp_path: Path) -> list[str]:
        return fast_dev_run_args(CONFIG, ROOT, tmp_path)

    def test_colearn_cli(self, tmp_path: Path) -> None:
        args = self.args(tmp_path)
        cli = main(['fit', *args])
        assert cli is not None
        model, datamodule = cli.model, cli.datamodule
        assert isinstance(model, CoLearnTask)
        assert isinstance(datamodule, LFMCDataModule)
        assert cli.trainer.state.finished
        assert model.modalities == ('s1', 'optical')
        assert datamodule.modalities == ('s1', 'optical')
        # the regression target is standardised with the training folds' statistics
        mean, std = datamodule.target_stats()
        assert model.criterion.target_mean.item() == pytest.approx(mean)
        assert model.criterion.target_std.item() == pytest.approx(std)
        main(['test', *args])

    def test_torchgeo_cli(self, tmp_path: Path) -> None:
        torchgeo.main.main(['fit', *self.args(tmp_path)])


@pytest.mark.skipif(
    not os.path.exists(os.path.join(REAL_ROOT, 'training_features.csv')),
    reason='real LFMC table not available',
)
def test_real_folds() -> None:
    dm = LFMCDataModule(root=REAL_ROOT, modality_groups=PAPER_GROUPS)
    with warnings.catch_warnings():  # the paper's inputs are well scaled
        warnings.simplefilter('error', ChannelStatsWarning)
        dm.setup('fit')
    sizes = [len(d) for d in splits(dm)]
    assert sizes == [2062, 258, 258]


@pytest.mark.skipif(
    not os.path.exists(os.path.join(REAL_ROOT, 'training_features.csv')),
    reason='real LFMC table not available',
)
def test_real_squashed_channels() -> None:
    # the SAR / optical ratios explode where the reflectance is near 0 (sample 1990)
    dm = LFMCDataModule(root=REAL_ROOT, modality_groups={'ratios': ['sar_optical']})
    with pytest.warns(ChannelStatsWarning) as record:
        dm.setup('fit')
    messages = [str(w.message) for w in record if w.category is ChannelStatsWarning]
    assert [m.split(':')[0] for m in messages] == [
        f'image_ratios channel {c}' for c in (5, 7, 13, 15)
    ]
    assert all("in sample '1990'" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter('error', ChannelStatsWarning)
        LFMCDataModule(
            root=REAL_ROOT, modality_groups={'ratios': ['sar_optical']}, stats='robust'
        ).setup('fit')


def test_modality_info() -> None:
    dm = LFMCDataModule(
        root=ROOT, modality_groups={**PAPER_GROUPS, 'static': ['dem', 'landcover']}
    )
    dm.setup('fit')
    info = dm.modality_info()
    assert list(info) == ['s1', 'optical', 'static']
    assert info['s1'].shape == (4, 3) and info['s1'].bands == ('vv', 'vh', 'vh_vv')
    assert info['s1'].units == ('dB',) * 3
    assert info['optical'].bands[-3:] == ('ndvi', 'ndwi', 'nirv')
    assert info['optical'].units[0] == 'reflectance x 10^4'
    assert info['static'].shape == (14,) and info['static'].time_steps is None
    assert info['static'].bands[:3] == ('slope', 'elevation', 'landcover_14')
    assert info['static'].units[:3] == ('degrees', 'm', '1')
    for modality, x in dm.train_dataset.tensors.items():  # type: ignore[union-attr]
        if modality.startswith('image_'):
            assert info[modality.removeprefix('image_')].accepts(tuple(x.shape[1:]))
