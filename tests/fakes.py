# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Fakes shared by the tests: a small deterministic task and dataset, tiny encoder configs, trainers,
checkpoints and the places of the fake and real data sets."""

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader

from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset
from torchgeo_colearn.metrics import (
    TaskType,
    build_metrics,
    metric_input,
    metric_target,
)
from torchgeo_colearn.models import Encoder
from torchgeo_colearn.presence import ModalityInput
from torchgeo_colearn.scenarios import Scenario
from torchgeo_colearn.trainers.base import MultiModalTask
from torchgeo_colearn.trainers.interface import LossOutput

#: The fake data sets, one folder each (``tests/data/<name>``).
FAKE_DATA = os.path.join(os.path.dirname(__file__), 'data')
#: The real data sets next to the checkout (``../shared/data``); the tests that need them skip without.
REAL_DATA = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data')


def fake_data_copy(name: str, tmp_path: Path) -> str:
    """Copy a fake data set to a writable folder (the data sets write their caches under the root).

    Args:
        name: The folder under :data:`FAKE_DATA`.
        tmp_path: Where to put the copy.

    Returns:
        The root of the copy, without the generator script, caches and archives.
    """
    path = str(tmp_path / name)
    ignore = shutil.ignore_patterns('data.py', '*.pt', '*.zip')
    shutil.copytree(os.path.join(FAKE_DATA, name), path, ignore=ignore)
    return path


def cropharvest_shapes(steps: int) -> dict[str, tuple[int, ...]]:
    """Modality shapes of the CropHarvest band layout (also Presto's exports) with *steps* time steps."""
    series = {'s1': 2, 's2': 11, 'ndvi': 1, 'weather': 2}
    return {m: (steps, bands) for m, bands in series.items()} | {'dem': (2,)}


def tiny_tempcnn(channels: int, seq_len: int | None, **kwargs: Any) -> dict[str, Any]:
    """Config of a TempCNN of 8 filters and a dense layer of 16 (fast on a CPU)."""
    return {
        'name': 'tempcnn',
        'in_channels': channels,
        'seq_len': seq_len,
        'hidden_dim': 8,
        'dense_dim': 16,
        **kwargs,
    }


#: Tiny encoders of the synthetic data's default modalities: two (12, 3) series and a 16-vector.
TINY_ENCODERS: dict[str, dict[str, Any]] = {
    's1': tiny_tempcnn(3, 12),
    's2': tiny_tempcnn(3, 12),
    'dem': {'name': 'mlp', 'in_features': 16, 'hidden_dims': [16]},
}


def cli_args(
    config: str,
    default_root_dir: Path,
    data: Mapping[str, object],
    trainer: Mapping[str, object],
) -> list[str]:
    """Command-line arguments of an experiment config with some data and trainer options changed.

    Args:
        config: Path of the experiment config.
        default_root_dir: The trainer's default root folder.
        data: Datamodule arguments, ``--data.init_args.<name> <value>``.
        trainer: Trainer arguments, ``--trainer.<name> <value>``.

    Returns:
        The arguments after the subcommand (``fit``, ``test``, ...).
    """
    options = {f'data.init_args.{name}': value for name, value in data.items()}
    options |= {f'trainer.{name}': value for name, value in trainer.items()}
    options['trainer.default_root_dir'] = default_root_dir
    args = ['--config', config]
    for name, value in options.items():
        args += [f'--{name}', str(value)]
    return args


def fast_dev_run_args(
    config: str, root: str, default_root_dir: Path, **data: object
) -> list[str]:
    """Command-line arguments running one batch of an experiment config on the CPU, without a logger."""
    trainer = {'accelerator': 'cpu', 'fast_dev_run': 1, 'logger': 'false'}
    return cli_args(config, default_root_dir, {'root': root, **data}, trainer)


def synthetic_args(default_root_dir: Path, **trainer: object) -> list[str]:
    """Command-line arguments of the synthetic experiment (200 samples) on the CPU."""
    config = os.path.join('experiments', 'synthetic.yaml')
    trainer = {'accelerator': 'cpu', **trainer}
    return cli_args(config, default_root_dir, {'num_samples': 200}, trainer)


#: Layout of the fake modalities: (T, C) time series or (C,) vectors.
SHAPES: dict[str, tuple[int, ...]] = {
    's1': (6, 3),
    's2': (5,),
    's3': (4, 2),
    's4': (3,),
}


class MeanLinear(Encoder):
    """Masked mean over the valid time steps (series), then a linear layer and tanh."""

    def __init__(self, shape: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.input_shape = tuple(shape)
        self.linear = nn.Linear(shape[-1], out_dim)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        if x.ndim == 3:
            if valid is None:
                valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            weights = valid.unsqueeze(-1).float()
            x = (x * weights).sum(1) / weights.sum(1).clamp(min=1)
        return torch.tanh(self.linear(x))


class LinearTask(MultiModalTask):
    """One linear encoder and head per modality; fused scenarios average features into a fusion head."""

    supports_fusion: ClassVar[bool] = True

    def configure_models(self) -> None:
        torch.manual_seed(0)
        self.encoders = nn.ModuleDict(
            {m: MeanLinear(SHAPES[m], 8) for m in self.hparams['encoders']}
        )
        self.heads = nn.ModuleDict(
            {m: nn.Linear(8, self.output_dim) for m in self.hparams['encoders']}
        )
        self.fusion_head = nn.Linear(8, self.output_dim)

    def encoder_of(self, modality: str) -> Encoder:
        encoder = self.encoders[modality]
        assert isinstance(encoder, Encoder)
        return encoder

    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, Tensor]:
        return {m: self.encoders[m](x, valid) for m, (x, valid) in inputs.items()}

    def predict_from(self, features: Mapping[str, Any], scenario: Scenario) -> Tensor:
        if len(scenario) == 1:
            raw: Tensor = self.heads[scenario[0]](features[scenario[0]])
        else:
            raw = self.fusion_head(torch.stack([features[m] for m in scenario]).mean(0))
        return raw.squeeze(-1) if self.output_dim == 1 else raw

    def losses(
        self,
        inputs: Mapping[str, ModalityInput],
        features: Mapping[str, Any],
        target: Tensor,
    ) -> LossOutput:
        outputs: dict[Scenario, Tensor] = {
            (m,): self.predict_from(features, (m,)) for m in self.modalities
        }
        loss = torch.stack([self.criterion(o, target) for o in outputs.values()]).sum()
        return {'loss': loss}, outputs


class SingleLinearTask(LinearTask):
    """The same task without fused scenarios."""

    supports_fusion: ClassVar[bool] = False


def fake_task(
    task: TaskType = 'multiclass',
    modalities: Sequence[str] = ('s1', 's2'),
    fuse: bool = True,
    **kwargs: Any,
) -> LinearTask:
    """Build a LinearTask (3 classes, 4 labels, regression target 50 +- 10)."""
    cls = LinearTask if fuse else SingleLinearTask
    options: dict[str, dict[str, Any]] = {
        'multiclass': {'num_classes': 3},
        'multilabel': {'num_labels': 4},
        'regression': {'target_mean': 50.0, 'target_std': 10.0},
    }
    extra = options.get(task, {})
    return cls(
        encoders={m: {'shape': SHAPES[m]} for m in modalities},
        task=task,
        **{'scheduler': 'none', **extra, **kwargs},
    )


def make_dataset(
    task: TaskType = 'multiclass',
    modalities: Sequence[str] = ('s1', 's2'),
    num_samples: int = 40,
    seed: int = 0,
) -> TensorMultiModalDataset:
    """Random inputs (with random validity masks for series) and random labels of a task type."""
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, Tensor] = {
        f'image_{m}': torch.randn(num_samples, *SHAPES[m], generator=generator)
        for m in modalities
    }
    for m in modalities:
        if len(SHAPES[m]) == 2:
            valid = torch.rand(num_samples, SHAPES[m][0], generator=generator) > 0.2
            valid[:, 0] = True
            tensors[f'valid_{m}'] = valid
    match task:
        case 'binary':
            tensors['label'] = torch.randint(0, 2, (num_samples,), generator=generator)
        case 'multiclass':
            tensors['label'] = torch.randint(0, 3, (num_samples,), generator=generator)
        case 'multilabel':
            tensors['label'] = (
                torch.rand(num_samples, 4, generator=generator) > 0.5
            ).float()
        case 'regression':
            tensors['label'] = 50 + 10 * torch.randn(num_samples, generator=generator)
    return TensorMultiModalDataset(
        tensors, ids=[f'sample_{i}' for i in range(num_samples)]
    )


