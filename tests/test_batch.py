# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchgeo.datamodules import TreeSatAIDataModule

from torchgeo_colearn.batch import (
    FUSED_IMAGE_KEY,
    check_keys,
    doy_key,
    image_key,
    key_modality,
    modalities_in,
    present_key,
    valid_key,
)
from torchgeo_colearn.main import main
from torchgeo_colearn.trainers.colearn import CoLearnTask

from .fakes import make_trainer

TREESATAI = os.path.join(os.path.dirname(__file__), 'data', 'torchgeo_treesatai')


def test_modality_keys() -> None:
    assert [k('s1') for k in (image_key, valid_key, present_key, doy_key)] == [
        'image_s1',
        'valid_s1',
        'present_s1',
        'doy_s1',
    ]
    assert valid_key.modality_of('valid_s2') == 's2'
    assert valid_key.modality_of('image_s2') is None


@pytest.mark.parametrize(
    'key,modality',
    [
        ('image_s1', 's1'),
        ('present_s1_asc', 's1_asc'),
        ('doy_s2', 's2'),
        ('label', None),
    ],
)
def test_key_modality(key: str, modality: str | None) -> None:
    assert key_modality(key) == modality


class TestCheckKeys:
    def test_fused_image_is_ignored(self) -> None:
        batch = {
            'image_s1': torch.zeros(2, 3),
            FUSED_IMAGE_KEY: torch.zeros(2, 5),
            'label': torch.zeros(2),
        }
        check_keys(batch, ['s1'])
        assert modalities_in(batch) == ('s1',)

    @pytest.mark.parametrize('key', ['images', 'image_s2', 'input'])
    def test_other_keys_still_rejected(self, key: str) -> None:
        with pytest.raises(KeyError, match=repr(key) if key != 'image_s2' else "'s2'"):
            check_keys({'image_s1': torch.zeros(1), key: torch.zeros(1)}, ['s1'])


class KeyRecorder(Callback):
    """Record the keys of the training batches the task receives."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.seen.update(batch)


def colearn_task() -> CoLearnTask:
    return CoLearnTask(
        encoders={
            'aerial': {'name': 'timm', 'model': 'resnet18', 'in_channels': 4},
            's1': {'name': 'timm', 'model': 'resnet18', 'in_channels': 3},
            's2': {'name': 'timm', 'model': 'resnet18', 'in_channels': 12},
        },
        task='multilabel',
        num_labels=15,
        embed_dim=8,
    )


@pytest.mark.usefixtures('tiny_timm')
class TestTorchGeoDataModule:
    """TorchGeo 0.8.1's own TreeSatAIDataModule adds a fused ``image`` next to the sensors."""

    def test_fit_and_test(self, tmp_path: Path) -> None:
        keys = KeyRecorder()
        dm = TreeSatAIDataModule(batch_size=2, patch_size=8, root=TREESATAI)
        task = colearn_task()
        trainer = make_trainer(tmp_path, [keys], logger=False)
        trainer.fit(task, dm)
        assert keys.seen == {'image_aerial', 'image_s1', 'image_s2', 'image', 'label'}
        results = trainer.test(task, dm, verbose=False)
        assert results and 'test/s1/MacroF1Score' in results[0]

    def test_cli(self, tmp_path: Path) -> None:
        config = tmp_path / 'treesatai.yaml'
        config.write_text(
            f"""
model:
  class_path: torchgeo_colearn.CoLearnTask
  init_args:
    task: multilabel
    num_labels: 15
    embed_dim: 8
    encoders:
      aerial: {{name: timm, model: resnet18, in_channels: 4}}
      s1: {{name: timm, model: resnet18, in_channels: 3}}
      s2: {{name: timm, model: resnet18, in_channels: 12}}
data:
  class_path: torchgeo.datamodules.TreeSatAIDataModule
  init_args:
    batch_size: 2
    patch_size: 8
  dict_kwargs:
    root: {TREESATAI}
"""
        )
        args = [
            '--config',
            str(config),
            '--trainer.fast_dev_run',
            '1',
            '--trainer.accelerator',
            'cpu',
            '--trainer.logger',
            'false',
            '--trainer.default_root_dir',
            str(tmp_path),
        ]
        cli = main(['fit', *args])
        assert cli is not None and cli.trainer.state.finished
        main(['test', *args])
