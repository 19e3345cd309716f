# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchgeo.datasets import NonGeoDataset

from torchgeo_colearn.cache import CacheKey
from torchgeo_colearn.datamodules import (
    KFoldDataModule,
    MultiModalDataModule,
    SyntheticMultiSensorDataModule,
    kfold_split,
)
from torchgeo_colearn.datamodules.missing import sample_presence
from torchgeo_colearn.datasets import SyntheticMultiSensor
from torchgeo_colearn.datasets.synthetic import ModalityKind
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset

#: Samples of the hand-made benchmark of :func:`gappy`.
SIZE = 30


def gappy() -> TensorMultiModalDataset:
    """30 samples of a (4, 2) series, a 3-vector and a (2, 4, 4) image, with gaps.

    Sample 0 lacks ``ts`` and ``vec``; 1 has a NaN step of ``ts`` (present); 2 has ``ts`` all
    ``inf`` (absent); 3 lacks ``vec``; 4 lacks everything.
    """
    generator = torch.Generator().manual_seed(0)
    ts = 3 + 2 * torch.randn(SIZE, 4, 2, generator=generator)
    vec = torch.randn(SIZE, 3, generator=generator) - 1
    img = torch.rand(SIZE, 2, 4, 4, generator=generator)
    ts[[0, 4]] = math.nan
    ts[1, 2] = math.nan
    ts[2] = math.inf
    vec[[0, 3, 4]] = math.nan
    img[4] = math.nan
    tensors = {
        'image_ts': ts,
        'image_vec': vec,
        'image_img': img,
        'label': torch.arange(SIZE) % 2,
    }
    return TensorMultiModalDataset(tensors, ids=[f's{i}' for i in range(SIZE)])


class GappyModule(KFoldDataModule):
    """K folds over :func:`gappy` (or another in-memory dataset)."""

    label_task = 'binary'
    num_classes = 2

    def __init__(
        self, dataset: TensorMultiModalDataset | None = None, **kwargs: Any
    ) -> None:
        kwargs = {'batch_size': SIZE, 'num_folds': 3, 'augment': False} | kwargs
        super().__init__(TensorMultiModalDataset, **kwargs)
        self.full = gappy() if dataset is None else dataset

    def load_dataset(self) -> TensorMultiModalDataset:
        return self.full


def all_batches(datamodule: MultiModalDataModule, split: str) -> dict[str, Any]:
    """Every sample of a split in one transferred batch."""
    batches = list(getattr(datamodule, f'{split}_dataloader')())
    assert len(batches) == 1
    return datamodule.on_after_batch_transfer(batches[0], 0)


def left_out(record: list[Any]) -> dict[str, tuple[int, int]]:
    """The counts of the warning of min_modalities, per split."""
    messages = [str(w.message) for w in record if 'leaves out' in str(w.message)]
    assert len(messages) == 1
    counts = re.findall(r'(\d+) of (\d+) (train|val|test)', messages[0])
    return {split: (int(left), int(total)) for left, total, split in counts}


def test_sample_presence() -> None:
    x = torch.tensor([[1.0, math.nan], [math.nan, math.nan], [math.inf, -math.inf]])
    assert sample_presence(x).tolist() == [True, False, False]
    assert sample_presence(torch.zeros(2, 3, dtype=torch.int64)).all()
    assert sample_presence(torch.zeros(0, 3)).shape == (0,)


def test_complete_data_has_no_presence_keys() -> None:
    datamodule = SyntheticMultiSensorDataModule(num_samples=60, batch_size=8)
    datamodule.setup('fit')
    assert datamodule.incomplete_modalities == ()
    batch = datamodule.on_after_batch_transfer(
        next(iter(datamodule.train_dataloader())), 0
    )
    assert not any(key.startswith('present_') for key in batch)


