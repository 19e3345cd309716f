# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from torch import Tensor

import torchgeo_colearn.datamodules.synthetic as synthetic_module
from torchgeo_colearn.batch import image_key
from torchgeo_colearn.datasets.synthetic import DEFAULT_MODALITIES, ModalityKind
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset
from torchgeo_colearn.main import main
from torchgeo_colearn.trainers.single import SingleModalityTask

ORIGINAL = synthetic_module.SyntheticMultiSensorDataModule


class SelectableSynthetic(ORIGINAL):
    """Test stand-in for the datamodules' `modalities` option (being added to every datamodule).

    The synthetic datamodule's own ``modalities`` argument names the generated modalities; here they are
    ``kinds`` and ``modalities`` keeps only the listed ones in the batches.
    """

    def __init__(
        self,
        kinds: dict[str, ModalityKind] = DEFAULT_MODALITIES,
        modalities: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(modalities=kinds, **kwargs)
        if modalities is not None and (unknown := set(modalities) - set(kinds)):
            raise ValueError(f'unknown modalities {sorted(unknown)}')
        self.selected = modalities

    def load_dataset(self) -> TensorMultiModalDataset:
        full = super().load_dataset()
        if self.selected is None:
            return full
        drop = {image_key(m) for m in full.modalities if m not in self.selected}
        tensors = {k: v for k, v in full.tensors.items() if k not in drop}
        return TensorMultiModalDataset(tensors, ids=full.ids)


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
                'kinds': {'s1': 'timeseries', 's2': 'timeseries'},
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


def with_selection(cls: type) -> type:
    """Give a datamodule class the `modalities` option (being added to every datamodule) for config checks."""

    class Selectable(cls):  # type: ignore[misc]
        def __init__(self, modalities: list[str] | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.selected = modalities

    Selectable.__name__ = cls.__name__
    return Selectable


class FailingTask(SingleModalityTask):
    """A task whose training fails at run time (a valid config that breaks in the grid)."""

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        raise RuntimeError('boom in training_step')


class GroupedSynthetic(SelectableSynthetic):
    """Stand-in for a datamodule with grouped folds that describes its splits (being added to k-fold ones)."""

    def __init__(self, group_by: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group_by = group_by

    def split_summary(self) -> dict[str, dict[str, int]]:
        sizes = {
            split: len(getattr(self, f'{split}_dataset'))
            for split in ('train', 'val', 'test')
        }
        return {'samples': sizes, 'groups': {k: v // 4 for k, v in sizes.items()}}
