# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Labels: their validation against the task they are for, where they enter, and their statistics."""

from collections.abc import Sequence

import torch
from torch import Tensor

from .metrics import TaskType


def check_labels(
    labels: Tensor,
    task: TaskType | None,
    num_classes: int | None = None,
    where: str = 'label',
    ids: Sequence[str] | None = None,
) -> None:
    """Check that labels fit a task, naming the first offending sample.

    * every task: float labels are finite (no NaN, ``inf``);
    * ``'binary'``, ``'multiclass'``: one class index per sample, shape (N,), integral values
      (``0.7`` is not truncated to 0), within ``[0, num_classes)`` when *num_classes* is given
      (binary: 2);
    * ``'multilabel'``: multi-hot, shape (N, num_labels) with *num_classes* labels when given,
      values 0 or 1;
    * ``'regression'``: one number per sample, shape (N,).

    Args:
        labels: The labels of N samples.
        task: The task; None checks finiteness only.
        num_classes: Classes (binary, multiclass) or labels (multilabel); None skips the range or
            width check.
        where: What the labels are, for the messages, e.g. ``"LFMCDataModule, train split, 'label'"``.
        ids: Identifiers of the N samples, named in the messages; by default their row.

    Raises:
        ValueError: If a label does not fit; the message names *where*, the sample and the value.
    """

    def sample(row: int) -> str:
        return f'sample {ids[row]!r}' if ids is not None else f'row {row}'

    def first(bad: Tensor, problem: str) -> None:
        if bad.any():
            flat = int(torch.nonzero(bad.flatten())[0])
            row = flat // max(1, bad[0].numel()) if bad.ndim > 1 else flat
            value = labels.flatten()[flat].item()
            text = f'{value:.6g}' if isinstance(value, float) else repr(value)
            msg = f'{where}: {sample(row)} has label {text}, {problem}'
            raise ValueError(msg)

    if labels.is_floating_point():
        first(~torch.isfinite(labels), 'which is not a finite number')
    match task:
        case 'binary' | 'multiclass':
            _check_ndim(labels, 1, where, 'one class index per sample')
            if labels.is_floating_point():
                first(
                    labels != labels.round(),
                    'which is not a class index (an integer); class labels are not rounded',
                )
            count = 2 if task == 'binary' and num_classes is None else num_classes
            low = labels.long() < 0
            high = labels.long() >= count if count is not None else low
            span = f'0..{count - 1}' if count is not None else 'non-negative'
            first(low | high, f'outside the class indices {span}')
        case 'multilabel':
            _check_ndim(labels, 2, where, 'a multi-hot vector per sample')
            if num_classes is not None and labels.shape[1] != num_classes:
                msg = (
                    f'{where}: multi-hot labels of width {labels.shape[1]} (shape '
                    f'{tuple(labels.shape)}), expected {num_classes} labels per sample'
                )
                raise ValueError(msg)
            first((labels != 0) & (labels != 1), 'expected 0 or 1 in a multi-hot label')
        case 'regression':
            _check_ndim(labels, 1, where, 'one number per sample')
        case None:
            pass


def _check_ndim(labels: Tensor, ndim: int, where: str, expected: str) -> None:
    """Check the number of dimensions of the labels of N samples.

    Args:
        labels: The labels.
        ndim: Expected dimensions, the sample axis included.
        where: What the labels are, for the message.
        expected: What one label should be, for the message.

    Raises:
        ValueError: If the labels have another number of dimensions.
    """
    if labels.ndim != ndim:
        shape = '(N,)' if ndim == 1 else '(N, L)'
        msg = (
            f'{where}: labels of shape {tuple(labels.shape)}, expected {expected}, '
            f'shape {shape}'
        )
        raise ValueError(msg)


def balanced_weights(labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Return 'balanced' class weights of a set of labels.

    Single-label data: n / (k * count_c) per class (scikit-learn's 'balanced'). Multi-label data: the
    positive weight of each label, negatives / positives.

    Args:
        labels: (N,) class indices or (N, L) multi-hot labels.
        num_classes: Number of classes of the task, so that classes absent from the labels still get
            a (zero) weight; by default the largest label + 1.

    Returns:
        Float32 weights, shape (num_classes,) or (L,); a class or label absent from the labels gets
        weight 0.
    """
    if labels.ndim == 2:
        positives = labels.float().sum(0)
        weights = (labels.shape[0] - positives) / positives
        return torch.where(positives > 0, weights, torch.zeros_like(weights))
    counts = torch.bincount(labels.long(), minlength=num_classes or 0).float()
    weights = labels.shape[0] / (counts.numel() * counts)
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def target_moments(labels: Tensor) -> tuple[float, float]:
    """Return the mean and standard deviation (ddof=0) of regression targets.

    Args:
        labels: (N,) targets.

    Returns:
        Mean and standard deviation, in target units.
    """
    values = labels.double()
    return float(values.mean()), float(values.std(unbiased=False))
