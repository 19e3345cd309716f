# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Checks of what a task receives: targets, missing input values, batch size, validation to schedule on."""

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, get_args

import torch
from lightning.pytorch import Trainer
from torch import Tensor

from ..batch import check_keys, image_key, modalities_in, valid_key
from ..metrics import TaskType
from ..models import Encoder
from ..presence import Inputs, Presence

#: The batch key of the targets.
LABEL_KEY = 'label'

#: The batch key of the sample identifiers (a list of str or a (B,) tensor), named in messages.
ID_KEY = 'id'

#: Where deferred messages name the first offending batch.
BATCH_PLACEHOLDER = '<batch>'


def check_task_options(
    task: str, encoders: Mapping[str, Any], min_modalities: int, method: str
) -> None:
    """Check the options every task shares.

    Args:
        task: The task type.
        encoders: Modality mapped to its encoder config.
        min_modalities: Minimum number of training modalities of the method.
        method: Name of the task class, for the message.

    Raises:
        ValueError: With fewer modalities than the method needs, a modality name that is not an
            identifier, or an unknown task type.
    """
    if task not in get_args(TaskType):
        msg = f'task must be one of {get_args(TaskType)}, got {task!r}'
        raise ValueError(msg)
    if len(encoders) < min_modalities:
        msg = (
            f'{method} needs at least {min_modalities} modalities in `encoders`, got '
            f'{list(encoders)}'
        )
        raise ValueError(msg)
    for modality in encoders:
        if not modality.isidentifier():
            msg = f'modality names must be identifiers (letters, digits, _), got {modality!r}'
            raise ValueError(msg)


def check_non_negative(**values: float) -> None:
    """Check that options such as loss weights are not negative.

    Args:
        **values: Option name mapped to its value.

    Raises:
        ValueError: Naming the first negative option.
    """
    for name, value in values.items():
        if value < 0:
            msg = f'{name} must be >= 0, got {value}'
            raise ValueError(msg)


def describe_value(value: float) -> str:
    """Name a non-finite value the way users write it.

    Args:
        value: A NaN, ``inf`` or ``-inf``.

    Returns:
        'NaN', 'inf' or '-inf'.
    """
    if math.isnan(value):
        return 'NaN'
    return 'inf' if value > 0 else '-inf'


def describe_sample(batch: Mapping[str, Any], row: int) -> str:
    """Name a sample of a batch by its position and, when the batch has one, its ``id``.

    Args:
        batch: The batch.
        row: Position of the sample in the batch.

    Returns:
        E.g. ``"sample 3 (id 'field_17')"`` or ``'sample 3'``.
    """
    ids = batch.get(ID_KEY)
    if ids is None or len(ids) <= row:
        return f'sample {row}'
    value = ids[row]
    if isinstance(value, Tensor):
        value = value.item()
    return f'sample {row} (id {value!r})'


def check_presence(
    batch: Mapping[str, Any], presence: Presence, modalities: Sequence[str]
) -> None:
    """Check that every sample of a batch holds at least one modality.

    Args:
        batch: The batch, for the sample ``id``.
        presence: Which samples hold which modality.
        modalities: The modalities of the batch.

    Raises:
        ValueError: Naming the first sample that holds none.
    """
    held = presence.matrix(modalities)
    if held is None:
        return
    empty = ~held.any(1)
    if empty.any():
        row = int(torch.nonzero(empty)[0])
        msg = (
            f'{describe_sample(batch, row)} holds none of the modalities {list(modalities)} '
            f'(present_<modality> is False for each); leave such samples out (the datamodules do, '
            f'see their min_modalities option)'
        )
        raise ValueError(msg)


