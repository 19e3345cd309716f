# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch

from torchgeo_colearn.datamodules.synthetic import SyntheticMultiSensorDataModule
from torchgeo_colearn.datasets.synthetic import ModalityKind
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset

KINDS: dict[str, ModalityKind] = {'a': 'vector', 'b': 'timeseries', 'c': 'image'}


def training_tensors(
    datamodule: SyntheticMultiSensorDataModule,
) -> dict[str, torch.Tensor]:
    datamodule.setup('fit')
    assert isinstance(datamodule.train_dataset, TensorMultiModalDataset)
    return datamodule.train_dataset.tensors


def test_modality_kinds() -> None:
    tensors = training_tensors(
        SyntheticMultiSensorDataModule(
            num_samples=30, modality_kinds=KINDS, image_size=4
        )
    )
    assert tensors['image_c'].shape[1:] == (4, 4, 4)


def test_former_modalities_mapping() -> None:
    with pytest.warns(
        DeprecationWarning, match='pass the generated modalities as modality_kinds'
    ):
        former = SyntheticMultiSensorDataModule(
            num_samples=30, modalities=KINDS, image_size=4
        )
    assert former.selected_modalities is None
    current = SyntheticMultiSensorDataModule(
        num_samples=30, modality_kinds=KINDS, image_size=4
    )
    assert former.kwargs == current.kwargs
    for key, value in training_tensors(current).items():
        torch.testing.assert_close(training_tensors(former)[key], value)


@pytest.mark.parametrize(
    'task,num_classes',
    [('binary', 2), ('multiclass', 4), ('multilabel', 5), ('regression', None)],
)
def test_label_task(task: str, num_classes: int | None) -> None:
    datamodule = SyntheticMultiSensorDataModule(num_samples=30, task=task)  # type: ignore[arg-type]
    assert (datamodule.label_task, datamodule.num_classes) == (task, num_classes)
    datamodule.setup('fit')


def test_modality_info() -> None:
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=30,
        modality_kinds={'s1': 'timeseries', 'dem': 'vector', 'img': 'image'},
        seq_len=5,
        image_size=6,
        modalities=['s1', 'img'],
    )
    datamodule.setup('fit')
    info = datamodule.modality_info()
    assert list(info) == ['s1', 'img']
    assert info['s1'].shape == (5, 3) and info['s1'].time_steps == '5 synthetic steps'
    assert info['img'].shape == (4, 6, 6) and info['img'].time_steps is None
    assert info['img'].bands == ('channel_0', 'channel_1', 'channel_2', 'channel_3')


@pytest.mark.parametrize('split', ['train', 'val', 'test'])
def test_predict_split(split: str) -> None:
    datamodule = SyntheticMultiSensorDataModule(num_samples=50, predict_split=split)
    datamodule.setup('predict')
    assert datamodule.predict_dataset is getattr(datamodule, f'{split}_dataset')
    ids = {i for batch in datamodule.predict_dataloader() for i in batch['id']}
    assert ids == set(getattr(datamodule, f'{split}_dataset').ids)


def test_bad_predict_split() -> None:
    with pytest.raises(ValueError, match='predict_split must be one of'):
        SyntheticMultiSensorDataModule(predict_split='all')


def absent_ids(datamodule: SyntheticMultiSensorDataModule, modality: str) -> set[str]:
    datamodule.setup('fit')
    datamodule.setup('test')
    absent = set()
    for split in ('train', 'val', 'test'):
        dataset = getattr(datamodule, f'{split}_dataset')
        x = dataset.tensors[f'image_{modality}'].flatten(1)
        absent |= {
            dataset.ids[i] for i in torch.nonzero(~x.isfinite().any(1)).flatten()
        }
    return absent


def test_missing_same_samples_whatever_the_fold() -> None:
    folds = [
        absent_ids(
            SyntheticMultiSensorDataModule(
                num_samples=100, missing={'s2': 0.3}, fold=fold
            ),
            's2',
        )
        for fold in (0, 3)
    ]
    assert folds[0] == folds[1] and len(folds[0]) == 30


@pytest.mark.parametrize(
    'missing,match',
    [
        ({'img': 0.2}, r"modalities \['img'\] that are not generated"),
        ({'s1': 1}, r'\[0, 1\)'),
    ],
)
def test_missing_checked_at_init(missing: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticMultiSensorDataModule(missing=missing)