class TestSyntheticGaps:
    """The in-memory path (whole batches, no collation) on the synthetic benchmark."""

    kinds: ClassVar[dict[str, ModalityKind]] = {
        's1': 'timeseries',
        's2': 'timeseries',
        'img': 'image',
    }

    def datamodule(self, **kwargs: Any) -> SyntheticMultiSensorDataModule:
        datamodule = SyntheticMultiSensorDataModule(
            num_samples=200,
            modality_kinds=self.kinds,
            image_size=4,
            missing={'s2': 0.3, 'img': 0.2},
            batch_size=200,
            **kwargs,
        )
        datamodule.setup('fit')
        return datamodule

    @pytest.mark.parametrize('fill_nan', [True, False])
    def test_presence_masks_and_zero_rows(self, fill_nan: bool) -> None:
        datamodule = self.datamodule(fill_nan=fill_nan)
        assert datamodule.incomplete_modalities == ('s2', 'img')
        raw = next(iter(datamodule.val_dataloader()))
        expected = {
            m: raw[f'image_{m}'].flatten(1).isfinite().any(1) for m in ('s2', 'img')
        }
        assert not expected['s2'].all() and not expected['img'].all()
        datamodule.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
        batch = datamodule.on_after_batch_transfer(raw, 0)
        assert {k for k in batch if k.startswith('present_')} == {
            'present_s2',
            'present_img',
        }
        for modality, present in expected.items():
            mask = batch[f'present_{modality}']
            assert mask.dtype == torch.bool and mask.shape == raw['label'].shape
            assert mask.device == batch[f'image_{modality}'].device
            assert torch.equal(mask, present)
            x = batch[f'image_{modality}']
            assert torch.isfinite(x).all() and x[~mask].eq(0).all()
        if fill_nan:
            assert not batch['valid_s2'][~expected['s2']].any()
            assert batch['valid_s2'][expected['s2']].all()
        else:
            assert 'valid_s2' not in batch

    def test_statistics_of_the_present_samples(self) -> None:
        datamodule = self.datamodule()
        assert datamodule.normalizer is not None
        complete = SyntheticMultiSensor(
            200, modalities=self.kinds, image_size=4, seed=0
        )
        train = datamodule._splits['train']
        assert isinstance(datamodule.train_dataset, TensorMultiModalDataset)
        kept = datamodule.train_dataset.tensors['image_s2'].flatten(1).isfinite().any(1)
        values = complete.tensors['image_s2'][torch.from_numpy(train)][kept]
        assert 0 < len(values) < len(train)
        mean, std = datamodule.normalizer.stats('s2')
        channels = values.reshape(-1, 3).double()
        torch.testing.assert_close(mean.double(), channels.mean(0), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            std.double(), channels.std(0, unbiased=False), atol=1e-5, rtol=1e-5
        )
        everything = complete.tensors['image_s2'][torch.from_numpy(train)]
        assert not torch.allclose(mean, everything.reshape(-1, 3).mean(0), atol=1e-3)


class TestMinModalities:
    def test_default_leaves_out_samples_without_any(self) -> None:
        datamodule = GappyModule()
        with pytest.warns(
            UserWarning, match='min_modalities=1 leaves out 1 of 10 .* have none of'
        ) as record:
            datamodule.setup('test')
        expected = dict(zip(('train', 'val', 'test'), kfold_split(SIZE, 3, 0, 10)))
        split = next(s for s, rows in expected.items() if 4 in rows)
        assert split != 'val'
        assert left_out(record.list) == {split: (1, len(expected[split]))}
        assert datamodule.incomplete_modalities == ('ts', 'vec')
        for split, rows in expected.items():
            if split != 'val':
                kept = datamodule._splits[split].tolist()
                assert kept == [i for i in rows.tolist() if i != 4]

    def test_two_of_three(self) -> None:
        datamodule = GappyModule(min_modalities=2)
        with pytest.warns(UserWarning, match='have fewer than 2 of the') as record:
            datamodule.setup('fit')
        datamodule_test = GappyModule(min_modalities=2)
        with pytest.warns(UserWarning):
            datamodule_test.setup('test')
        ids = {
            i
            for dm in (datamodule, datamodule_test)
            for split in ('train', 'val', 'test')
            if (d := getattr(dm, f'{split}_dataset')) is not None
            for i in d.ids
        }
        assert ids == {f's{i}' for i in range(SIZE)} - {'s0', 's4'}
        expected = dict(zip(('train', 'val'), kfold_split(SIZE, 3, 0, 10)))
        assert left_out(record.list) == {
            split: (len({0, 4} & set(rows.tolist())), len(rows))
            for split, rows in expected.items()
            if {0, 4} & set(rows.tolist())
        }
        summary = datamodule.split_summary()
        for split in ('train', 'val', 'test'):
            dataset = getattr(datamodule, f'{split}_dataset')
            assert summary[split]['samples'] == len(dataset)
            assert dataset.ids == [f's{i}' for i in datamodule._splits[split]]
        assert datamodule.predict_dataset is datamodule.test_dataset

    def test_the_selected_modalities_count(self) -> None:
        datamodule = GappyModule(modalities=['ts', 'img'], min_modalities=2)
        with pytest.warns(UserWarning, match=r"modalities \['ts', 'img'\]"):
            datamodule.setup('fit')
        with pytest.warns(UserWarning, match='of 10 test'):
            datamodule.setup('test')
        for split in ('train', 'val', 'test'):
            ids = set(getattr(datamodule, f'{split}_dataset').ids)
            assert not ids & {'s0', 's2', 's4'}
        assert datamodule.incomplete_modalities == ()

    @pytest.mark.parametrize('value', [0, -1])
    def test_below_one(self, value: int) -> None:
        with pytest.raises(
            ValueError,
            match=f'min_modalities must be between 1 and the number of modalities, '
            f'got min_modalities={value}',
        ):
            GappyModule(min_modalities=value)

    def test_above_the_selection(self) -> None:
        with pytest.raises(
            ValueError, match=r"between 1 and 2 \['ts', 'vec'\], got min_modalities=3"
        ):
            GappyModule(modalities=['ts', 'vec'], min_modalities=3)

    def test_above_the_data(self) -> None:
        datamodule = GappyModule(min_modalities=4)
        with pytest.raises(
            ValueError,
            match=r"between 1 and 3 \['ts', 'vec', 'img'\], got min_modalities=4",
        ):
            datamodule.setup('fit')

    def test_split_left_empty(self) -> None:
        dataset = gappy()
        dataset.tensors['image_vec'][:] = math.nan
        with pytest.raises(
            ValueError,
            match=r'min_modalities=3 leaves the train split empty: none of its \d+ samples '
            r"has at least 3 of the modalities \['ts', 'vec', 'img'\]",
        ):
            GappyModule(dataset, min_modalities=3).setup('fit')

    def test_statistics_cache_follows_the_option(self, tmp_path: Path) -> None:
        class Cached(GappyModule):
            def stats_cache_key(self) -> CacheKey:
                return CacheKey(str(tmp_path), 'stats')

        paths = [
            Cached().stats_path(),
            Cached(min_modalities=1).stats_path(),
            Cached(min_modalities=2).stats_path(),
        ]
        assert paths[0] == paths[1] != paths[2]