def check_target_layout(
    target: object, task: TaskType, num_labels: int | None, batch_size: int, where: str
) -> Tensor:
    """Check the type, dtype and shape of a batch of targets (no value is read).

    * binary, multiclass, regression: shape (B,), one class index or value per sample;
    * multilabel: shape (B, L), a multi-hot vector of L = *num_labels* per sample.

    A (B, 1) regression target is an error rather than squeezed: the predictions, the metrics and the
    prediction writer all hold one value per sample, and a trailing dimension most often means a
    dataset that stores a column instead of a value (or several targets).

    Args:
        target: The batch's ``label``.
        task: The task type.
        num_labels: Number of labels (multilabel).
        batch_size: Number of samples of the batch's inputs.
        where: What the target is, for the messages (the task, stage, batch and key).

    Returns:
        The target.

    Raises:
        TypeError: If the target is not a real-valued tensor.
        ValueError: On a wrong shape.
    """
    if not isinstance(target, Tensor):
        msg = f'{where}: expected a tensor, got {type(target).__name__}'
        raise TypeError(msg)
    if target.is_complex():
        msg = f'{where}: expected real values, got dtype {target.dtype}'
        raise TypeError(msg)
    shape = tuple(target.shape)
    match task:
        case 'multilabel':
            if target.ndim != 2 or shape[1] != num_labels:
                hint = (
                    ' (class indices? one multi-hot vector per sample is expected)'
                    if target.ndim == 1
                    else ''
                )
                msg = (
                    f'{where}: shape {shape}, expected (B, {num_labels}) multi-hot labels for '
                    f"task='multilabel' with num_labels={num_labels}{hint}"
                )
                raise ValueError(msg)
        case _:
            if target.ndim != 1:
                what = 'one value' if task == 'regression' else 'one class index'
                hint = (
                    '; squeeze the trailing dimension in the dataset'
                    if target.ndim == 2 and shape[1] == 1
                    else ''
                )
                msg = (
                    f'{where}: shape {shape}, expected (B,) with {what} per sample for '
                    f'task={task!r}{hint}'
                )
                raise ValueError(msg)
    if shape[0] != batch_size:
        msg = f'{where}: {shape[0]} targets for a batch of {batch_size} samples'
        raise ValueError(msg)
    return target


def target_faults(
    target: Tensor, task: TaskType, num_classes: int | None
) -> list[tuple[str, Tensor]]:
    """Find the target values that do not fit the task, on the target's device (nothing is read back).

    * every task: float values are finite (a NaN regression target is an error, not a NaN loss);
    * binary: 0 or 1;
    * multiclass: integral (float labels 0.7 are not truncated to 0) and in ``[0, num_classes)``;
    * multilabel: 0 or 1.

    Args:
        target: Targets whose layout :func:`check_target_layout` accepted.
        task: The task type.
        num_classes: Number of classes (multiclass).

    Returns:
        (problem, mask of the offending values, shaped as *target*) per rule, in the order they are
        reported.
    """
    if target.dtype == torch.bool:
        target = target.to(torch.uint8)
    faults: list[tuple[str, Tensor]] = []
    floating = target.is_floating_point()
    if floating:
        faults.append(('which is not a finite number', ~torch.isfinite(target)))
    match task:
        case 'binary' | 'multilabel':
            faults.append(('which is neither 0 nor 1', (target != 0) & (target != 1)))
        case 'multiclass':
            if floating:
                faults.append(
                    (
                        'which is not a class index (an integer); class labels are not rounded',
                        target != target.round(),
                    )
                )
            count = num_classes or 0
            faults.append(
                (
                    f'outside the class indices 0..{count - 1}',
                    (target < 0) | (target >= count),
                )
            )
        case 'regression':
            pass
    return faults


def first_fault(
    target: Tensor, mask: Tensor, problem: str, batch: Mapping[str, Any], where: str
) -> str:
    """Describe the first offending value of a target batch.

    Args:
        target: The targets.
        mask: Offending values, shaped as *target*, at least one set.
        problem: What is wrong with them.
        batch: The batch, for the sample ``id``.
        where: What the target is.

    Returns:
        The message, naming the sample, its id and the value.
    """
    flat = int(torch.nonzero(mask.flatten())[0])
    row = flat // max(1, target[0].numel())
    value = target.flatten()[flat].item()
    if isinstance(value, float):
        text = f'{value:.6g}' if math.isfinite(value) else describe_value(value)
    else:
        text = repr(value)
    return f'{where}: {describe_sample(batch, row)} has label {text}, {problem}'


