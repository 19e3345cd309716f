# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""``colearn demo``: co-learning vs single-modality training on the synthetic benchmark."""

import argparse
import csv
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from rich.console import Console
from rich.table import Table

from .datamodules.synthetic import SyntheticMultiSensorDataModule
from .datasets.synthetic import DEFAULT_MODALITIES, ModalityKind
from .metrics import TaskType, build_metrics
from .scenarios import metric_key
from .trainers import CoLearnTask, MultiModalTask, SingleModalityTask

#: The two methods the demo compares, by display name.
METHODS: dict[str, Callable[..., MultiModalTask]] = {
    'co-learned': CoLearnTask,
    'trained alone': SingleModalityTask,
}

#: Embedding size d of the demo models.
EMBED_DIM = 32


def demo_encoders(
    modalities: Mapping[str, ModalityKind], seq_len: int = 12
) -> dict[str, dict[str, Any]]:
    """Return the encoder configs the demo (and ``experiments/synthetic.yaml``) use per modality kind.

    Args:
        modalities: Modality name mapped to its kind.
        seq_len: Time steps of time-series modalities.

    Returns:
        Modality name mapped to an encoder config: a small TempCNN for time series, an MLP for vectors,
        a timm ResNet-10 for images.
    """
    configs: dict[ModalityKind, dict[str, Any]] = {
        'timeseries': {
            'name': 'tempcnn',
            'in_channels': 3,
            'seq_len': seq_len,
            'hidden_dim': 32,
            'dense_dim': 64,
        },
        'vector': {'name': 'mlp', 'in_features': 16, 'hidden_dims': [64]},
        'image': {'name': 'timm', 'model': 'resnet10t', 'in_channels': 4},
    }
    return {name: dict(configs[kind]) for name, kind in modalities.items()}


def run_method(
    method: str,
    task: TaskType,
    output: str,
    max_epochs: int,
    patience: int,
    accelerator: str,
    seed: int,
    data_args: Mapping[str, Any],
    callbacks: Sequence[Callback] = (),
) -> dict[str, float]:
    """Train one method on the synthetic benchmark and test its best checkpoint.

    Args:
        method: A key of :data:`METHODS`.
        task: The task type.
        output: Log directory.
        max_epochs: Maximum number of epochs.
        patience: Early-stopping patience on ``val_loss``, in epochs.
        accelerator: Lightning accelerator.
        seed: Global seed.
        data_args: Arguments of :class:`SyntheticMultiSensorDataModule` besides *task* and *seed*.
        callbacks: Extra callbacks.

    Returns:
        The test metrics, e.g. ``{'test_s1_OverallAccuracy': 0.9, ...}``.
    """
    seed_everything(seed, workers=True)
    datamodule = SyntheticMultiSensorDataModule(task=task, seed=seed, **data_args)
    model = METHODS[method](
        encoders=demo_encoders(
            datamodule.kwargs['modalities'], datamodule.kwargs['seq_len']
        ),
        task=task,
        num_classes=datamodule.kwargs['num_classes'] if task == 'multiclass' else None,
        num_labels=datamodule.kwargs['num_labels'] if task == 'multilabel' else None,
        embed_dim=EMBED_DIM,
        class_weights='balanced' if task in ('binary', 'multiclass') else None,
    )
    checkpoint = ModelCheckpoint(monitor='val_loss')
    trainer = Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        logger=TensorBoardLogger(output, name=method.replace(' ', '_')),
        callbacks=[
            EarlyStopping('val_loss', patience=patience),
            checkpoint,
            *callbacks,
        ],
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    trainer.fit(model, datamodule)
    (results,) = trainer.test(model, datamodule, ckpt_path='best', verbose=False)
    return dict(results)


def comparison_rows(
    task: TaskType,
    modalities: Sequence[str],
    results: Mapping[str, Mapping[str, float]],
) -> list[dict[str, Any]]:
    """Tabulate co-learned vs trained-alone test metrics per inference modality.

    Args:
        task: The task type.
        modalities: The inference modalities.
        results: Method name mapped to its test metrics.

    Returns:
        One row per (modality, metric): ``modality``, ``metric``, one column per method and ``gain``
        (co-learned minus trained alone; for RMSE and MAE, lower is better, so the sign is flipped).
    """
    rows = []
    for modality in modalities:
        for metric in build_metrics(task, num_classes=2, num_labels=1):
            values = {
                m: results[m][metric_key('test', modality, str(metric))]
                for m in METHODS
            }
            sign = -1 if metric in ('RMSE', 'MAE') else 1
            gain = sign * (values['co-learned'] - values['trained alone'])
            rows.append(
                {'modality': modality, 'metric': metric, **values, 'gain': gain}
            )
    return rows


def print_table(rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """Print the comparison table in the terminal.

    Args:
        rows: Output of :func:`comparison_rows`.
        title: Table title.
    """
    table = Table(title=title)
    for column in ('inference modality', 'metric', *METHODS, 'gain'):
        table.add_column(
            column,
            justify='left' if column in ('inference modality', 'metric') else 'right',
        )
    for row in rows:
        gain = row['gain']
        style = 'green' if gain > 0 else 'red'
        table.add_row(
            row['modality'],
            row['metric'],
            *(f'{row[m]:.4f}' for m in METHODS),
            f'[{style}]{gain:+.4f}[/{style}]',
        )
    Console().print(table)


def write_table(rows: Sequence[Mapping[str, Any]], path: str) -> None:
    """Write the comparison table as CSV.

    Args:
        rows: Output of :func:`comparison_rows`.
        path: CSV path.
    """
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the demo: train CoLearnTask and single-modality models, print the comparison.

    Args:
        argv: Arguments after ``demo``; see ``colearn demo --help``.

    Returns:
        The comparison rows.
    """
    parser = argparse.ArgumentParser(
        prog='colearn demo',
        description=(
            'Train a co-learning model (MDiCo) and one model per modality trained alone on the embedded '
            'synthetic multi-sensor benchmark, then compare them per inference modality on the test fold.'
        ),
    )
    parser.add_argument(
        '--task',
        default='multiclass',
        choices=['binary', 'multiclass', 'multilabel', 'regression'],
    )
    parser.add_argument(
        '--output', default='logs/demo', help='log directory (TensorBoard, tables)'
    )
    parser.add_argument('--max-epochs', type=int, default=60)
    parser.add_argument(
        '--patience', type=int, default=10, help='early stopping on val_loss'
    )
    parser.add_argument('--num-samples', type=int, default=2000)
    parser.add_argument('--accelerator', default='auto')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help=(
            'CPU threads of torch; the demo models are small, so one thread is fastest and does not '
            'collapse when other processes share the cores'
        ),
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_args = {'num_samples': args.num_samples, 'modality_kinds': DEFAULT_MODALITIES}
    results = {
        method: run_method(
            method,
            args.task,
            args.output,
            args.max_epochs,
            args.patience,
            args.accelerator,
            args.seed,
            data_args,
        )
        for method in METHODS
    }
    rows = comparison_rows(args.task, list(DEFAULT_MODALITIES), results)
    print_table(
        rows, f'Synthetic benchmark ({args.task}): test metrics per inference modality'
    )
    path = os.path.join(args.output, 'comparison.csv')
    write_table(rows, path)
    print(f'Table written to {path}; TensorBoard: tensorboard --logdir {args.output}')
    return rows
