# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""What the tasks add to Lightning checkpoints (their class, the random states) and the file checks."""

import os
import pickle
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, ClassVar, Self, cast

import numpy as np
import torch
from torchgeo.trainers import BaseTask

from ..deploy.inputs import TrainingInputs, load_training_inputs, save_training_inputs

#: Checkpoint key of what this package adds: ``task`` (the qualified class name of the task),
#: ``version`` (of the package) and ``random_state`` (:func:`random_state`).
CHECKPOINT_KEY = 'torchgeo_colearn'

#: Values of ``ckpt_path`` that Lightning resolves itself (not file paths).
LIGHTNING_CKPT_NAMES = ('best', 'last', 'hpc', 'registry')


def qualified_name(cls: type) -> str:
    """Return the import path of a class.

    Args:
        cls: A class.

    Returns:
        ``module.QualifiedName``.
    """
    return f'{cls.__module__}.{cls.__qualname__}'


def random_state() -> dict[str, Any]:
    """Capture the global random states that training draws from.

    The torch generator also seeds the data order: a ``RandomSampler`` without its own generator, and
    every ``DataLoader`` iterator, draw their seed from it when an epoch starts. The values are tensors,
    lists and numbers, so checkpoints still load with ``torch.load(weights_only=True)``.

    Returns:
        The states of torch (CPU, and every CUDA device once CUDA is initialised), numpy and Python's
        ``random``.
    """
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, python_state, gauss = random.getstate()
    return {
        'torch': torch.get_rng_state(),
        'cuda': (
            torch.cuda.get_rng_state_all()
            if torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
            else []
        ),
        'numpy': {
            'keys': torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            'position': int(position),
            'has_gauss': int(has_gauss),
            'cached_gaussian': float(cached_gaussian),
        },
        'python': [version, list(python_state), gauss],
    }


def set_random_state(state: Mapping[str, Any]) -> None:
    """Restore the global random states captured by :func:`random_state`.

    Args:
        state: The captured states. CUDA states are restored when CUDA is available and the number of
            devices matches.
    """
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda', [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    numpy = state['numpy']
    np.random.set_state(
        (
            'MT19937',
            numpy['keys'].numpy().astype(np.uint32),
            numpy['position'],
            numpy['has_gauss'],
            numpy['cached_gaussian'],
        )
    )
    version, python_state, gauss = state['python']
    random.setstate((version, tuple(python_state), gauss))


def check_task_class(checkpoint: Mapping[str, Any], path: str, expected: type) -> None:
    """Check that a checkpoint was written by a task class that *expected* is (or derives from).

    Args:
        checkpoint: The loaded checkpoint.
        path: Its path, for the message.
        expected: The task class about to load it.

    Raises:
        ValueError: If the checkpoint names another task class. Checkpoints of release 0.1 name
            none and pass.
    """
    written = checkpoint.get(CHECKPOINT_KEY, {}).get('task')
    if written is not None and written not in {
        qualified_name(cls) for cls in expected.__mro__
    }:
        name = written.rsplit('.', 1)[-1]
        msg = (
            f'{path}: a checkpoint of {written}, expected one of {expected.__name__}; load it '
            f'with {name}.load_from_checkpoint or `--model {name}`'
        )
        raise ValueError(msg)


def check_checkpoint_content(
    checkpoint: object, path: str, expected: type | None
) -> None:
    """Check that a loaded checkpoint is a Lightning checkpoint of a task that *expected* can load.

    Args:
        checkpoint: The loaded checkpoint.
        path: Its path, for the messages.
        expected: The task class about to load it, or None for any task of this package.

    Raises:
        ValueError: If it is not a Lightning checkpoint, not one of a task of this package (a task
            checkpoint has the ``encoders`` hyperparameter), or one of another task class
            (:func:`check_task_class`).
    """
    task = expected.__name__ if expected is not None else 'a torchgeo-colearn task'
    wanted = f'a Lightning checkpoint of {task} (written by Trainer or ModelCheckpoint)'
    if not isinstance(checkpoint, Mapping) or 'state_dict' not in checkpoint:
        found = (
            f'a dict with keys {sorted(map(str, checkpoint))}'
            if isinstance(checkpoint, Mapping)
            else type(checkpoint).__name__
        )
        msg = (
            f'{path}: not a Lightning checkpoint (it holds {found}); expected {wanted}'
        )
        raise ValueError(msg)
    hparams = checkpoint.get('hyper_parameters', {})
    if 'encoders' not in hparams:
        msg = (
            f'{path}: a Lightning checkpoint of another model (hyperparameters '
            f'{sorted(hparams)}); expected {wanted}'
        )
        raise ValueError(msg)
    if expected is not None:
        check_task_class(checkpoint, path, expected)


