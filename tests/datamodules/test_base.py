# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from torchgeo_colearn.datamodules import MultiModalDataModule, kfold_split
from torchgeo_colearn.datamodules.synthetic import SyntheticMultiSensorDataModule


class TestKFoldSplit:
    def test_disjoint_and_covering(self) -> None:
        seen = []
        for fold in range(5):
            train, val, test = kfold_split(53, 5, fold, seed=10)
            assert not set(train) & set(val) and not set(train) & set(test)
            assert not set(val) & set(test)
            assert len(train) + len(val) + len(test) == 53
            seen.extend(test.tolist())
        assert sorted(seen) == list(range(53))

    def test_val_is_test(self) -> None:
        train, val, test = kfold_split(20, 10, 3, seed=0, val_is_test=True)
        assert np.array_equal(val, test)
        assert len(train) == 18

    def test_deterministic(self) -> None:
        assert np.array_equal(kfold_split(30, 3, 1, 7)[0], kfold_split(30, 3, 1, 7)[0])
        assert not np.array_equal(
            kfold_split(30, 3, 1, 7)[2], kfold_split(30, 3, 1, 8)[2]
        )

    @pytest.mark.parametrize(
        'args,match',
        [
            ((10, 2, 0, 0), 'at least 3'),
            ((10, 5, 5, 0), r'fold must be in \[0, 5\)'),
            ((3, 5, 0, 0), 'cannot split'),
        ],
    )
    def test_bad_arguments(self, args: tuple[int, int, int, int], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            kfold_split(*args)


def test_normalised_from_training_split_only() -> None:
    datamodule = SyntheticMultiSensorDataModule(num_samples=200, batch_size=1000)
    datamodule.setup('fit')
    assert datamodule.train_dataset is not None and datamodule.val_dataset is not None
    train = next(iter(datamodule.train_dataloader()))
    train = datamodule.on_after_batch_transfer(train, 0)
    for modality in datamodule.modalities:
        x = train[f'image_{modality}']
        axis = 2 if x.ndim == 3 else 1
        channels = x.movedim(axis, -1).reshape(-1, x.shape[axis])
        assert torch.allclose(
            channels.mean(0), torch.zeros(channels.shape[1]), atol=1e-4
        )
        assert torch.allclose(
            channels.std(0, unbiased=False), torch.ones(channels.shape[1]), atol=1e-3
        )
    val = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    assert not torch.allclose(val['image_dem'].mean(0), torch.zeros(16), atol=1e-4)


def test_batches_without_collation() -> None:
    datamodule = SyntheticMultiSensorDataModule(num_samples=100, batch_size=16)
    datamodule.setup('fit')
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 3  # 60 training samples, last incomplete batch dropped
    assert batches[0]['image_s1'].shape == (16, 12, 3)
    assert len(batches[0]['id']) == 16
    test = list(datamodule.test_dataloader())
    assert sum(len(b['label']) for b in test) == 20


def test_stats_in_state_dict() -> None:
    datamodule = SyntheticMultiSensorDataModule(num_samples=100)
    datamodule.setup('fit')
    state = datamodule.state_dict()
    restored = SyntheticMultiSensorDataModule(num_samples=100, seed=5)
    restored.load_state_dict(state)
    assert restored.normalizer is not None and datamodule.normalizer is not None
    for modality in datamodule.modalities:
        for a, b in zip(
            restored.normalizer.stats(modality), datamodule.normalizer.stats(modality)
        ):
            assert torch.equal(a, b)
    json.dumps(state)


def test_class_weights_balanced() -> None:
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=200, task='multiclass', num_classes=4
    )
    datamodule.setup('fit')
    labels = datamodule.train_labels()
    counts = torch.bincount(labels, minlength=4).float()
    assert torch.allclose(datamodule.class_weights(), len(labels) / (4 * counts))


def test_positive_weights_multilabel() -> None:
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=200, task='multilabel', num_labels=5
    )
    datamodule.setup('fit')
    labels = datamodule.train_labels()
    positives = labels.sum(0)
    assert torch.allclose(
        datamodule.class_weights(), (len(labels) - positives) / positives
    )


class FileDataset(NonGeoDataset):
    """A dataset read one sample at a time, with NaN gaps in its time series."""

    def __init__(self, split: str = 'train', size: int = 10) -> None:
        generator = torch.Generator().manual_seed(0 if split == 'train' else 1)
        self.x = 5 + 2 * torch.randn(size, 4, 2, generator=generator)
        self.x[0, 1] = math.nan
        self.v = torch.randn(size, 3, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {
            'image_ts': self.x[index],
            'image_vec': self.v[index],
            'label': torch.tensor(index % 2),
        }


class FileDataModule(MultiModalDataModule):
    def __init__(self, root: str, batch_size: int = 4) -> None:
        super().__init__(FileDataset, batch_size)
        self.root = root
        self.computed = 0

    def stats_path(self) -> str:
        return str(Path(self.root) / 'stats.json')

    def compute_stats(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.computed += 1
        return super().compute_stats()

    def setup_splits(self, stage: str) -> None:
        self.train_dataset = FileDataset('train')
        self.val_dataset = FileDataset('val')


def test_streamed_stats_cached_and_nan_aware(tmp_path: Path) -> None:
    datamodule = FileDataModule(str(tmp_path))
    datamodule.setup('fit')
    assert datamodule.computed == 1
    assert datamodule.normalizer is not None
    mean, std = datamodule.normalizer.stats('ts')
    values = FileDataset('train').x.reshape(-1, 2)
    assert torch.allclose(
        mean, torch.tensor(np.nanmean(values.numpy(), axis=0)), atol=1e-5
    )
    assert torch.allclose(
        std, torch.tensor(np.nanstd(values.numpy(), axis=0)), atol=1e-5
    )
    assert (tmp_path / 'stats.json').exists()
    again = FileDataModule(str(tmp_path))
    again.setup('fit')
    assert again.computed == 0
    batch = next(iter(again.train_dataloader()))
    assert batch['image_ts'].shape[0] == 4


def test_nan_filled_and_marked(tmp_path: Path) -> None:
    datamodule = FileDataModule(str(tmp_path), batch_size=10)
    datamodule.setup('fit')
    batch = next(iter(datamodule.val_dataloader()))
    batch = datamodule.on_after_batch_transfer(batch, 0)
    assert torch.isfinite(batch['image_ts']).all()
    assert not batch['valid_ts'][0, 1] and batch['valid_ts'].sum() == 39
    assert batch['image_ts'][0, 1].eq(0).all()


def test_fill_nan_off_keeps_nan(tmp_path: Path) -> None:
    datamodule = FileDataModule(str(tmp_path), batch_size=10)
    datamodule.fill_nan = False
    datamodule.setup('fit')
    batch = datamodule.on_after_batch_transfer(
        next(iter(datamodule.val_dataloader())), 0
    )
    assert torch.isnan(batch['image_ts']).any()


def test_small_file_split_still_trains(tmp_path: Path) -> None:
    datamodule = FileDataModule(str(tmp_path), batch_size=64)
    datamodule.setup('fit')
    assert len(list(datamodule.train_dataloader())) == 1


def test_modalities_before_setup() -> None:
    with pytest.raises(RuntimeError, match='only after setup'):
        _ = SyntheticMultiSensorDataModule().modalities