class BatchChecks:
    """The value checks of batches: immediate on the CPU, deferred to the epoch's end elsewhere.

    A check that reads values (NaN and ``inf`` in inputs; range, integrality and finiteness of targets)
    raises at once for CPU tensors, naming the sample and its ``id``. On accelerators, reading a value
    back would synchronise the device at every step: the verdict accumulates on the device instead and
    is read once, at the end of the epoch (:meth:`raise_deferred`), naming the first offending batch.
    """

    def __init__(self) -> None:
        """Initialize a new BatchChecks instance."""
        #: Defer the checks of CPU tensors too (tests of the accelerator path on the CPU).
        self.defer_on_cpu = False
        #: Message mapped to (whether an offending value was seen, first offending batch or -1).
        self._pending: dict[str, tuple[Tensor, Tensor]] = {}

    def defers(self, x: Tensor) -> bool:
        """Whether the checks of a tensor are deferred to the end of the epoch.

        Args:
            x: A batch tensor.

        Returns:
            True on accelerators (or when :attr:`defer_on_cpu` is set).
        """
        return self.defer_on_cpu or x.device.type != 'cpu'

    def _record(self, message: str, bad: Tensor, batch_idx: int) -> None:
        """Accumulate a deferred verdict on the device.

        Args:
            message: Raised at the end of the epoch if *bad* was ever set; :data:`BATCH_PLACEHOLDER`
                is replaced by the first offending batch index.
            bad: Scalar bool tensor.
            batch_idx: Index of the batch.
        """
        seen, first = self._pending.get(
            message, (torch.zeros_like(bad), torch.full_like(bad, -1, dtype=torch.long))
        )
        first = torch.where((first < 0) & bad, batch_idx, first)
        self._pending[message] = (seen | bad, first)

    def check_input(
        self,
        key: str,
        x: Tensor,
        batch: Mapping[str, Any],
        defer: bool,
        batch_idx: int = 0,
        rows: Tensor | None = None,
    ) -> None:
        """Check that an input holds no missing value (NaN, ``inf``, ``-inf``).

        Args:
            key: The batch key, for the message.
            x: The input tensor (B, ...).
            batch: The batch, for the sample ``id``.
            defer: Allow deferring the check (:meth:`defers`); direct calls of the model check now.
            batch_idx: Index of the batch, named by deferred messages.
            rows: Optional (B,) bool mask of the samples to check (those that hold the modality).

        Raises:
            ValueError: If *x* holds NaN or ``inf`` (checked now).
        """
        if not x.is_floating_point():
            return
        bad = ~torch.isfinite(x)
        if rows is not None:
            bad = bad & rows.view(-1, *[1] * (x.ndim - 1))
        if defer and self.defers(x):
            message = (
                f'{key} held NaN or inf in batch {BATCH_PLACEHOLDER} of this epoch; let the '
                f'datamodule fill them (fill_nan=True fills NaN and inf)'
            )
            self._record(message, bad.any(), batch_idx)
            return
        if not bad.any():
            return
        flat = int(torch.nonzero(bad.flatten())[0])
        row = flat // max(1, x[0].numel())
        value = describe_value(x.flatten()[flat].item())
        msg = (
            f'{key} holds {value} ({describe_sample(batch, row)}); let the datamodule fill missing '
            f'values (fill_nan=True fills NaN and inf) or fill them before calling the model'
        )
        raise ValueError(msg)

    def check_target(
        self,
        batch: Mapping[str, Any],
        batch_size: int,
        task: TaskType,
        num_classes: int | None,
        num_labels: int | None,
        where: str,
        batch_idx: int,
    ) -> Tensor:
        """Check a batch's ``label`` against the task: layout now, values now or deferred.

        Args:
            batch: The batch.
            batch_size: Number of samples of its inputs.
            task: The task type.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            where: Who receives the targets, e.g. ``'CoLearnTask, train'``, for the messages.
            batch_idx: Index of the batch.

        Returns:
            The targets.

        Raises:
            KeyError: If the batch has no ``label``.
            TypeError: If the label is not a real-valued tensor.
            ValueError: On a wrong shape, or a value that does not fit the task (see
                :func:`target_faults`), naming the sample, its id and the value.
        """
        if LABEL_KEY not in batch:
            msg = f'{where} batches need a {LABEL_KEY!r} key, got keys {sorted(batch)}'
            raise KeyError(msg)
        here = f'{where} batch {batch_idx}, key {LABEL_KEY!r}'
        target = check_target_layout(
            batch[LABEL_KEY], task, num_labels, batch_size, here
        )
        defer = self.defers(target)
        for problem, mask in target_faults(target, task, num_classes):
            if defer:
                message = (
                    f'{where} batch {BATCH_PLACEHOLDER} of this epoch, key {LABEL_KEY!r}: a label '
                    f'{problem} (checked at the end of the epoch on {target.device.type!r}; on the '
                    f'CPU the error names the sample)'
                )
                self._record(message, mask.any(), batch_idx)
            elif mask.any():
                raise ValueError(first_fault(target, mask, problem, batch, here))
        return target

    def raise_deferred(self) -> None:
        """Raise for the deferred checks that failed since the last call (one read-back in all).

        Raises:
            ValueError: Naming each failed check and its first offending batch.
        """
        if not self._pending:
            return
        verdicts = torch.stack(
            [
                torch.stack([seen.long(), first])
                for seen, first in self._pending.values()
            ]
        ).tolist()
        messages = list(self._pending)
        self._pending.clear()
        failed = [
            message.replace(BATCH_PLACEHOLDER, str(first))
            for message, (seen, first) in zip(messages, verdicts, strict=True)
            if seen
        ]
        if failed:
            raise ValueError('; '.join(failed))