def test_kfold_val_is_test_and_predict() -> None:
    datamodule = GappyModule(val_is_test=True, min_modalities=2)
    with pytest.warns(UserWarning, match='min_modalities=2'):
        datamodule.setup('predict')
    assert datamodule.predict_dataset is datamodule.test_dataset
    assert isinstance(datamodule.test_dataset, TensorMultiModalDataset)
    assert not {'s0', 's4'} & set(datamodule.test_dataset.ids or [])
    batch = all_batches(datamodule, 'predict')
    assert torch.isfinite(batch['image_ts']).all()
    present = batch['present_ts']
    assert batch['image_ts'][~present].eq(0).all()
    assert not batch['valid_ts'][~present].any()


class SampleDataset(NonGeoDataset):
    """Samples read one at a time from the tensors of :func:`gappy`."""

    def __init__(self, split: str = 'train') -> None:
        full = gappy()
        rows = torch.arange(SIZE)
        rows = rows[rows % 3 != 0] if split == 'train' else rows[rows % 3 == 0]
        self.data = full.subset(rows)
        self.ids = self.data.ids
        self.labels = self.data.tensors['label']

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = dict(self.data[index])
        del sample['id']
        return sample


class SampleModule(MultiModalDataModule):
    label_task = 'binary'
    num_classes = 2

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(SampleDataset, batch_size=4, augment=False, **kwargs)

    def setup_splits(self, stage: str) -> None:
        self.train_dataset = SampleDataset('train')
        self.val_dataset = SampleDataset('val')


class TestPerSampleDatasets:
    """Datasets read one sample at a time, collated by the default collate function."""

    def test_presence_and_filtering(self) -> None:
        datamodule = SampleModule(min_modalities=2)
        with pytest.warns(UserWarning, match='leaves out') as record:
            datamodule.setup('fit')
        # sample 4 is in train (4 % 3 == 1), sample 0 in val
        assert left_out(record.list) == {'train': (1, 20), 'val': (1, 10)}
        assert isinstance(datamodule.train_dataset, Subset)
        assert datamodule.incomplete_modalities == ('ts', 'vec')
        batches = [
            datamodule.on_after_batch_transfer(b, 0)
            for b in datamodule.val_dataloader()
        ]
        present = torch.cat([b['present_ts'] for b in batches])
        assert present.tolist() == [i not in (0, 4) for i in range(0, SIZE, 3)][1:]
        for batch in batches:
            rows = ~batch['present_ts']
            assert batch['image_ts'][rows].eq(0).all()
            assert not batch['valid_ts'][rows].any()
            assert torch.isfinite(batch['image_vec']).all()
        assert len(datamodule.train_labels()) == 19

    def test_labels_of_the_kept_samples_checked(self) -> None:
        class Wrong(SampleModule):
            num_classes = 1

        with (
            pytest.warns(UserWarning, match='leaves out'),
            pytest.raises(ValueError, match="train split, 'label'"),
        ):
            Wrong(min_modalities=2).setup('fit')

    def test_statistics_ignore_absent_samples(self) -> None:
        datamodule = SampleModule()
        with pytest.warns(UserWarning, match='leaves out'):
            datamodule.setup('fit')
        assert datamodule.normalizer is not None
        train = SampleDataset('train').data.tensors['image_ts']
        values = train.reshape(-1, 2).numpy()
        values = np.where(np.isfinite(values), values, np.nan)
        mean, std = datamodule.normalizer.stats('ts')
        np.testing.assert_allclose(mean, np.nanmean(values, 0), atol=1e-5)
        np.testing.assert_allclose(std, np.nanstd(values, 0), atol=1e-5)


def test_every_split_loaded_is_checked() -> None:
    class Predicting(SampleModule):
        def setup_splits(self, stage: str) -> None:
            super().setup_splits(stage)
            self.test_dataset = self.predict_dataset = SampleDataset('val')

    datamodule = Predicting(min_modalities=2)
    with pytest.warns(UserWarning) as record:
        datamodule.setup('test')
    assert left_out(record.list) == {'train': (1, 20), 'val': (1, 10), 'test': (1, 10)}
    assert datamodule.predict_dataset is datamodule.test_dataset
    dataset: Dataset[Any] | None = datamodule.test_dataset
    assert dataset is not None and len(dataset) == 9  # type: ignore[arg-type]
