# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Benchmark configs: loading, ``base`` inheritance, and validation against the real class signatures."""

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from .search_space import check_search_space
from .validation import (
    RUNNER_DEFAULTS,
    TRAINER_DEFAULTS,
    ConfigError,
    accepted_arguments,
    check_arguments,
    check_instance,
    check_runner,
    check_trainer,
    import_class,
    split_trainer,
)

#: Keys of a method entry.
METHOD_KEYS = (
    'class_path',
    'base',
    'init_args',
    'data',
    'trainer',
    'teacher',
    'per_modality',
    'search_space',
)

#: Top-level keys of a benchmark config.
TOP_LEVEL_KEYS = (
    'name',
    'title',
    'description',
    'discussion',
    'data',
    'model',
    'methods',
    'folds',
    'seeds',
    'trainer',
    'report',
    'tuning',
)


@dataclass(frozen=True)
class Method:
    """One method of the grid, resolved and validated.

    Attributes:
        name: Display name (the key under ``methods``).
        class_path: Import path of a :class:`~torchgeo_colearn.trainers.base.MultiModalTask` subclass, or of
            a :class:`~torchgeo_colearn.benchmark.estimator.Estimator` (e.g. the gradient-boosting baseline).
        init_args: Constructor arguments: the shared ``model`` arguments the class accepts, deep-merged with
            the method's own.
        data_args: Datamodule arguments that override ``data.init_args`` for this method.
        trainer: :class:`lightning.pytorch.Trainer` arguments (global section merged with the method's).
        runner: The runner's own settings (:data:`RUNNER_DEFAULTS`), global merged with the method's.
        teacher: Name of the method whose best checkpoint (same fold and seed) becomes ``teacher_checkpoint``.
        per_modality: Train one run per modality, each on that modality alone (own early stopping and
            best checkpoint); scenario ``m`` is scored by run ``m``.
        search_space: Init argument (dotted path, ``*`` for every key of a dict) mapped to an Optuna
            distribution spec; empty = not tuned.
    """

    name: str
    class_path: str
    init_args: dict[str, Any]
    data_args: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=lambda: dict(TRAINER_DEFAULTS))
    runner: dict[str, Any] = field(default_factory=lambda: dict(RUNNER_DEFAULTS))
    teacher: str | None = None
    per_modality: bool = False
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)

    def parts(self) -> list[str | None]:
        """Return the separately trained parts of one (fold, seed) run.

        Returns:
            The modalities of ``encoders`` for a per-modality method, else ``[None]`` (one joint run).
        """
        if not self.per_modality:
            return [None]
        return list(self.init_args['encoders'])


@dataclass(frozen=True)
class Tuning:
    """Equal-budget hyper-parameter tuning settings.

    Attributes:
        trials: Trials per method, part and outer fold (the same for every tuned method).
        seed: Seed of the Optuna sampler (trial t samples with seed + t).
        metric: Validation metric optimised (mean over the part's single-modality scenarios).
    """

    trials: int
    seed: int
    metric: str


@dataclass(frozen=True)
class Benchmark:
    """A parsed and validated benchmark config.

    Attributes:
        name: Dataset name, used for the output folder and ``docs/results/<name>.md``.
        title: Report title.
        description: Free text shown at the top of the report.
        discussion: Free text shown after the results (what the runs show and why), or ''.
        data: ``class_path`` and ``init_args`` of the datamodule (``fold`` is set per run).
        methods: Methods in run order (teachers before their students).
        folds: Test folds to run.
        seeds: Training seeds to run.
        trainer: Global trainer arguments.
        runner: Global runner settings.
        reference: Method compared with every other method in the report, or None.
        primary_metric: Metric of the plot, the comparison and the tuning, or None for the first one.
        tuning: Tuning settings, or None (no tuning).
        text: The config's text, reproduced in the report.
        path: The config file path.
    """

    name: str
    title: str
    description: str
    discussion: str
    data: dict[str, Any]
    methods: list[Method]
    folds: list[int]
    seeds: list[int]
    trainer: dict[str, Any]
    runner: dict[str, Any]
    reference: str | None
    primary_metric: str | None
    tuning: Tuning | None
    text: str
    path: str

    def method(self, name: str) -> Method:
        """Return a method by name.

        Args:
            name: The method's name.

        Returns:
            The method.

        Raises:
            KeyError: If there is no such method.
        """
        for method in self.methods:
            if method.name == name:
                return method
        msg = f'unknown method {name!r} (methods: {[m.name for m in self.methods]})'
        raise KeyError(msg)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two nested mappings; values of *update* win, nested mappings are merged key by key.

    Args:
        base: The defaults.
        update: The overrides.

    Returns:
        A new merged dict (inputs are not modified).
    """
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def restrict_to(
    method: Method, part: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the init and datamodule arguments of one part of a method.

    A per-modality part trains on one modality: the task's ``encoders`` keep only that modality and the
    datamodule gets ``modalities: [part]``.

    Args:
        method: The method.
        part: A modality of a per-modality method, or None.

    Returns:
        Init arguments and datamodule argument overrides.
    """
    if part is None:
        return dict(method.init_args), dict(method.data_args)
    init_args = {
        **method.init_args,
        'encoders': {part: method.init_args['encoders'][part]},
    }
    return init_args, {**method.data_args, 'modalities': [part]}