def loader(dataset: TensorMultiModalDataset, batch_size: int = 16) -> DataLoader[Any]:
    """A plain DataLoader (per-sample collation)."""
    return DataLoader(dataset, batch_size=batch_size)


def make_trainer(
    tmp_path: Path,
    callbacks: Sequence[Callback] = (),
    logger: bool = True,
    **kwargs: Any,
) -> Trainer:
    """A one-epoch CPU trainer without checkpoints or progress bar."""
    options: dict[str, Any] = {
        'accelerator': 'cpu',
        'devices': 1,
        'logger': TensorBoardLogger(str(tmp_path), name='logs') if logger else False,
        'callbacks': list(callbacks),
        'default_root_dir': str(tmp_path),
        'enable_progress_bar': False,
        'enable_model_summary': False,
        'enable_checkpointing': False,
        'max_epochs': 1,
        **kwargs,
    }
    return Trainer(**options)


def fake_checkpoint(tmp_path: Path, name: str = 'fake.ckpt') -> Path:
    """Fit a multiclass :func:`fake_task` on one batch and save it as ``tmp_path / name``."""
    model = fake_task('multiclass')
    trainer = make_trainer(tmp_path, logger=False, limit_train_batches=1)
    trainer.fit(model, loader(make_dataset('multiclass')))
    path = tmp_path / name
    trainer.save_checkpoint(path)
    return path


def direct_scores(
    model: MultiModalTask, dataset: TensorMultiModalDataset, scenario: Scenario
) -> dict[str, float]:
    """Score one scenario on the whole dataset at once with build_metrics, outside any loop."""
    batch = dataset.batch(range(len(dataset)))
    model.eval()
    with torch.no_grad():
        prediction = model.predict_scenarios(batch, [scenario])[scenario]
    metrics = build_metrics(model.task_type, model.num_classes, model.num_labels)
    metrics.update(
        metric_input(model.task_type, prediction),
        metric_target(model.task_type, batch['label']),
    )
    return {str(k): float(v) for k, v in metrics.compute().items()}
