# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Tasks with recorded training inputs, built on the synthetic data and the fake CropHarvest files."""

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch import Trainer

from torchgeo_colearn import CoLearnTask
from torchgeo_colearn.datamodules import (
    CropHarvestDataModule,
    SyntheticMultiSensorDataModule,
)
from torchgeo_colearn.deploy import training_inputs_of
from torchgeo_colearn.metrics import TaskType

DATA = os.path.join(os.path.dirname(__file__), '..', 'data')
EXPORTS = os.path.join(DATA, 'cropharvest_export')
KENYA = os.path.join(EXPORTS, '3-kenya_2018-02-06_2019-02-01.tif')
REAL_TIF = os.path.join(
    os.path.dirname(__file__),
    '..',
    '..',
    '..',
    'shared',
    'data',
    'cropharvest_export',
    '98-togo_2019-02-06_2020-02-01.tif',
)

#: One encoder family per kind of modality of the synthetic data.
SYNTHETIC_ENCODERS: dict[str, dict[str, Any]] = {
    's1': {
        'name': 'tempcnn',
        'in_channels': 3,
        'seq_len': None,
        'pooling': 'mean',
        'hidden_dim': 8,
        'dense_dim': 16,
    },
    's2': {
        'name': 'tempcnn',
        'in_channels': 3,
        'seq_len': 6,
        'hidden_dim': 8,
        'dense_dim': 16,
    },
    'dem': {'name': 'mlp', 'in_features': 16, 'hidden_dims': [16]},
    'img': {'name': 'timm', 'in_channels': 4},
}

KINDS = {'s1': 'timeseries', 's2': 'timeseries', 'dem': 'vector', 'img': 'image'}

CROPHARVEST_GROUPS = {'s1': ['s1'], 's2': ['s2', 'ndvi'], 'dem': ['dem']}


def synthetic_task(
    task: TaskType = 'multiclass',
    fill_nan: bool = True,
    modalities: tuple[str, ...] = ('s1', 's2', 'dem'),
) -> CoLearnTask:
    """An untrained task whose training inputs are those of the synthetic datamodule."""
    dm = SyntheticMultiSensorDataModule(
        num_samples=60,
        modality_kinds={m: KINDS[m] for m in modalities},  # type: ignore[misc]
        task=task,
        num_classes=3,
        num_labels=4,
        seq_len=6,
        image_size=8,
        batch_size=16,
    )
    dm.setup('fit')
    model = CoLearnTask(
        encoders={m: SYNTHETIC_ENCODERS[m] for m in modalities},
        task=task,
        num_classes=3 if task == 'multiclass' else None,
        num_labels=4 if task == 'multilabel' else None,
        embed_dim=8,
    )
    record = training_inputs_of(model, dm)
    assert record is not None
    model.training_inputs = dataclasses.replace(record, fill_nan=fill_nan)
    return model.eval()


@pytest.fixture
def cropharvest_root(tmp_path: Path) -> str:
    path = str(tmp_path / 'cropharvest')
    shutil.copytree(
        os.path.join(DATA, 'cropharvest'),
        path,
        ignore=shutil.ignore_patterns('data.py', '*.pt'),
    )
    return path


def cropharvest_datamodule(root: str) -> CropHarvestDataModule:
    return CropHarvestDataModule(
        root, modality_groups=CROPHARVEST_GROUPS, num_folds=5, batch_size=8
    )


def cropharvest_task() -> CoLearnTask:
    encoder = {'name': 'tempcnn', 'seq_len': 12, 'hidden_dim': 8, 'dense_dim': 16}
    return CoLearnTask(
        encoders={
            's1': {**encoder, 'in_channels': 2},
            's2': {**encoder, 'in_channels': 12},
            'dem': {'name': 'mlp', 'in_features': 2, 'hidden_dims': [8]},
        },
        task='binary',
        embed_dim=8,
    )


@pytest.fixture(scope='module')
def cropharvest_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CropHarvest task fitted for one epoch on the fake arrays, saved by the trainer."""
    tmp = tmp_path_factory.mktemp('cropharvest_fit')
    root = str(tmp / 'data')
    shutil.copytree(
        os.path.join(DATA, 'cropharvest'),
        root,
        ignore=shutil.ignore_patterns('data.py', '*.pt'),
    )
    trainer = Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator='cpu',
        default_root_dir=str(tmp),
    )
    trainer.fit(cropharvest_task(), cropharvest_datamodule(root))
    path = str(tmp / 'model.ckpt')
    trainer.save_checkpoint(path)
    return path