def read_checkpoint(
    path: str | os.PathLike[str],
    expected: type | None,
    weights_only: bool | None = None,
) -> Mapping[str, Any]:
    """Read a checkpoint file, with errors that name the path and what was expected.

    The file is opened memory-mapped: only its small pickled part is read, not the weights.

    Args:
        path: The checkpoint file.
        expected: The task class about to load it (for the messages), or None.
        weights_only: As for :func:`torch.load` (None: torch's default).

    Returns:
        The checkpoint, its tensors memory-mapped.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is empty, truncated or not a PyTorch checkpoint.
    """
    name = os.fspath(path)
    task = expected.__name__ if expected is not None else 'a torchgeo-colearn task'
    wanted = f'a Lightning checkpoint of {task}'
    if not os.path.isfile(name):
        msg = f'{name}: no such checkpoint file (expected {wanted})'
        raise FileNotFoundError(msg)
    if os.path.getsize(name) == 0:
        msg = f'{name}: the file is empty (expected {wanted})'
        raise ValueError(msg)
    if not zipfile.is_zipfile(name):
        msg = (
            f'{name}: not a PyTorch checkpoint, or a truncated one (no zip archive that '
            f'torch.save writes); expected {wanted}'
        )
        raise ValueError(msg)
    try:
        checkpoint: Mapping[str, Any] = torch.load(
            name, map_location='cpu', mmap=True, weights_only=weights_only
        )
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as error:
        msg = f'{name}: the checkpoint cannot be read ({error}); expected {wanted}'
        raise ValueError(msg) from error
    return checkpoint


def check_checkpoint(
    path: str | os.PathLike[str],
    expected: type | None,
    weights_only: bool | None = None,
) -> None:
    """Check a checkpoint file before Lightning loads it, naming the path and what was expected.

    Args:
        path: The checkpoint file.
        expected: The task class about to load it, or None for any task of this package.
        weights_only: As for :func:`torch.load` (None: torch's default).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If :func:`read_checkpoint` or :func:`check_checkpoint_content` rejects it.
    """
    checkpoint = read_checkpoint(path, expected, weights_only)
    check_checkpoint_content(checkpoint, os.fspath(path), expected)


def is_checkpoint_file(path: object) -> bool:
    """Whether a ``ckpt_path`` names a local file (not 'best', 'last', 'hpc', a registry or a URL).

    Args:
        path: The value of a ``ckpt_path`` argument.

    Returns:
        True for a local path to check with :func:`check_checkpoint`.
    """
    if not isinstance(path, str | os.PathLike):
        return False
    name = os.fspath(path)
    return (
        name not in LIGHTNING_CKPT_NAMES
        and not name.startswith('registry:')
        and '://' not in name
    )


def checkpoint_record(task_class: type) -> dict[str, Any]:
    """Return what a task records in its checkpoints under :data:`CHECKPOINT_KEY`.

    Args:
        task_class: The task class.

    Returns:
        The task's qualified class name, the package version and the random states (torch, CUDA,
        numpy, Python).
    """
    from .. import __version__  # the package's __init__ imports this module first

    return {
        'task': qualified_name(task_class),
        'version': __version__,
        'random_state': random_state(),
    }