class ValidatesInputs(ABC):
    """What a task shares to validate a batch's inputs against its modalities and encoders."""

    #: The value checks of inputs and targets (immediate on the CPU, deferred on accelerators).
    batch_checks: BatchChecks

    @property
    @abstractmethod
    def modalities(self) -> tuple[str, ...]:
        """The training modalities, in order."""

    @abstractmethod
    def encoder_of(self, modality: str) -> Encoder:
        """Return the encoder whose input shape a modality's input must have."""

    def modality_inputs(
        self,
        batch: Mapping[str, Any],
        require_all: bool = False,
        defer_nan_check: bool = False,
        batch_idx: int = 0,
    ) -> Inputs:
        """Validate a batch and extract each training modality's input, on the samples that hold it.

        Args:
            batch: Batch dict with ``image_<modality>`` keys.
            require_all: Every training modality must be present (training objectives).
            defer_nan_check: On accelerators, accumulate the check for missing values (NaN,
                ``inf``) on the device and raise at the end of the epoch instead of synchronising
                every step (CPU tensors are always checked at once, naming the sample).
            batch_idx: Index of the batch, named by a deferred error.

        Returns:
            Modality mapped to (input, validity mask or None), in training order, holding the rows of
            the samples marked present (``present_<modality>``; the values of the others are never
            read), with the batch's :class:`~torchgeo_colearn.presence.Presence`. A modality that no
            sample of the batch holds is left out (its encoders cannot run on no sample).

        Raises:
            KeyError: On an unknown key, or a missing modality when *require_all*.
            TypeError: If a modality is not a tensor.
            ValueError: If no training modality is present, on a wrong shape, on NaN or ``inf`` in
                a present sample, or on a ``present_<modality>`` that is not a (B,) bool.
        """
        modalities = self.modalities
        check_keys(batch, modalities)
        present = modalities_in(batch)
        if not present:
            msg = (
                f'the batch holds none of the trained modalities {list(modalities)} '
                f'(keys: {sorted(batch)}); pass at least one as image_<modality>'
            )
            raise ValueError(msg)
        if require_all and (missing := [m for m in modalities if m not in present]):
            msg = f'training needs every modality; missing {[image_key(m) for m in missing]}'
            raise KeyError(msg)
        inputs: dict[str, tuple[Tensor, Tensor | None]] = {}
        presence = Presence.of(batch, [m for m in modalities if m in present])
        for modality in modalities:
            if modality not in present:
                continue
            key = image_key(modality)
            x = batch[key]
            if not isinstance(x, Tensor):
                msg = f'{key} must be a tensor, got {type(x).__name__}'
                raise TypeError(msg)
            encoder = self.encoder_of(modality)
            if not encoder.accepts(tuple(x.shape[1:])):
                shown = ', '.join(
                    '*' if d is None else str(d) for d in encoder.input_shape
                )
                msg = (
                    f'{key}: expected shape (B, {shown}), got {tuple(x.shape)} '
                    f'(* = any size)'
                )
                raise ValueError(msg)
            rows = presence.masks.get(modality)
            self.batch_checks.check_input(
                key, x, batch, defer_nan_check, batch_idx, rows
            )
            valid = batch.get(valid_key(modality))
            if valid is not None and tuple(valid.shape) != tuple(x.shape[:2]):
                msg = (
                    f'{valid_key(modality)}: expected shape {tuple(x.shape[:2])} to match {key}, '
                    f'got {tuple(valid.shape)}'
                )
                raise ValueError(msg)
            held = presence.select((x.float(), valid), [modality])
            if len(held[0]):
                inputs[modality] = held
        return Inputs(inputs, presence)


