# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""What a task was trained on, recorded for deployment, and prediction from raw sensor values."""

import argparse
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..batch import image_key, valid_key
from ..channel_stats import Stats, stats_from_json, stats_to_json
from ..modality_info import ModalityInfo
from ..presence import Inputs, Presence
from ..transforms import ModalityNormalizer

if TYPE_CHECKING:
    from ..trainers.base import MultiModalTask
    from ..trainers.checkpoints import CheckpointedTask

#: Key of a Lightning checkpoint that holds :meth:`TrainingInputs.to_json`.
CHECKPOINT_KEY = 'deployment'

#: Version of the layout of :data:`CHECKPOINT_KEY`, bumped when it changes.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainingInputs:
    """How raw sensor values became the inputs a task was trained on, and what they were.

    Recorded from the datamodule when fitting starts (:func:`record_training_inputs`), kept as
    ``task.training_inputs`` and saved in every checkpoint under ``checkpoint['deployment']``
    (:meth:`to_json`), so that a trained task predicts from raw values (:func:`predict_raw`) and
    exported models and maps say what they must be fed.

    Attributes:
        stats: Modality mapped to the per-channel (mean, std) of the training split, shape (C,).
        fill_nan: Whether missing values (NaN, inf) became 0 after the z-score, with the time steps
            without a finite value marked invalid; otherwise they reach the model, which rejects them.
        modalities: Modality mapped to the description of its raw values (shape, bands, units,
            time steps); empty when the datamodule does not describe them.
        classes: Class (or label) names in label order, None when the data do not name them.
        task: Class path of the task, to rebuild it from a checkpoint.
        datamodule: Class path of the datamodule.
        data: The datamodule's JSON-serialisable dataset arguments (root, task, modality groups,
            ...) and, for k-fold datamodules, its split summary.
    """

    stats: Stats
    fill_nan: bool
    modalities: dict[str, ModalityInfo] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None
    task: str = ''
    datamodule: str = ''
    data: dict[str, Any] = field(default_factory=dict)

    def normalizer(self, modalities: Sequence[str]) -> ModalityNormalizer:
        """Build the training normalisation of some modalities.

        Args:
            modalities: Modalities with recorded statistics.

        Returns:
            A :class:`~torchgeo_colearn.transforms.ModalityNormalizer` of those modalities.

        Raises:
            KeyError: If a modality has no recorded statistics.
        """
        if missing := [m for m in modalities if m not in self.stats]:
            msg = (
                f'no training statistics for {missing}; the task was trained with statistics of '
                f'{sorted(self.stats)}'
            )
            raise KeyError(msg)
        return ModalityNormalizer(
            {m: self.stats[m] for m in modalities}, fill_nan=self.fill_nan
        )

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON-serialisable values (the ``'deployment'`` checkpoint entry).

        Returns:
            ``{'format', 'stats': {m: {'mean', 'std'}}, 'fill_nan', 'modalities': {m: {'shape',
            'bands', 'units', 'time_steps'}}, 'classes', 'task', 'datamodule', 'data'}``.
        """
        return {
            'format': FORMAT_VERSION,
            'stats': stats_to_json(self.stats),
            'fill_nan': self.fill_nan,
            'modalities': {m: i.to_json() for m, i in self.modalities.items()},
            'classes': None if self.classes is None else list(self.classes),
            'task': self.task,
            'datamodule': self.datamodule,
            'data': self.data,
        }

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> 'TrainingInputs':
        """Read a record written by :meth:`to_json`.

        Args:
            values: The JSON values.

        Returns:
            The record.

        Raises:
            ValueError: If the record has a newer format than this version reads.
        """
        version = values.get('format', FORMAT_VERSION)
        if version > FORMAT_VERSION:
            msg = (
                f'the deployment record has format {version}; this version of torchgeo-colearn '
                f'reads format {FORMAT_VERSION} at most: upgrade the package'
            )
            raise ValueError(msg)
        classes = values.get('classes')
        return cls(
            stats_from_json(values['stats']),
            bool(values['fill_nan']),
            {
                m: ModalityInfo.from_json(i)
                for m, i in values.get('modalities', {}).items()
            },
            None if classes is None else tuple(classes),
            values.get('task', ''),
            values.get('datamodule', ''),
            dict(values.get('data', {})),
        )


def class_path(obj: object) -> str:
    """Return the import path of an object's class.

    Args:
        obj: Any object.

    Returns:
        ``module.ClassName``.
    """
    cls = type(obj)
    return f'{cls.__module__}.{cls.__qualname__}'


def _json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the entries that survive a JSON round trip unchanged.

    Args:
        values: Any mapping.

    Returns:
        The entries whose values are JSON-serialisable.
    """
    kept = {}
    for key, value in values.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        kept[str(key)] = value
    return kept