def _resolve_entries(
    entries: Mapping[str, Any], path: str
) -> dict[str, dict[str, Any]]:
    """Resolve ``base`` inheritance of the method entries.

    Args:
        entries: The ``methods`` section.
        path: Config path, for messages.

    Returns:
        Method name mapped to its merged entry.

    Raises:
        ConfigError: On an unknown key or base, a cycle, or a method without class.
    """
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
        if name in chain:
            msg = f'{path}: methods.{name}: base cycle {" -> ".join((*chain, name))}'
            raise ConfigError(msg)
        if name not in entries:
            msg = f'{path}: unknown method {name!r} (methods: {sorted(entries)})'
            raise ConfigError(msg)
        entry = dict(entries[name] or {})
        if unknown := sorted(set(entry) - set(METHOD_KEYS)):
            msg = f'{path}: methods.{name}: unknown keys {unknown} (allowed: {", ".join(METHOD_KEYS)})'
            raise ConfigError(msg)
        parent = resolve(entry['base'], (*chain, name)) if 'base' in entry else {}
        merged: dict[str, Any] = {
            key: deep_merge(parent.get(key, {}), entry.get(key) or {})
            for key in ('init_args', 'data', 'trainer')
        }
        # Not inherited: a variant fixes some of its base's arguments, which its base may tune.
        merged['search_space'] = dict(entry.get('search_space') or {})
        for key in ('class_path', 'teacher', 'per_modality'):
            merged[key] = entry.get(key, parent.get(key))
        if merged['class_path'] is None:
            msg = f'{path}: methods.{name} needs a class_path or a base'
            raise ConfigError(msg)
        return merged

    for name in entries:
        resolved[name] = resolve(name)
    return resolved


def _teacher_order(raw: Mapping[str, Mapping[str, Any]], path: str) -> list[str]:
    """Order methods so that every teacher comes before its students.

    Args:
        raw: Method name mapped to its resolved entry.
        path: Config path, for messages.

    Returns:
        The method names in run order.

    Raises:
        ConfigError: On an unknown or circular teacher.
    """
    ordered: list[str] = []

    def visit(name: str, chain: tuple[str, ...] = ()) -> None:
        if name in ordered:
            return
        teacher = raw[name]['teacher']
        if teacher is not None:
            if teacher not in raw or teacher in chain or teacher == name:
                msg = (
                    f'{path}: methods.{name}.teacher {teacher!r} is unknown or circular'
                )
                raise ConfigError(msg)
            visit(teacher, (*chain, name))
        ordered.append(name)

    for name in raw:
        visit(name)
    return ordered


def _build_method(
    name: str,
    entry: Mapping[str, Any],
    shared: Mapping[str, Any],
    trainer: Mapping[str, Any],
    runner: Mapping[str, Any],
    data: Mapping[str, Any],
    path: str,
) -> tuple[Method, type]:
    """Build and validate one method.

    Args:
        name: Method name.
        entry: Its resolved entry.
        shared: The ``model`` arguments shared by every method.
        trainer: Global trainer arguments.
        runner: Global runner settings.
        data: The datamodule section.
        path: Config path, for messages.

    Returns:
        The method and its class.

    Raises:
        ConfigError: If anything of the method is invalid.
    """
    where = f'{path}: methods.{name}'
    try:
        cls = import_class(entry['class_path'])
    except (ImportError, TypeError) as error:
        raise ConfigError(f'{where}: {error}') from error
    accepted = accepted_arguments(cls)
    common = {k: v for k, v in shared.items() if accepted is None or k in accepted}
    own_trainer, own_runner = split_trainer(entry['trainer'])
    check_trainer(own_trainer, f'{where}.trainer')
    check_runner(own_runner, f'{where}.trainer')
    method = Method(
        name=name,
        class_path=entry['class_path'],
        init_args=deep_merge(common, entry['init_args']),
        data_args=dict(entry['data']),
        trainer=deep_merge(trainer, own_trainer),
        runner={**runner, **own_runner},
        teacher=entry['teacher'],
        per_modality=bool(entry['per_modality']),
        search_space=dict(entry['search_space']),
    )
    check_arguments(cls, method.init_args, f'{where}.init_args')
    # Built without its teacher's checkpoint (trained later, in the grid); the rest is checked.
    check_instance(cls, method.init_args, f'{where}.init_args')
    data_class = import_class(data['class_path'])
    for part in method.parts():
        if part is not None and not isinstance(
            method.init_args.get('encoders'), Mapping
        ):
            msg = f'{where}: per_modality needs an `encoders` dict in the init_args'
            raise ConfigError(msg)
        _, data_args = restrict_to(method, part)
        shown = f'{where}.data' + (f' (per-modality run {part!r})' if part else '')
        check_arguments(data_class, deep_merge(data['init_args'], data_args), shown)
    if method.per_modality and method.teacher is not None:
        msg = f'{where}: a per-modality method cannot have a teacher (the teacher needs every modality)'
        raise ConfigError(msg)
    space = check_search_space(method, cls, f'{where}.search_space')
    return replace(method, search_space=space), cls


