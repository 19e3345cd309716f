# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The units of a benchmark grid (runs and tuning trials), their JSON records and what they depend on."""

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .. import __version__
from .config import Benchmark, Method, deep_merge

#: Kinds of unit: a run (train, then score the test fold) or a tuning trial (train, score validation).
UnitKind = Literal['run', 'trial']


@dataclass(frozen=True, order=True)
class Unit:
    """One unit of work of the grid, recorded in its own JSON file.

    Attributes:
        kind: 'run' or 'trial'.
        method: Method name.
        fold: Outer (test) fold.
        seed: Training seed (trials train with the first seed of the benchmark).
        part: The modality of a per-modality method's run, or None.
        trial: Trial number (trials only).
    """

    kind: UnitKind
    method: str
    fold: int
    seed: int
    part: str | None = None
    trial: int | None = None

    def label(self) -> str:
        """Return the unit's name in progress lines.

        Returns:
            E.g. ``'mdico fold=0 seed=1'``, ``'single[s1] fold=0 seed=0'`` or ``'tune mdico fold=0 trial=3'``.
        """
        name = self.method if self.part is None else f'{self.method}[{self.part}]'
        if self.kind == 'trial':
            return f'tune {name} fold={self.fold} trial={self.trial}'
        return f'{name} fold={self.fold} seed={self.seed}'


def run_path(
    output: str,
    method: str,
    fold: int,
    seed: int,
    suffix: str = 'json',
    part: str | None = None,
) -> str:
    """Return the path of a run's file.

    Args:
        output: The benchmark output folder.
        method: Method name.
        fold: Test fold.
        seed: Training seed.
        suffix: 'json' (record) or 'ckpt' (kept best checkpoint of a teacher).
        part: Modality of a per-modality run.

    Returns:
        ``<output>/runs/<method>/fold<fold>-seed<seed>[-<part>].<suffix>``.
    """
    stem = f'fold{fold}-seed{seed}' + (f'-{part}' if part is not None else '')
    return os.path.join(output, 'runs', method, f'{stem}.{suffix}')


def trial_path(
    output: str, method: str, fold: int, trial: int, part: str | None = None
) -> str:
    """Return the path of a tuning trial's record.

    Args:
        output: The benchmark output folder.
        method: Method name.
        fold: Outer fold whose training and validation split the trial uses.
        trial: Trial number.
        part: Modality of a per-modality method.

    Returns:
        ``<output>/trials/<method>/fold<fold>[-<part>]/trial<trial>.json``.
    """
    folder = f'fold{fold}' + (f'-{part}' if part is not None else '')
    return os.path.join(output, 'trials', method, folder, f'trial{trial}.json')


def unit_path(output: str, unit: Unit) -> str:
    """Return the record path of a unit.

    Args:
        output: The benchmark output folder.
        unit: The unit.

    Returns:
        :func:`run_path` or :func:`trial_path`.
    """
    if unit.kind == 'trial':
        assert unit.trial is not None
        return trial_path(output, unit.method, unit.fold, unit.trial, unit.part)
    return run_path(output, unit.method, unit.fold, unit.seed, part=unit.part)


def write_json(path: str, record: Mapping[str, Any]) -> None:
    """Write a JSON file atomically (an interrupted write leaves no partial record behind).

    Args:
        path: Target file.
        record: The content.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f'{path}.{os.getpid()}.tmp'
    with open(temporary, 'w') as file:
        json.dump(record, file, indent=2, default=str)
    os.replace(temporary, path)


def read_json(path: str) -> dict[str, Any] | None:
    """Read a record.

    Args:
        path: The JSON file.

    Returns:
        The record, or None if the file does not exist.
    """
    if not os.path.exists(path):
        return None
    with open(path) as file:
        record: dict[str, Any] = json.load(file)
    return record


def normalised(value: Any) -> Any:
    """Return a value as it reads back from JSON (tuples become lists, keys strings).

    Args:
        value: Any JSON-serialisable value.

    Returns:
        The value after a JSON round trip.
    """
    return json.loads(json.dumps(value, default=str))


def fingerprint(benchmark: Benchmark, method: Method) -> dict[str, Any]:
    """What a finished unit of a method depends on; a unit is reused only if it is unchanged.

    Args:
        benchmark: The benchmark.
        method: The method.

    Returns:
        The class path, arguments, data config, trainer and runner settings, teacher, per-modality flag,
        and, for tuned methods, the search space and the tuning settings.
    """
    settings = {
        'class_path': method.class_path,
        'init_args': method.init_args,
        'data': deep_merge(benchmark.data, {'init_args': method.data_args}),
        'trainer': method.trainer,
        'runner': {k: v for k, v in method.runner.items() if k != 'threads'},
        'teacher': method.teacher,
        'per_modality': method.per_modality,
    }
    if method.search_space and benchmark.tuning is not None:
        settings['search_space'] = method.search_space
        settings['tuning'] = benchmark.tuning.__dict__
    return dict(normalised(settings))


@functools.cache
def code_version() -> str:
    """Name the code that runs, for the reports.

    Returns:
        ``git describe --always --dirty`` of the package checkout (``-dirty``: tracked files changed since
        the commit), or ``torchgeo-colearn <version>`` outside a git checkout.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        described = subprocess.run(
            ['git', 'describe', '--always', '--dirty'],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return f'torchgeo-colearn {__version__}'
    return described.stdout.strip()


@functools.cache
def code_hash() -> str:
    """Fingerprint the package's source code (what a run's result depends on; docs and tests excluded).

    Returns:
        The first 12 hex digits of the SHA-256 of every ``.py`` file of the package, in path order.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256()
    for folder, subfolders, files in sorted(os.walk(package)):
        subfolders[:] = sorted(d for d in subfolders if d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, package).encode())
                with open(path, 'rb') as file:
                    digest.update(file.read())
    return digest.hexdigest()[:12]


def is_finished(
    record: Mapping[str, Any] | None,
    settings: Mapping[str, Any],
    any_code: bool = False,
) -> bool:
    """Tell whether a record is a finished unit with the current settings and code.

    Args:
        record: The unit's record, or None.
        settings: Its current :func:`fingerprint` (plus unit-specific settings).
        any_code: Accept a record made by other package code.

    Returns:
        True if the record says 'ok', its settings are the current ones and (unless *any_code*) it was
        made by the current package code (:func:`code_hash`).
    """
    if record is None or record.get('status') != 'ok':
        return False
    if record.get('config') != normalised(settings):
        return False
    return any_code or record.get('code_hash') == code_hash()