def training_inputs_of(
    task: 'MultiModalTask', datamodule: Any
) -> TrainingInputs | None:
    """Read what a datamodule feeds a task: statistics, missing-value handling, modalities.

    Args:
        task: The task being trained.
        datamodule: Its datamodule; only a
            :class:`~torchgeo_colearn.datamodules.MultiModalDataModule` (or anything with a
            ``normalizer``, ``fill_nan`` and ``modality_info()``) normalises, so only such a
            datamodule gives a record.

    Returns:
        The record of the task's modalities, or None when the datamodule does not normalise them.
    """
    normalizer = getattr(datamodule, 'normalizer', None)
    if not isinstance(normalizer, ModalityNormalizer):
        return None
    modalities = [m for m in task.modalities if m in normalizer.modalities]
    describe = getattr(datamodule, 'modality_info', None)
    info: Mapping[str, ModalityInfo] = describe() if callable(describe) else {}
    data = _json_values(getattr(datamodule, 'kwargs', {}))
    summary = getattr(datamodule, 'split_summary', None)
    if callable(summary):
        data['split'] = _json_values(summary())
    classes = getattr(datamodule, 'classes', None)
    return TrainingInputs(
        {
            m: tuple(t.detach().cpu().clone() for t in normalizer.stats(m))  # type: ignore[misc]
            for m in modalities
        },
        bool(getattr(datamodule, 'fill_nan', True)),
        {m: info[m] for m in modalities if m in info},
        None if classes is None else tuple(str(c) for c in classes),
        class_path(task),
        class_path(datamodule),
        data,
    )


def record_training_inputs(task: 'MultiModalTask') -> None:
    """Record the training inputs of the task's datamodule in ``task.training_inputs``.

    Called by the task when fitting starts; does nothing without a trainer or datamodule.

    Args:
        task: The task being trained.
    """
    trainer = task._trainer
    datamodule = None if trainer is None else getattr(trainer, 'datamodule', None)
    if datamodule is None:
        return
    task.training_inputs = training_inputs_of(task, datamodule)


def save_training_inputs(task: 'CheckpointedTask', checkpoint: dict[str, Any]) -> None:
    """Write ``task.training_inputs`` into a checkpoint under :data:`CHECKPOINT_KEY`.

    Args:
        task: The task.
        checkpoint: The checkpoint being saved.
    """
    if task.training_inputs is not None:
        checkpoint[CHECKPOINT_KEY] = task.training_inputs.to_json()


def load_training_inputs(
    task: 'CheckpointedTask', checkpoint: Mapping[str, Any]
) -> None:
    """Restore ``task.training_inputs`` from a checkpoint, if it holds them.

    Args:
        task: The task being loaded.
        checkpoint: The loaded checkpoint.
    """
    if CHECKPOINT_KEY in checkpoint:
        task.training_inputs = TrainingInputs.from_json(checkpoint[CHECKPOINT_KEY])


