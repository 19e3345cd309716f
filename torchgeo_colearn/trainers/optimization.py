# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Optimisers and learning-rate schedules selectable by name."""

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau

#: Optimisers selectable by name.
OptimizerName: TypeAlias = Literal['adam', 'adamw', 'sgd']

#: Learning-rate schedules selectable by name.
SchedulerName: TypeAlias = Literal['plateau', 'cosine', 'none']


def optimization(
    params: Sequence[nn.Parameter],
    optimizer: str,
    scheduler: str,
    lr: float,
    weight_decay: float,
    patience: int,
    max_epochs: int | None,
    monitor: str,
) -> OptimizerLRSchedulerConfig:
    """Build the optimiser and the learning-rate schedule of a task.

    Adam and AdamW are fused (one kernel per step instead of a few per parameter: the models are many
    small tensors) when every parameter is a floating-point tensor on the CPU or a CUDA device.

    Args:
        params: The trainable parameters.
        optimizer: An :data:`OptimizerName`: 'adam', 'adamw' or 'sgd' (momentum 0.9).
        scheduler: A :data:`SchedulerName`: 'plateau' (reduce on *monitor*), 'cosine' (over
            *max_epochs*) or 'none'.
        lr: Learning rate.
        weight_decay: Weight decay.
        patience: Epochs without improvement of *monitor* before 'plateau' reduces the rate.
        max_epochs: The trainer's maximum number of epochs (the 'cosine' period), if known.
        monitor: The logged value 'plateau' monitors, e.g. ``'val_loss'``.

    Returns:
        Lightning's optimiser configuration.

    Raises:
        ValueError: On an unknown optimiser or schedule.
    """
    fused = all(
        p.device.type in ('cpu', 'cuda') and p.is_floating_point() for p in params
    )
    built: Optimizer
    match optimizer:
        case 'adam':
            built = Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
        case 'adamw':
            built = AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
        case 'sgd':
            built = SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
        case other:
            msg = f"optimizer must be 'adam', 'adamw' or 'sgd', got {other!r}"
            raise ValueError(msg)
    schedule: Any
    match scheduler:
        case 'plateau':
            schedule = ReduceLROnPlateau(built, patience=patience)
        case 'cosine':
            schedule = CosineAnnealingLR(built, T_max=max(1, max_epochs or 1))
        case 'none':
            return {'optimizer': built}  # type: ignore[typeddict-item]
        case other:
            msg = f"scheduler must be 'plateau', 'cosine' or 'none', got {other!r}"
            raise ValueError(msg)
    return {
        'optimizer': built,
        'lr_scheduler': {'scheduler': schedule, 'monitor': monitor},
    }
