# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from torch import Tensor

from torchgeo_colearn.datamodules import SyntheticMultiSensorDataModule
from torchgeo_colearn.datasets.synthetic import DEFAULT_MODALITIES, ModalityKind
from torchgeo_colearn.main import main
from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.trainers.single import SingleModalityTask

TINY_ENCODERS: dict[str, dict[str, Any]] = {
    m: {
        'name': 'tempcnn',
        'in_channels': 3,
        'seq_len': 12,
        'hidden_dim': 4,
        'dense_dim': 8,
    }
    for m in ('s1', 's2')
}

MDICO = {'class_path': 'torchgeo_colearn.trainers.colearn.CoLearnTask'}
SINGLE = {'class_path': 'torchgeo_colearn.trainers.single.SingleModalityTask'}
GBDT: dict[str, Any] = {
    'class_path': 'torchgeo_colearn.benchmark.gbdt.GradientBoostingBaseline',
    'init_args': {'max_iter': 20, 'min_samples_leaf': 5},
}


def write_config(path: Path, methods: dict[str, Any], **extra: Any) -> str:
    """Write a tiny 2-fold synthetic regression benchmark config and return its path."""
    config = {
        'name': 'tiny',
        'data': {
            'class_path': 'torchgeo_colearn.datamodules.synthetic.SyntheticMultiSensorDataModule',
            'init_args': {
                'task': 'regression',
                'num_samples': 64,
                'modality_kinds': {'s1': 'timeseries', 's2': 'timeseries'},
                'batch_size': 16,
                'num_folds': 4,
            },
        },
        'model': {'task': 'regression', 'encoders': TINY_ENCODERS, 'embed_dim': 4},
        'methods': methods,
        'folds': [0, 1],
        'seeds': [0],
        'trainer': {'max_epochs': 1, 'patience': 1},
        'report': {'reference': next(iter(methods)), 'metric': 'R2'},
        **extra,
    }
    file = path / 'tiny.yaml'
    file.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(file)


def run(config: str, tmp_path: Path, *extra: str) -> pd.DataFrame:
    """Run ``colearn benchmark`` into tmp_path and return the summary table it wrote."""
    main(
        [
            'benchmark',
            '--config',
            config,
            '--output',
            str(tmp_path / 'out'),
            '--report',
            str(tmp_path / 'docs' / 'tiny.md'),
            *extra,
        ]
    )
    return pd.read_csv(tmp_path / 'out' / 'summary.csv')


def printed(capsys: pytest.CaptureFixture[str], *lines: str) -> str:
    """Return what was printed since the last read, having checked that it holds each of *lines*."""
    out = capsys.readouterr().out
    missing = [line for line in lines if line not in out]
    assert not missing, f'{missing} not printed in:\n{out}'
    return out


class FailingTask(SingleModalityTask):
    """A task whose training fails at run time (a valid config that breaks in the grid)."""

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        raise RuntimeError('boom in training_step')


class WithoutSelection(SyntheticMultiSensorDataModule):
    """A datamodule whose batches cannot be restricted to some modalities (no `modalities` option)."""

    def __init__(
        self,
        task: TaskType = 'regression',
        num_samples: int = 64,
        modality_kinds: dict[str, ModalityKind] = DEFAULT_MODALITIES,
        batch_size: int = 16,
        num_folds: int = 4,
    ) -> None:
        super().__init__(
            task=task,
            num_samples=num_samples,
            modality_kinds=modality_kinds,
            batch_size=batch_size,
            num_folds=num_folds,
        )