def require_training_inputs(task: 'MultiModalTask') -> TrainingInputs:
    """Return the task's training inputs, or explain why raw values cannot be predicted.

    Args:
        task: A task.

    Returns:
        ``task.training_inputs``.

    Raises:
        RuntimeError: If the task has none.
    """
    inputs = task.training_inputs
    if inputs is None:
        msg = (
            f'{type(task).__name__} has no record of its training normalisation, so it cannot '
            'predict from raw values: it was not fitted with a MultiModalDataModule, or its '
            'checkpoint was written before torchgeo-colearn recorded it. Fit it with a '
            'MultiModalDataModule, or set task.training_inputs = torchgeo_colearn.deploy.'
            'training_inputs_of(task, datamodule) with the datamodule it was trained on, after '
            "datamodule.setup('fit'); or normalise the inputs as in training and call "
            "task({'image_<modality>': x})"
        )
        raise RuntimeError(msg)
    return inputs


def check_raw_input(task: 'MultiModalTask', modality: str, x: object) -> None:
    """Check a batch of raw values against the shape the task's encoder accepts.

    Args:
        task: A task with recorded training inputs.
        modality: The modality.
        x: Raw values, shape (B, *sample shape).

    Raises:
        TypeError: If *x* is not a tensor.
        ValueError: If its shape does not fit; the message says the expected shape and, when the
            datamodule described them, the band order and units.
    """
    if not isinstance(x, Tensor):
        msg = f'raw {modality!r} values must be a tensor, got {type(x).__name__}'
        raise TypeError(msg)
    encoder = task.encoder_of(modality)
    if encoder.accepts(tuple(x.shape[1:])):
        return
    info = require_training_inputs(task).modalities.get(modality)
    expected = (
        info.describe(modality, encoder.input_shape)
        if info is not None
        else f'(B, {", ".join("*" if d is None else str(d) for d in encoder.input_shape)})'
    )
    msg = f'raw {modality!r} values of shape {tuple(x.shape)}; expected {expected}'
    raise ValueError(msg)


