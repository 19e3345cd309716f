# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Validation of benchmark config entries against the real classes (jsonargparse, and building them once)."""

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from jsonargparse import ArgumentParser
from lightning.pytorch import Trainer

#: Keys of a ``trainer`` section that belong to the runner, not to :class:`lightning.pytorch.Trainer`.
RUNNER_DEFAULTS: dict[str, Any] = {
    'patience': 5,  # early stopping on the monitored validation loss, in epochs
    'min_delta': 0.0,  # smallest decrease of the validation loss that counts as an improvement
    'threads': None,  # torch (and OpenMP) threads of a run; None keeps the process default
}

#: Trainer arguments the runner sets unless a config overrides them.
TRAINER_DEFAULTS: dict[str, Any] = {
    'max_epochs': 100,
    'accelerator': 'cpu',
    'devices': 1,
}

#: Trainer arguments the runner owns (its callbacks, checkpoint folder and silence).
RESERVED_TRAINER_KEYS = frozenset(
    {'callbacks', 'logger', 'default_root_dir', 'enable_checkpointing'}
)


class ConfigError(ValueError):
    """A benchmark config is invalid; the message names the file, the entry and the key."""


def import_class(path: str) -> type:
    """Import a class from its dotted path.

    Args:
        path: E.g. ``'torchgeo_colearn.trainers.fusion.FeatureFusionTask'``.

    Returns:
        The class.

    Raises:
        ImportError: If the module or the name does not exist.
        TypeError: If the name is not a class.
    """
    module, _, name = path.rpartition('.')
    try:
        value = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        msg = f'cannot import class_path {path!r}: {error}'
        raise ImportError(msg) from error
    if not isinstance(value, type):
        msg = f'class_path {path!r} is not a class'
        raise TypeError(msg)
    return value


def accepted_arguments(cls: type) -> set[str] | None:
    """Return the constructor arguments of a class.

    Args:
        cls: The class.

    Returns:
        The argument names, including those a constructor forwards with ``**kwargs`` to its parent
        (resolved by jsonargparse, as LightningCLI does), or None if some ``**kwargs`` stay open (any
        name).
    """
    parameters = inspect.signature(cls).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return {p.name for p in parameters}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, 'args', fail_untyped=False)
    names = {
        action.dest.split('.')[1]
        for action in parser._actions
        if action.dest.startswith('args.')
    }
    return names or None


def check_arguments(cls: type, arguments: Mapping[str, Any], where: str) -> None:
    """Validate constructor arguments against a class signature with jsonargparse.

    Args:
        cls: The class.
        arguments: Its arguments.
        where: Where they are in the config, for the message.

    Raises:
        ConfigError: On an unknown key, a value of the wrong type or a missing required argument.
    """
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, 'args', fail_untyped=False)
    try:
        parser.parse_object({'args': dict(arguments)})
    except (
        Exception
    ) as error:  # jsonargparse raises ArgumentError and, for some types, others
        text = str(error).replace('"args.', '"').replace("Group 'args'", cls.__name__)
        msg = f'{where} ({cls.__module__}.{cls.__qualname__}): {text}'
        raise ConfigError(msg) from error


def check_instance(cls: type, arguments: Mapping[str, Any], where: str) -> None:
    """Validate constructor arguments by building the object (catches what signatures cannot say).

    Nested configs typed as plain dicts (e.g. a task's per-modality ``encoders``) and the checks of the
    constructors themselves are only seen by building the object; models are small, so this costs little.

    Args:
        cls: The class.
        arguments: Its arguments (already checked by :func:`check_arguments`).
        where: Where they are in the config, for the message.

    Raises:
        ConfigError: If the constructor raises.
    """
    try:
        cls(**arguments)
    except Exception as error:  # any constructor error is a config error
        msg = f'{where} ({cls.__module__}.{cls.__qualname__}): {type(error).__name__}: {error}'
        raise ConfigError(msg) from error


def check_trainer(settings: Mapping[str, Any], where: str) -> None:
    """Validate trainer arguments against :class:`lightning.pytorch.Trainer`.

    Args:
        settings: Trainer arguments (without the runner's keys).
        where: Where they are, for the message.

    Raises:
        ConfigError: On a reserved key, an unknown key or a wrong value.
    """
    if reserved := sorted(RESERVED_TRAINER_KEYS & set(settings)):
        msg = f'{where}: {reserved} are set by the runner and cannot be configured'
        raise ConfigError(msg)
    check_arguments(Trainer, settings, where)


def split_trainer(section: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a ``trainer`` section into Trainer arguments and runner settings.

    Args:
        section: The section as written.

    Returns:
        Trainer arguments and runner settings (:data:`RUNNER_DEFAULTS` keys).
    """
    trainer = {k: v for k, v in section.items() if k not in RUNNER_DEFAULTS}
    runner = {k: v for k, v in section.items() if k in RUNNER_DEFAULTS}
    return trainer, runner


def check_runner(settings: Mapping[str, Any], where: str) -> None:
    """Validate the runner's own settings.

    Args:
        settings: Runner settings.
        where: Where they are, for the message.

    Raises:
        ConfigError: On a value of the wrong type or out of range.
    """
    patience, min_delta, threads = (
        settings.get(k, RUNNER_DEFAULTS[k])
        for k in ('patience', 'min_delta', 'threads')
    )
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        msg = f'{where}.patience must be a non-negative integer, got {patience!r}'
        raise ConfigError(msg)
    if not isinstance(min_delta, int | float) or min_delta < 0:
        msg = f'{where}.min_delta must be a non-negative number, got {min_delta!r}'
        raise ConfigError(msg)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        msg = f'{where}.threads must be a positive integer or null, got {threads!r}'
        raise ConfigError(msg)
