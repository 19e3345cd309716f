# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from torchgeo_colearn.channel_stats import ChannelStatsWarning
from torchgeo_colearn.datamodules import MultiModalDataModule, kfold_split
from torchgeo_colearn.datamodules.synthetic import SyntheticMultiSensorDataModule
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset


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
    """A dataset read one sample at a time, with a missing value in its time series."""

    def __init__(
        self, split: str = 'train', size: int = 10, missing: float = math.nan
    ) -> None:
        generator = torch.Generator().manual_seed(0 if split == 'train' else 1)
        self.x = 5 + 2 * torch.randn(size, 4, 2, generator=generator)
        self.x[0, 1] = missing
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
    def __init__(
        self, root: str, batch_size: int = 4, missing: float = math.nan, **kwargs: Any
    ) -> None:
        super().__init__(FileDataset, batch_size, **kwargs)
        self.root = root
        self.missing = missing
        self.computed = 0

    def stats_path(self) -> str:
        return str(Path(self.root) / 'stats.json')

    def compute_stats(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.computed += 1
        return super().compute_stats()

    def setup_splits(self, stage: str) -> None:
        self.train_dataset = FileDataset('train', missing=self.missing)
        self.val_dataset = FileDataset('val', missing=self.missing)


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


@pytest.mark.parametrize('missing', [math.inf, -math.inf])
def test_infinite_values_are_missing(tmp_path: Path, missing: float) -> None:
    reference = FileDataModule(str(tmp_path / 'nan'), batch_size=10)
    reference.setup('fit')
    datamodule = FileDataModule(str(tmp_path / 'inf'), batch_size=10, missing=missing)
    datamodule.setup('fit')
    assert datamodule.normalizer is not None and reference.normalizer is not None
    for a, b in zip(
        datamodule.normalizer.stats('ts'), reference.normalizer.stats('ts')
    ):
        torch.testing.assert_close(a, b)
    batch = datamodule.on_after_batch_transfer(
        next(iter(datamodule.val_dataloader())), 0
    )
    assert torch.isfinite(batch['image_ts']).all()
    assert not batch['valid_ts'][0, 1] and batch['valid_ts'].sum() == 39
    datamodule.fill_nan = False
    datamodule.setup('fit')
    batch = datamodule.on_after_batch_transfer(
        next(iter(datamodule.val_dataloader())), 0
    )
    assert batch['image_ts'][0, 1].isnan().all()
    assert not batch['image_ts'].isinf().any()


def test_corrupt_value_warns_at_setup(tmp_path: Path) -> None:
    class Corrupt(FileDataset):
        def __init__(self, split: str = 'train') -> None:
            super().__init__(split, size=40)
            self.x[9, 3, 1] = 1e30

    class CorruptModule(FileDataModule):
        def setup_splits(self, stage: str) -> None:
            self.train_dataset = Corrupt('train')

    datamodule = CorruptModule(str(tmp_path))
    with pytest.warns(ChannelStatsWarning) as record:
        datamodule.setup('fit')
    assert [str(w.message).split(':')[0] for w in record] == ['image_ts channel 1']
    assert 'extreme value 1e+30 in row 9' in str(record[0].message)
    # the cache repeats it
    with pytest.warns(ChannelStatsWarning, match='image_ts channel 1.*read from'):
        CorruptModule(str(tmp_path)).setup('fit')
    # robust statistics keep the other values apart
    robust = CorruptModule(str(tmp_path / 'robust'), stats='robust')
    robust.setup('fit')
    assert robust.normalizer is not None
    assert robust.normalizer.stats('ts')[1][1] < 10


class Recorder:
    """An augmentation that records the keys it is given."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        self.calls.append(sorted(batch))
        return batch


@pytest.mark.parametrize(
    'stage,attribute',
    [
        ('training', 'train_aug'),
        ('validating', 'val_aug'),
        ('sanity_checking', 'val_aug'),
        ('testing', 'test_aug'),
        ('predicting', 'predict_aug'),
    ],
)
def test_split_augmentations(stage: str, attribute: str) -> None:
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=40,
        modality_kinds={'img': 'image', 'ts': 'timeseries'},
        image_size=8,
        batch_size=4,
    )
    datamodule.setup('fit')
    batch = next(iter(datamodule.val_dataloader()))
    plain = datamodule.on_after_batch_transfer(
        {k: v.clone() if isinstance(v, Tensor) else v for k, v in batch.items()}, 0
    )
    recorders = {}
    for name in ('train_aug', 'val_aug', 'test_aug', 'predict_aug'):
        recorders[name] = Recorder()
        setattr(datamodule, name, recorders[name])
    datamodule.trainer = SimpleNamespace(**{stage: True})  # type: ignore[assignment]
    out = datamodule.on_after_batch_transfer(batch, 0)
    # only the split's augmentation ran, on the (B, C, H, W) image modality only
    assert {k: r.calls for k, r in recorders.items() if r.calls} == {
        attribute: [['image_img']]
    }
    torch.testing.assert_close(out['image_img'], plain['image_img'])
    torch.testing.assert_close(out['image_ts'], plain['image_ts'])


def test_aug_is_the_fallback() -> None:
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=40, modality_kinds={'img': 'image', 'v': 'vector'}, image_size=8
    )
    datamodule.setup('fit')
    batch = next(iter(datamodule.test_dataloader()))
    fallback = Recorder()
    datamodule.aug = fallback
    datamodule.trainer = SimpleNamespace(testing=True)  # type: ignore[assignment]
    datamodule.on_after_batch_transfer(batch, 0)
    assert fallback.calls == [['image_img']]


def test_default_aug_does_not_rescale() -> None:
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=40, modality_kinds={'img': 'image', 'v': 'vector'}, image_size=8
    )
    datamodule.setup('fit')
    batch = next(iter(datamodule.val_dataloader()))
    plain = datamodule.on_after_batch_transfer(
        {k: v.clone() if isinstance(v, Tensor) else v for k, v in batch.items()}, 0
    )
    datamodule.trainer = SimpleNamespace(validating=True)  # type: ignore[assignment]
    out = datamodule.on_after_batch_transfer(batch, 0)
    torch.testing.assert_close(out['image_img'], plain['image_img'])


class TestModalitySelection:
    def test_in_memory(self) -> None:
        everything = SyntheticMultiSensorDataModule(num_samples=100, batch_size=8)
        everything.setup('fit')
        selected = SyntheticMultiSensorDataModule(
            num_samples=100, batch_size=8, modalities=['s2']
        )
        selected.setup('fit')
        assert selected.modalities == ('s2',)
        assert selected.normalizer is not None and everything.normalizer is not None
        assert selected.normalizer.modalities == ('s2',)
        for a, b in zip(
            selected.normalizer.stats('s2'), everything.normalizer.stats('s2')
        ):
            torch.testing.assert_close(a, b)
        for loader in (selected.train_dataloader(), selected.val_dataloader()):
            batch = next(iter(loader))
            assert set(batch) == {'image_s2', 'label', 'id'}

    def test_collated(self, tmp_path: Path) -> None:
        datamodule = FileDataModule(str(tmp_path), modalities=['vec'])
        datamodule.setup('fit')
        assert datamodule.modalities == ('vec',)
        batch = next(iter(datamodule.train_dataloader()))
        assert set(batch) == {'image_vec', 'label'}
        with open(tmp_path / 'stats.json') as f:
            assert set(json.load(f)['stats']) == {'vec'}

    def test_unknown(self) -> None:
        datamodule = SyntheticMultiSensorDataModule(
            num_samples=50, modalities=['s2', 'radar']
        )
        with pytest.raises(
            ValueError,
            match=r"modalities \['radar'\] are not in the data; available modalities: "
            r"\['s1', 's2', 'dem'\]",
        ):
            datamodule.setup('fit')

    @pytest.mark.parametrize('modalities', [[], 's1'])
    def test_invalid(self, modalities: Any) -> None:
        with pytest.raises(ValueError, match='modalities must be a non-empty list'):
            SyntheticMultiSensorDataModule(modalities=modalities)


class TestTrainingBatches:
    def test_split_of_one_sample(self) -> None:
        datamodule = SyntheticMultiSensorDataModule(num_samples=3, num_folds=3, fold=1)
        with pytest.raises(
            ValueError,
            match=r'the train split has 1 sample\(s\) \(fold=1, num_folds=3, seed=0, '
            r'val_is_test=False\); training needs at least 2 .* fewer folds',
        ):
            datamodule.setup('fit')
        datamodule.setup('test')  # statistics from one sample are fine

    def test_batch_size_one(self) -> None:
        datamodule = SyntheticMultiSensorDataModule(num_samples=50, batch_size=1)
        with pytest.raises(
            ValueError, match='batch_size=1 for training; the batch normalisation'
        ):
            datamodule.setup('fit')
        datamodule.setup('test')
        assert len(next(iter(datamodule.test_dataloader()))['label']) == 1

    @pytest.mark.parametrize('num_samples', [5, 35, 36, 37])
    def test_no_training_batch_of_one(self, num_samples: int) -> None:
        datamodule = SyntheticMultiSensorDataModule(
            num_samples=num_samples, num_folds=5, batch_size=7
        )
        datamodule.setup('fit')
        sizes = [len(b['label']) for b in datamodule.train_dataloader()]
        assert sizes and min(sizes) >= 2


class TestLabelChecks:
    class Corrupted(SyntheticMultiSensorDataModule):
        """The synthetic benchmark with one bad label."""

        def __init__(self, label: float, **kwargs: Any) -> None:
            super().__init__(num_samples=40, **kwargs)
            self.label = label

        def load_dataset(self) -> TensorMultiModalDataset:
            dataset = super().load_dataset()
            labels = dataset.tensors['label']
            labels = (
                labels.float() if math.isnan(self.label) or self.label % 1 else labels
            )
            labels[5] = self.label
            dataset.tensors['label'] = labels
            return dataset

    @pytest.mark.parametrize(
        'label,kwargs,problem',
        [
            (0.5, {}, 'which is not a class index'),
            (4, {}, 'outside the class indices 0..3'),
            (-1, {'task': 'binary'}, 'outside the class indices 0..1'),
            (math.nan, {'task': 'regression'}, 'which is not a finite number'),
        ],
    )
    def test_bad_label(
        self, label: float, kwargs: dict[str, Any], problem: str
    ) -> None:
        datamodule = self.Corrupted(label, **kwargs)
        shown = f'{label:.6g}' if isinstance(label, float) else str(label)
        with pytest.raises(
            ValueError,
            match=rf"Corrupted, (train|val|test) split, 'label': sample 'synthetic_5' has "
            rf'label {shown}, {problem}',
        ):
            datamodule.setup('fit')

    def test_multilabel_width(self) -> None:
        datamodule = SyntheticMultiSensorDataModule(
            num_samples=40, task='multilabel', num_labels=5
        )
        datamodule.num_classes = 6
        with pytest.raises(ValueError, match='multi-hot labels of width 5'):
            datamodule.setup('fit')


def test_invalid_stats_mode() -> None:
    with pytest.raises(
        ValueError, match="stats must be one of \\('moments', 'robust'\\)"
    ):
        SyntheticMultiSensorDataModule(stats='median')