def predict_raw(
    task: 'MultiModalTask',
    inputs: Mapping[str, Tensor],
    valid: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Predict from raw sensor values, normalised as in training.

    The values are those the datamodule reads from disk (units and band order in
    ``task.training_inputs.modalities``, e.g. Sentinel-1 backscatter in dB); NaN or inf marks a
    missing value, handled as in training. The task runs in evaluation mode without gradients (its
    mode is restored afterwards).

    Args:
        task: A task fitted with a :class:`~torchgeo_colearn.datamodules.MultiModalDataModule`, or
            loaded from its checkpoint.
        inputs: Modality mapped to raw values, shape (B, *sample shape), e.g. ``{'s1': x}``; the
            modalities given form the scenario that is predicted (several only for methods that
            fuse).
        valid: Optional modality mapped to a (B, T) bool mask of the valid time steps, for
            time-series modalities (False steps are ignored like missing ones).

    Returns:
        The predictions of the scenario (see
        :meth:`~torchgeo_colearn.trainers.MultiModalTask.postprocess`).

    Raises:
        RuntimeError: If the task has no recorded training normalisation.
        KeyError: If a modality is not a training modality or has no statistics.
        ValueError: If a shape does not fit, no modality is given, or the method cannot predict
            the scenario.
    """
    record = require_training_inputs(task)
    if not inputs:
        msg = f'give raw values of at least one modality among {list(task.modalities)}'
        raise ValueError(msg)
    if unknown := [m for m in inputs if m not in task.modalities]:
        msg = f'unknown modalities {unknown}; the task was trained on {list(task.modalities)}'
        raise KeyError(msg)
    for modality, x in inputs.items():
        check_raw_input(task, modality, x)
    modalities = [m for m in task.modalities if m in inputs]
    batch: dict[str, Tensor] = {image_key(m): inputs[m] for m in modalities}
    for modality, mask in (valid or {}).items():
        batch[valid_key(modality)] = mask.bool()
    device = inputs[modalities[0]].device
    normalized = record.normalizer(modalities).to(device)(batch)
    scenario = tuple(modalities)
    training = task.training
    task.eval()
    try:
        with torch.no_grad():
            return task.predict_scenarios(normalized, [scenario])[scenario]
    finally:
        task.train(training)


class RawInputModel(nn.Module):
    """A task's predictions from one modality's raw values, with the normalisation built in.

    ``forward(x)`` normalises *x* with the training statistics (missing values as in training: with
    ``fill_nan`` they become 0 and time steps without a finite value are masked), then runs the task's
    own :meth:`encode`, :meth:`predict_from` for the modality alone and :meth:`postprocess`, so any
    method and network works. It is what :mod:`~torchgeo_colearn.deploy.export` exports and what
    :mod:`~torchgeo_colearn.deploy.mapping` runs; put it in evaluation mode first.
    """

    def __init__(self, task: 'MultiModalTask', modality: str) -> None:
        """Initialize a new RawInputModel instance.

        Args:
            task: A task with recorded training inputs (:func:`require_training_inputs`).
            modality: One of the task's modalities.

        Raises:
            RuntimeError: If the task has no recorded training normalisation.
            KeyError: If *modality* is not a training modality or has no statistics.
        """
        super().__init__()
        if modality not in task.modalities:
            msg = f'unknown modality {modality!r}; the task was trained on {list(task.modalities)}'
            raise KeyError(msg)
        self.task = task
        self.modality = modality
        self.normalizer = require_training_inputs(task).normalizer([modality])

    def forward(self, x: Tensor) -> Tensor:
        """Predict from raw values.

        Args:
            x: Raw values of the modality, shape (B, *sample shape).

        Returns:
            The predictions (see :meth:`~torchgeo_colearn.trainers.MultiModalTask.postprocess`).
        """
        key = image_key(self.modality)
        batch = self.normalizer({key: x.float()})
        inputs = {self.modality: (batch[key], batch.get(valid_key(self.modality)))}
        features = self.task.encode(Inputs(inputs, Presence(x.shape[0])))
        raw = self.task.predict_from(features, (self.modality,))
        return self.task.postprocess(raw)


def load_task(
    ckpt_path: str, map_location: str | torch.device = 'cpu'
) -> 'MultiModalTask':
    """Load a task from a checkpoint, whatever its class.

    The class is the one recorded with the training inputs, else the ``_class_path`` that
    ``colearn`` (LightningCLI) saves in the hyperparameters.

    Args:
        ckpt_path: A Lightning checkpoint of a :class:`~torchgeo_colearn.trainers.MultiModalTask`.
        map_location: Device to load the weights on.

    Returns:
        The task, in evaluation mode.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the checkpoint does not name its task class.
    """
    if not os.path.isfile(ckpt_path):
        msg = f'checkpoint not found: {ckpt_path}'
        raise FileNotFoundError(msg)
    checkpoint = torch.load(ckpt_path, map_location='cpu', weights_only=False)
    path = checkpoint.get(CHECKPOINT_KEY, {}).get('task') or checkpoint.get(
        'hyper_parameters', {}
    ).get('_class_path')
    if not path:
        msg = (
            f'{ckpt_path} does not name the class of its task (no {CHECKPOINT_KEY!r} entry and '
            'no _class_path hyperparameter): load it with YourTask.load_from_checkpoint instead'
        )
        raise ValueError(msg)
    module, _, name = path.rpartition('.')
    cls = getattr(importlib.import_module(module), name)
    task: MultiModalTask = cls.load_from_checkpoint(
        ckpt_path, map_location=map_location, weights_only=False
    )
    return task.eval()


def checkpoint_parser(
    prog: str, description: str, modality: str, output: str
) -> argparse.ArgumentParser:
    """Start the parser of a command that deploys one modality of a checkpoint to a file.

    Args:
        prog: The command, e.g. ``'colearn map'``.
        description: What it does.
        modality: Help of ``--modality``.
        output: Help of ``--output``.

    Returns:
        A parser with the required ``--ckpt_path``, ``--modality`` and ``--output``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        '--ckpt_path', required=True, help='checkpoint of a trained task'
    )
    parser.add_argument('--modality', required=True, help=modality)
    parser.add_argument('--output', required=True, help=output)
    return parser