def parse_config(config: Mapping[str, Any], text: str, path: str) -> Benchmark:
    """Check a benchmark config and resolve it.

    See :func:`load_config` for the format.

    Args:
        config: The parsed YAML.
        text: Its text (reproduced in the report).
        path: Its path (or a name), for messages.

    Returns:
        The benchmark.

    Raises:
        ConfigError: On a missing, unknown or invalid key; the message names the entry and the key.
    """
    if unknown := sorted(set(config) - set(TOP_LEVEL_KEYS)):
        msg = f'{path}: unknown top-level keys {unknown} (allowed: {", ".join(TOP_LEVEL_KEYS)})'
        raise ConfigError(msg)
    for key in ('data', 'methods'):
        if not isinstance(config.get(key), Mapping) or not config[key]:
            msg = f'{path}: missing or empty section {key!r}'
            raise ConfigError(msg)
    data = {'init_args': {}, **config['data']}
    if unknown := sorted(set(data) - {'class_path', 'init_args'}):
        msg = f'{path}: data: unknown keys {unknown} (allowed: class_path, init_args)'
        raise ConfigError(msg)
    if 'class_path' not in data:
        raise ConfigError(f'{path}: data needs a class_path')
    try:
        data_class = import_class(data['class_path'])
    except (ImportError, TypeError) as error:
        raise ConfigError(f'{path}: data: {error}') from error
    check_arguments(data_class, data['init_args'], f'{path}: data.init_args')
    own_trainer, own_runner = split_trainer(config.get('trainer') or {})
    check_trainer(own_trainer, f'{path}: trainer')
    check_runner(own_runner, f'{path}: trainer')
    trainer = {**TRAINER_DEFAULTS, **own_trainer}
    runner = {**RUNNER_DEFAULTS, **own_runner}
    raw = _resolve_entries(config['methods'], path)
    shared = dict(config.get('model') or {})
    built = {
        name: _build_method(name, raw[name], shared, trainer, runner, data, path)
        for name in _teacher_order(raw, path)
    }
    accepted = [accepted_arguments(cls) for _, cls in built.values()]
    if all(a is not None for a in accepted):
        known = set().union(*(a for a in accepted if a is not None))
        if unused := sorted(set(shared) - known):
            msg = f'{path}: model: {unused} are accepted by no method'
            raise ConfigError(msg)
    methods = [method for method, _ in built.values()]
    for method in methods:
        if method.teacher is not None and built[method.teacher][0].per_modality:
            msg = f'{path}: methods.{method.name}.teacher {method.teacher!r} is a per-modality method'
            raise ConfigError(msg)
    folds_value = config.get('folds', data['init_args'].get('num_folds', 5))
    folds = (
        list(range(folds_value)) if isinstance(folds_value, int) else list(folds_value)
    )
    report = dict(config.get('report') or {})
    if unknown := sorted(set(report) - {'reference', 'metric'}):
        msg = f'{path}: report: unknown keys {unknown} (allowed: reference, metric)'
        raise ConfigError(msg)
    reference = report.get('reference')
    if reference is not None and reference not in built:
        msg = (
            f'{path}: report.reference {reference!r} is not a method ({sorted(built)})'
        )
        raise ConfigError(msg)
    tuning = _parse_tuning(config.get('tuning'), report.get('metric'), methods, path)
    name = config.get('name') or os.path.splitext(os.path.basename(path))[0]
    return Benchmark(
        name=name,
        title=config.get('title', f'Benchmark: {name}'),
        description=config.get('description', ''),
        discussion=config.get('discussion', ''),
        data=data,
        methods=methods,
        folds=folds,
        seeds=list(config.get('seeds', [0])),
        trainer=trainer,
        runner=runner,
        reference=reference,
        primary_metric=report.get('metric'),
        tuning=tuning,
        text=text,
        path=path,
    )