def restore_checkpoint(
    checkpoint: dict[str, Any],
    path: str,
    task_class: type,
    resuming: bool,
    legacy_prefixes: Mapping[str, str],
) -> None:
    """Check a loaded checkpoint against its task, restore the random states, rename legacy keys.

    A fit resumed (*resuming*) from a checkpoint written at the end of an epoch then repeats the
    uninterrupted fit bit for bit on the CPU (same data order, with or without loader workers; same
    dropout and augmentations). What differs: a checkpoint written in the middle of an epoch resumes
    with another data order for the rest of that epoch; a checkpoint without random states (release
    0.1) resumes from the current ones; generators of accelerators other than CUDA are not saved;
    under multi-process training every process restores the states of the process that wrote the
    checkpoint.

    Args:
        checkpoint: The loaded checkpoint; its ``state_dict`` is updated in place.
        path: Where it comes from, for the messages.
        task_class: The class of the task loading it.
        resuming: Whether a fit resumes from it (the random states are restored only then).
        legacy_prefixes: State-dict key prefixes of earlier releases mapped to today's.

    Raises:
        ValueError: If the checkpoint is one of another task class.
    """
    check_task_class(checkpoint, path, task_class)
    saved = checkpoint.get(CHECKPOINT_KEY, {}).get('random_state')
    if resuming and saved is not None:
        set_random_state(saved)
    state = checkpoint.get('state_dict', {})
    for key in list(state):
        for old, new in legacy_prefixes.items():
            if key.startswith(old):
                state[new + key.removeprefix(old)] = state.pop(key)
                break


class CheckpointedTask(BaseTask):
    """A task whose checkpoints record its class, the random states and the training inputs.

    The hooks check the task class of a checkpoint before loading it, make a resumed fit repeat the
    uninterrupted one, and rename the keys of earlier releases (:attr:`legacy_prefixes`).
    """

    #: Checkpoint key prefixes of earlier releases mapped to today's (networks moved into ``model``).
    legacy_prefixes: ClassVar[dict[str, str]] = {}

    #: How raw values became the inputs (statistics, missing values, band descriptions), recorded
    #: from the datamodule when fitting starts and saved in checkpoints under ``'deployment'``.
    training_inputs: TrainingInputs | None = None

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path | IO[Any],
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> Self:
        """Load a task from a checkpoint, after checking that the file is one of this task class.

        Args:
            checkpoint_path: Path of the checkpoint (or an open file, loaded unchecked).
            map_location: As for :meth:`lightning.pytorch.LightningModule.load_from_checkpoint`.
            hparams_file: Idem.
            strict: Idem.
            weights_only: Idem.
            **kwargs: Hyperparameters that override the saved ones.

        Returns:
            The task.

        Raises:
            FileNotFoundError: If the file does not exist.
            ValueError: If the file is empty, truncated, not a Lightning checkpoint or one of another
                task class; the message names the path and the expected class.
        """
        if is_checkpoint_file(checkpoint_path):
            check_checkpoint(cast(str | Path, checkpoint_path), cls, weights_only)
        return super().load_from_checkpoint(
            checkpoint_path,
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            weights_only=weights_only,
            **kwargs,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task class, the version, the random states and the training inputs.

        The random states (torch, CUDA, numpy, Python) make a resumed fit repeat the uninterrupted
        one: the data order of the next epochs and the dropout masks are drawn from them.

        Args:
            checkpoint: The checkpoint being written; updated in place.
        """
        checkpoint[CHECKPOINT_KEY] = checkpoint_record(type(self))
        save_training_inputs(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the task class, restore the random states and training inputs, rename legacy keys.

        The random states are restored only when a fit resumes from the checkpoint (``fit(...,
        ckpt_path=...)``): loading weights for testing or prediction leaves them alone (see
        :func:`~torchgeo_colearn.trainers.checkpoints.restore_checkpoint` for what a resumed fit
        repeats exactly).

        Args:
            checkpoint: The loaded checkpoint; the ``state_dict`` keys of checkpoints written by
                earlier releases are renamed in place (:attr:`legacy_prefixes`).

        Raises:
            ValueError: If the checkpoint is one of another task class.
        """
        attached = self._trainer is not None
        restore_checkpoint(
            checkpoint,
            str(self.trainer.ckpt_path) if attached else 'checkpoint',
            type(self),
            resuming=attached and self.trainer.state.fn == 'fit',
            legacy_prefixes=self.legacy_prefixes,
        )
        load_training_inputs(self, checkpoint)