@contextmanager
def explain_batch_norm(batch_size: int) -> Iterator[None]:
    """Turn BatchNorm's error on a training batch of one sample into one that names cause and fix.

    Args:
        batch_size: Number of samples of the batch run inside the context.

    Yields:
        Nothing.

    Raises:
        ValueError: If batch normalisation refused a batch of one sample.
    """
    try:
        yield
    except ValueError as error:
        if batch_size != 1 or 'Expected more than 1 value per channel' not in str(
            error
        ):
            raise
        msg = (
            'a training batch holds a single sample, and the BatchNorm layers of the encoders and '
            'projections need more than one sample per batch in training; drop the last '
            'incomplete batch (DataLoader(drop_last=True); the datamodules of this package do) or '
            f'use a larger batch_size (from BatchNorm: {error})'
        )
        raise ValueError(msg) from error


def check_plateau_validation(trainer: Trainer, scheduler: str, monitor: str) -> None:
    """Check that the 'plateau' schedule will find its monitored value after every training epoch.

    Lightning steps the schedule at the end of every training epoch and fails there, after the first
    epoch, when validation did not log the value; this check fails before training starts.

    Args:
        trainer: The trainer about to fit.
        scheduler: The task's ``scheduler`` option.
        monitor: The value the schedule monitors, e.g. ``'val_loss'``.

    Raises:
        ValueError: If *scheduler* is 'plateau' and the fit runs no validation, or not every epoch;
            the message names the option and the fix.
    """
    if scheduler != 'plateau':
        return
    fix = (
        "set the task's scheduler to 'none' or 'cosine' (`--model.init_args.scheduler none`, "
        '`scheduler: none` in the YAML)'
    )
    if not trainer.enable_validation:
        msg = (
            f"scheduler='plateau' (the default) lowers the learning rate when {monitor} stops "
            f'improving, but this fit runs no validation (no validation dataloader, or '
            f'limit_val_batches=0): {fix}, or give a validation split'
        )
        raise ValueError(msg)
    every = trainer.check_val_every_n_epoch
    if every is not None and every > 1:
        msg = (
            f"scheduler='plateau' (the default) reads {monitor} after every training epoch, but "
            f'validation runs every {every} epochs (check_val_every_n_epoch={every}): {fix}, or '
            f'validate every epoch'
        )
        raise ValueError(msg)