def _parse_tuning(
    section: Mapping[str, Any] | None,
    metric: str | None,
    methods: Sequence[Method],
    path: str,
) -> Tuning | None:
    """Check the ``tuning`` section.

    Args:
        section: The section, or None.
        metric: The report's primary metric (the default tuning metric).
        methods: The methods.
        path: Config path, for messages.

    Returns:
        The tuning settings, or None without a section.

    Raises:
        ConfigError: On an invalid key or value, or a tuned method that validates on its test fold.
    """
    if section is None:
        return None
    if unknown := sorted(set(section) - {'trials', 'seed', 'metric'}):
        msg = f'{path}: tuning: unknown keys {unknown} (allowed: trials, seed, metric)'
        raise ConfigError(msg)
    trials = section.get('trials')
    if not isinstance(trials, int) or trials < 1:
        msg = f'{path}: tuning.trials must be a positive integer, got {trials!r}'
        raise ConfigError(msg)
    chosen = section.get('metric', metric)
    if chosen is None:
        raise ConfigError(
            f'{path}: tuning needs a metric (tuning.metric or report.metric)'
        )
    for method in methods:
        if method.search_space and method.data_args.get('val_is_test'):
            msg = (
                f'{path}: methods.{method.name} validates on its test fold (val_is_test), so tuning it '
                'would select on the test fold: remove its search_space'
            )
            raise ConfigError(msg)
    return Tuning(trials=trials, seed=int(section.get('seed', 0)), metric=str(chosen))


def load_config(path: str, overrides: Mapping[str, Any] | None = None) -> Benchmark:
    """Read, check and resolve a benchmark config.

    The YAML (see :func:`read_config` for ``extends``) holds ``name``, ``title``, ``description``,
    ``discussion``; ``data`` (``class_path``, ``init_args``); ``model``
    (arguments shared by every method: each method gets those its class accepts); ``methods`` (name mapped
    to ``class_path`` or ``base``, ``init_args``, optional ``data`` and ``trainer`` overrides, ``teacher``,
    ``per_modality`` and ``search_space``); ``folds`` (a list, or k for folds 0..k-1; default: every fold of
    ``data.init_args.num_folds``); ``seeds``; ``trainer`` (any :class:`lightning.pytorch.Trainer` argument
    plus the runner's ``patience``, ``min_delta`` and ``threads``); ``report`` (``reference`` method and
    primary ``metric``) and ``tuning`` (``trials``, ``seed``, ``metric``).

    Everything is validated here, before any run: every method's and the datamodule's arguments against
    the real class signatures (jsonargparse) and by building each method once, the trainer arguments against
    ``Trainer``, and each bound of each search space.

    Args:
        path: The YAML file.
        overrides: Deep-merged over the YAML before validation (e.g. the demo's command-line options).

    Returns:
        The benchmark.

    Raises:
        ConfigError: On a missing, unknown or invalid key; the message names the entry and the key.
    """
    config, text = read_config(path)
    return parse_config(deep_merge(config, overrides or {}), text, path)


def read_config(path: str) -> tuple[dict[str, Any], str]:
    """Read a benchmark config, resolving ``extends``.

    A config with ``extends: other.yaml`` (a path relative to the config's folder) is deep-merged over
    that config: it overrides or adds keys, and a method set to ``null`` is removed. This is how a
    benchmark on other folds of the same data (e.g. site-grouped) reuses the methods of another.

    Args:
        path: The YAML file.

    Returns:
        The merged config and its text (the extended file's, then this one's), for the report.

    Raises:
        ConfigError: If the file or an extended one does not hold a mapping.
    """
    with open(path) as file:
        text = file.read()
    config = yaml.safe_load(text) or {}
    if not isinstance(config, Mapping):
        raise ConfigError(f'{path}: expected a mapping at the top level')
    config = dict(config)
    if (extended := config.pop('extends', None)) is not None:
        base, base_text = read_config(os.path.join(os.path.dirname(path), extended))
        config = deep_merge(base, config)
        text = (
            f'# extends {extended}:\n{base_text}\n# {os.path.basename(path)}:\n{text}'
        )
    if isinstance(config.get('methods'), Mapping):
        config['methods'] = {
            k: v for k, v in config['methods'].items() if v is not None
        }
    return config, text
