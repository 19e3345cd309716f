# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Benchmark configs: loading, ``base`` inheritance, and validation against the real class signatures."""

import copy
import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
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
    'data',
    'model',
    'methods',
    'folds',
    'seeds',
    'trainer',
    'report',
    'tuning',
)

#: Kinds of a search-space parameter and the keys each needs.
PARAMETER_KEYS: dict[str, tuple[str, ...]] = {
    'float': ('low', 'high'),
    'int': ('low', 'high'),
    'categorical': ('choices',),
}


class ConfigError(ValueError):
    """A benchmark config is invalid; the message names the file, the entry and the key."""


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
        The argument names, or None if the constructor takes ``**kwargs`` (any name).
    """
    parameters = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


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


def set_path(arguments: dict[str, Any], path: str, value: Any) -> None:
    """Set a nested argument in place; ``*`` stands for every key of a dict.

    Args:
        arguments: The arguments.
        path: Dotted path, e.g. ``'lr'`` or ``'encoders.*.dropout'``.
        value: The value.

    Raises:
        KeyError: If an intermediate key is missing or is not a dict.
    """
    head, _, rest = path.partition('.')
    if not rest:
        arguments[head] = value
        return
    keys = list(arguments) if head == '*' else [head]
    for key in keys:
        child = arguments.get(key)
        if not isinstance(child, dict):
            msg = f'{path!r}: {key!r} is not a dict of the arguments'
            raise KeyError(msg)
        set_path(child, rest, value)


def with_parameters(
    arguments: Mapping[str, Any], parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Return a copy of arguments with tuned parameters set.

    Args:
        arguments: The method's init arguments.
        parameters: Dotted path mapped to value (see :func:`set_path`).

    Returns:
        The new arguments.
    """
    result = copy.deepcopy(dict(arguments))
    for path, value in parameters.items():
        set_path(result, path, value)
    return result


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


def _check_search_space(
    method: Method, cls: type, where: str
) -> dict[str, dict[str, Any]]:
    """Validate a search space: each bound or choice must give valid init arguments.

    Args:
        method: The method (with its init arguments).
        cls: The method's class.
        where: Where the search space is, for the message.

    Returns:
        The search space with defaults filled (``log`` False for numbers).

    Raises:
        ConfigError: On an unknown kind, missing keys, an unknown argument path or an invalid value.
    """
    space: dict[str, dict[str, Any]] = {}
    for path, spec in method.search_space.items():
        if not isinstance(spec, Mapping) or spec.get('type') not in PARAMETER_KEYS:
            msg = (
                f'{where}.{path}: needs a type in {sorted(PARAMETER_KEYS)} and its keys '
                f'{PARAMETER_KEYS}, got {spec!r}'
            )
            raise ConfigError(msg)
        kind = spec['type']
        allowed = {'type', 'log', *PARAMETER_KEYS[kind]}
        if missing := [k for k in PARAMETER_KEYS[kind] if k not in spec]:
            msg = f'{where}.{path}: missing {missing}'
            raise ConfigError(msg)
        if unknown := sorted(set(spec) - allowed):
            msg = f'{where}.{path}: unknown keys {unknown} (allowed: {sorted(allowed)})'
            raise ConfigError(msg)
        values = (
            spec['choices'] if kind == 'categorical' else [spec['low'], spec['high']]
        )
        if kind == 'categorical' and (
            not isinstance(values, list)
            or not values
            or not all(
                v is None or isinstance(v, bool | int | float | str) for v in values
            )
        ):
            msg = f'{where}.{path}: choices must be a non-empty list of numbers, strings, booleans or null, got {values!r}'
            raise ConfigError(msg)
        if kind != 'categorical' and not spec['low'] < spec['high']:
            msg = f'{where}.{path}: low must be below high, got {values}'
            raise ConfigError(msg)
        for value in values:
            try:
                arguments = with_parameters(method.init_args, {path: value})
            except KeyError as error:
                msg = f'{where}.{path}: {error.args[0]}'
                raise ConfigError(msg) from error
            check_arguments(cls, arguments, f'{where}.{path}={value!r}')
            check_instance(cls, arguments, f'{where}.{path}={value!r}')
        space[path] = (
            {**spec, 'log': bool(spec.get('log', False))}
            if kind != 'categorical'
            else dict(spec)
        )
    return space


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
    space = _check_search_space(method, cls, f'{where}.search_space')
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

    The YAML holds ``name``, ``title``, ``description``; ``data`` (``class_path``, ``init_args``); ``model``
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
    with open(path) as file:
        text = file.read()
    config = yaml.safe_load(text) or {}
    if not isinstance(config, Mapping):
        raise ConfigError(f'{path}: expected a mapping at the top level')
    return parse_config(deep_merge(config, overrides or {}), text, path)
