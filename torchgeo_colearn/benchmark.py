# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""``colearn benchmark``: methods x folds x seeds, cross-validated tables, plot and markdown report."""

import argparse
import contextlib
import copy
import datetime
import importlib
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import __version__
from .scenarios import COUNT, scores_by_scenario
from .trainers.base import MultiModalTask

#: Metrics for which lower is better; every other metric is better when higher.
LOWER_IS_BETTER = frozenset({'RMSE', 'MAE'})

#: Trainer settings of the config and their defaults.
TRAINER_DEFAULTS: dict[str, Any] = {
    'max_epochs': 100,
    'patience': 5,
    'min_delta': 0.0,
    'accelerator': 'cpu',
    'threads': None,
    'deterministic': False,
}

#: Loggers silenced during the grid (Lightning prints a few lines per fit and test otherwise).
QUIET_LOGGERS = ('lightning.pytorch', 'lightning.fabric', 'lightning')


@dataclass(frozen=True)
class Method:
    """One method of the grid, resolved from the config.

    Attributes:
        name: Display name (the key under ``methods``).
        class_path: Import path of the :class:`~torchgeo_colearn.trainers.base.MultiModalTask` subclass.
        init_args: Constructor arguments: the shared ``model`` arguments deep-merged with the method's.
        data_args: Datamodule arguments that override ``data.init_args`` for this method.
        teacher: Name of the method whose best checkpoint (same fold and seed) is passed as
            ``teacher_checkpoint``, or None.
        trainer: Trainer settings of this method: the config's ``trainer`` with the method's own
            ``trainer`` overrides (see :data:`TRAINER_DEFAULTS`).
    """

    name: str
    class_path: str
    init_args: dict[str, Any]
    data_args: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    trainer: dict[str, Any] = field(default_factory=lambda: dict(TRAINER_DEFAULTS))


@dataclass(frozen=True)
class Benchmark:
    """A parsed benchmark config.

    Attributes:
        name: Dataset name, used for the output folder and ``docs/results/<name>.md``.
        title: Report title.
        description: Free text shown at the top of the report.
        data: ``class_path`` and ``init_args`` of the datamodule (``fold`` set per run).
        methods: Methods in run order (teachers before their students).
        folds: Test folds to run.
        seeds: Training seeds to run.
        trainer: Trainer settings (see :data:`TRAINER_DEFAULTS`).
        reference: Method compared fold by fold with every other method in the report, or None.
        primary_metric: Metric of the plot and of the paired comparison, or None for the first one.
        text: The config file's text, reproduced in the report.
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
    reference: str | None
    primary_metric: str | None
    text: str
    path: str


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


def import_class(path: str) -> Any:
    """Import a class from its dotted path.

    Args:
        path: E.g. ``'torchgeo_colearn.trainers.fusion.FeatureFusionTask'``.

    Returns:
        The class.

    Raises:
        ImportError: If the module or the name does not exist.
    """
    module, _, name = path.rpartition('.')
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        msg = f'cannot import class_path {path!r}: {error}'
        raise ImportError(msg) from error


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    """Return a required config value.

    Args:
        mapping: The config section.
        key: The key.
        where: Where the section is, for the message.

    Returns:
        The value.

    Raises:
        ValueError: If the key is missing.
    """
    if key not in mapping:
        msg = f'{where}: missing key {key!r} (keys: {sorted(mapping)})'
        raise ValueError(msg)
    return mapping[key]


def _check_trainer(settings: Mapping[str, Any], where: str) -> None:
    """Reject unknown trainer settings.

    Args:
        settings: Trainer settings.
        where: Where they are, for the message.

    Raises:
        ValueError: On an unknown key.
    """
    if unknown := set(settings) - set(TRAINER_DEFAULTS):
        msg = f'{where}: unknown keys {sorted(unknown)} (allowed: {sorted(TRAINER_DEFAULTS)})'
        raise ValueError(msg)


def _resolve_methods(
    entries: Mapping[str, Any],
    shared: Mapping[str, Any],
    trainer: Mapping[str, Any],
    path: str,
) -> list[Method]:
    """Resolve the ``methods`` section: ``base`` inheritance, shared arguments, teacher order.

    Args:
        entries: Method name mapped to ``class_path`` (or ``base``: another method's name),
            ``init_args``, optional ``data`` and ``trainer`` overrides and ``teacher``.
        shared: The ``model`` arguments shared by every method.
        trainer: The trainer settings shared by every method.
        path: Config path, for messages.

    Returns:
        The methods, each teacher before the methods that distil from it.

    Raises:
        ValueError: On an unknown key, base or teacher, or a cycle.
    """
    raw: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
        if name in chain:
            msg = f'{path}: methods.{name}: base cycle {" -> ".join((*chain, name))}'
            raise ValueError(msg)
        if name not in entries:
            msg = f'{path}: unknown method {name!r} (methods: {sorted(entries)})'
            raise ValueError(msg)
        entry = dict(entries[name] or {})
        allowed = ('class_path', 'base', 'init_args', 'data', 'trainer', 'teacher')
        if unknown := set(entry) - set(allowed):
            msg = (
                f'{path}: methods.{name}: unknown keys {sorted(unknown)} '
                f'(allowed: {", ".join(allowed)})'
            )
            raise ValueError(msg)
        _check_trainer(entry.get('trainer') or {}, f'{path}: methods.{name}.trainer')
        parent = resolve(entry['base'], (*chain, name)) if 'base' in entry else {}
        merged = {
            'class_path': entry.get('class_path', parent.get('class_path')),
            'init_args': deep_merge(
                parent.get('init_args', {}), entry.get('init_args') or {}
            ),
            'data': deep_merge(parent.get('data', {}), entry.get('data') or {}),
            'trainer': deep_merge(
                parent.get('trainer', {}), entry.get('trainer') or {}
            ),
            'teacher': entry.get('teacher', parent.get('teacher')),
        }
        if merged['class_path'] is None:
            msg = f'{path}: methods.{name} needs a class_path or a base'
            raise ValueError(msg)
        return merged

    for name in entries:
        raw[name] = resolve(name)
    ordered: list[str] = []

    def visit(name: str, chain: tuple[str, ...] = ()) -> None:
        if name in ordered:
            return
        teacher = raw[name]['teacher']
        if teacher is not None:
            if teacher not in raw or teacher in chain:
                msg = (
                    f'{path}: methods.{name}.teacher {teacher!r} is unknown or circular'
                )
                raise ValueError(msg)
            visit(teacher, (*chain, name))
        ordered.append(name)

    for name in raw:
        visit(name)
    return [
        Method(
            name,
            raw[name]['class_path'],
            deep_merge(shared, raw[name]['init_args']),
            raw[name]['data'],
            raw[name]['teacher'],
            deep_merge(trainer, raw[name]['trainer']),
        )
        for name in ordered
    ]


def load_config(path: str) -> Benchmark:
    """Read and check a benchmark config.

    The YAML holds ``name``, ``title``, ``description``, ``data`` (``class_path``, ``init_args``),
    ``model`` (arguments shared by every method), ``methods`` (name mapped to ``class_path`` or
    ``base``, ``init_args``, optional ``data`` and ``trainer`` overrides and ``teacher``), ``folds`` (a list, or a number
    k for folds 0..k-1; default: every fold of ``data.init_args.num_folds``), ``seeds``, ``trainer``
    (see :data:`TRAINER_DEFAULTS`) and ``report`` (``reference`` method and ``metric``).

    Args:
        path: The YAML file.

    Returns:
        The benchmark.

    Raises:
        ValueError: On a missing or unknown key.
    """
    with open(path) as file:
        text = file.read()
    config = yaml.safe_load(text) or {}
    allowed = {
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
    }
    if unknown := set(config) - allowed:
        msg = f'{path}: unknown top-level keys {sorted(unknown)} (allowed: {sorted(allowed)})'
        raise ValueError(msg)
    data = dict(_require(config, 'data', path))
    _require(data, 'class_path', f'{path}: data')
    data.setdefault('init_args', {})
    _check_trainer(config.get('trainer') or {}, f'{path}: trainer')
    trainer = {**TRAINER_DEFAULTS, **(config.get('trainer') or {})}
    methods = _resolve_methods(
        _require(config, 'methods', path), config.get('model') or {}, trainer, path
    )
    folds_value = config.get('folds', data['init_args'].get('num_folds', 5))
    folds = (
        list(range(folds_value)) if isinstance(folds_value, int) else list(folds_value)
    )
    report = config.get('report') or {}
    name = config.get('name') or os.path.splitext(os.path.basename(path))[0]
    reference = report.get('reference')
    if reference is not None and reference not in {m.name for m in methods}:
        msg = f'{path}: report.reference {reference!r} is not a method ({[m.name for m in methods]})'
        raise ValueError(msg)
    return Benchmark(
        name=name,
        title=config.get('title', f'Benchmark: {name}'),
        description=config.get('description', ''),
        data=data,
        methods=methods,
        folds=folds,
        seeds=list(config.get('seeds', [0])),
        trainer=trainer,
        reference=reference,
        primary_metric=report.get('metric'),
        text=text,
        path=path,
    )


def run_path(
    output: str, method: str, fold: int, seed: int, suffix: str = 'json'
) -> str:
    """Return the path of a run's result file.

    Args:
        output: The benchmark output folder.
        method: Method name.
        fold: Test fold.
        seed: Training seed.
        suffix: 'json' (results) or 'ckpt' (kept best checkpoint of a teacher).

    Returns:
        ``<output>/runs/<method>/fold<fold>-seed<seed>.<suffix>``.
    """
    return os.path.join(output, 'runs', method, f'fold{fold}-seed{seed}.{suffix}')


def _write_json(path: str, record: Mapping[str, Any]) -> None:
    """Write a JSON file atomically (an interrupted write leaves no partial result behind).

    Args:
        path: Target file.
        record: The content.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f'{path}.tmp'
    with open(temporary, 'w') as file:
        json.dump(record, file, indent=2, default=str)
    os.replace(temporary, path)


def _fingerprint(benchmark: Benchmark, method: Method) -> dict[str, Any]:
    """What a finished run depends on; a run is reused only if it is unchanged.

    Args:
        benchmark: The benchmark.
        method: The method.

    Returns:
        The class path, arguments, data config and trainer settings.
    """
    return {
        'class_path': method.class_path,
        'init_args': method.init_args,
        'data': deep_merge(benchmark.data, {'init_args': method.data_args}),
        'trainer': method.trainer,
        'teacher': method.teacher,
    }


def _finished(path: str, fingerprint: Mapping[str, Any]) -> bool:
    """Tell whether a run finished with the same settings.

    Args:
        path: The run's JSON file.
        fingerprint: Its current :func:`_fingerprint` (normalised through JSON).

    Returns:
        True if the file exists, its status is 'ok' and its settings are the current ones.
    """
    if not os.path.exists(path):
        return False
    with open(path) as file:
        record = json.load(file)
    current = json.loads(json.dumps(fingerprint, default=str))
    return bool(record.get('status') == 'ok' and record.get('config') == current)


def code_version() -> str:
    """Name the code that runs: the git commit of the package checkout, or the package version.

    Returns:
        ``git describe --always --dirty`` of the checkout (``-dirty``: tracked files changed since the
        commit), or ``torchgeo-colearn <version>`` outside a git checkout.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


@contextlib.contextmanager
def _quiet() -> Iterator[list[str]]:
    """Silence Lightning's per-fit output and collect the warnings raised meanwhile.

    Yields:
        The list that receives the distinct warning messages.
    """
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    messages: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            yield messages
        for item in caught:
            text = f'{item.category.__name__}: {item.message}'
            if text not in messages:
                messages.append(text)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def run_one(
    benchmark: Benchmark, method: Method, fold: int, seed: int, output: str
) -> dict[str, Any]:
    """Train one method on one fold with one seed, test its best checkpoint, return the record.

    Fit with early stopping on ``val_loss`` and the best checkpoint (by ``val_loss``) reloaded; the test
    fold is scored in every inference scenario of the method by
    :class:`~torchgeo_colearn.callbacks.ScenarioEvaluation`.

    Args:
        benchmark: The benchmark.
        method: The method.
        fold: Test fold.
        seed: Training seed (the fold split is the datamodule's own, fixed by its ``seed``).
        output: The benchmark output folder.

    Returns:
        The run record: ``status`` 'ok', ``results`` (scenario mapped to metric mapped to value),
        ``epochs``, ``best_epoch``, ``seconds``, ``warnings``.

    Raises:
        Exception: Whatever fails; :func:`run_grid` records it.
    """
    settings = method.trainer
    seed_everything(seed, workers=True, verbose=False)
    data_args = deep_merge(benchmark.data['init_args'], method.data_args)
    datamodule: LightningDataModule = import_class(benchmark.data['class_path'])(
        **{**data_args, 'fold': fold}
    )
    init_args = dict(method.init_args)
    if method.teacher is not None:
        teacher = run_path(output, method.teacher, fold, seed, 'ckpt')
        if not os.path.exists(teacher):
            msg = (
                f'teacher checkpoint {teacher} is missing (teacher {method.teacher!r} failed, or its '
                'checkpoint was deleted: delete its JSON file to re-run it)'
            )
            raise FileNotFoundError(msg)
        init_args['teacher_checkpoint'] = teacher
    model_class = import_class(method.class_path)
    if not (isinstance(model_class, type) and issubclass(model_class, MultiModalTask)):
        msg = f'methods.{method.name}: {method.class_path} is not a MultiModalTask subclass'
        raise TypeError(msg)
    model = model_class(**init_args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='colearn-benchmark-') as workdir:
        checkpoint = ModelCheckpoint(
            dirpath=workdir, monitor='val_loss', mode='min', save_top_k=1
        )
        stopping = EarlyStopping(
            'val_loss',
            patience=settings['patience'],
            min_delta=settings['min_delta'],
            mode='min',
        )
        trainer = Trainer(
            max_epochs=settings['max_epochs'],
            accelerator=settings['accelerator'],
            devices=1,
            deterministic=settings['deterministic'],
            logger=False,
            callbacks=[stopping, checkpoint],
            default_root_dir=workdir,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(model, datamodule)
        best = checkpoint.best_model_path
        (logged,) = trainer.test(
            model, datamodule, ckpt_path=best or None, verbose=False
        )
        if any(m.teacher == method.name for m in benchmark.methods) and best:
            target = run_path(output, method.name, fold, seed, 'ckpt')
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(best, target)
        best_epoch = _epoch_of(best)
    return {
        'status': 'ok',
        'results': {
            name: {m: v for m, v in metrics.items() if m != COUNT}
            for name, metrics in scores_by_scenario(logged, 'test').items()
        },
        'epochs': trainer.current_epoch,
        'best_epoch': best_epoch,
        'seconds': round(time.perf_counter() - start, 1),
    }


def _epoch_of(checkpoint: str) -> int | None:
    """Read the epoch from a Lightning checkpoint file name (``epoch=7-step=56.ckpt``).

    Args:
        checkpoint: Checkpoint path, or ''.

    Returns:
        The epoch (0-based), or None.
    """
    name = os.path.basename(checkpoint)
    if not name.startswith('epoch='):
        return None
    return int(name.split('-')[0].removeprefix('epoch='))


def run_grid(
    benchmark: Benchmark, output: str, print_fn: Callable[[str], Any] = print
) -> list[dict[str, Any]]:
    """Run every (seed, fold, method) not finished yet; record failures and go on.

    Each run's record goes to :func:`run_path` (JSON). A run is skipped when its JSON says 'ok' with the
    current settings; failed runs are retried. One progress line per run:
    ``[k/N] method fold=f seed=s: ...``.

    Args:
        benchmark: The benchmark.
        output: The output folder.
        print_fn: Where progress lines go.

    Returns:
        Every run record of the grid, in run order.
    """
    grid = [
        (method, fold, seed)
        for seed in benchmark.seeds
        for fold in benchmark.folds
        for method in benchmark.methods
    ]
    total, done_now, started = len(grid), 0, time.perf_counter()
    print_fn(
        f'{benchmark.name}: {total} runs = {len(benchmark.methods)} methods x '
        f'{len(benchmark.folds)} folds x {len(benchmark.seeds)} seeds -> {output}'
    )
    records = []
    version = code_version()
    pending = sum(
        not _finished(run_path(output, m.name, f, s), _fingerprint(benchmark, m))
        for m, f, s in grid
    )
    for index, (method, fold, seed) in enumerate(grid, 1):
        path = run_path(output, method.name, fold, seed)
        fingerprint = _fingerprint(benchmark, method)
        head = f'[{index}/{total}] {method.name} fold={fold} seed={seed}'
        if _finished(path, fingerprint):
            with open(path) as file:
                records.append(json.load(file))
            print_fn(f'{head}: done before, skipped')
            continue
        base = {
            'method': method.name,
            'fold': fold,
            'seed': seed,
            'config': json.loads(json.dumps(fingerprint, default=str)),
            'code_version': version,
        }
        with _quiet() as messages:
            try:
                record = {**base, **run_one(benchmark, method, fold, seed, output)}
            except Exception as error:  # noqa: BLE001 (a failed run is recorded, the grid goes on)
                record = {
                    **base,
                    'status': 'failed',
                    'error': f'{type(error).__name__}: {error}',
                    'traceback': traceback.format_exc(),
                }
        record['warnings'] = messages
        _write_json(path, record)
        records.append(record)
        done_now += 1
        elapsed = time.perf_counter() - started
        remaining = elapsed / done_now * (pending - done_now)
        if record['status'] == 'ok':
            scores = ', '.join(
                f'{scenario} {metric} {value:.3f}'
                for scenario, metrics in record['results'].items()
                if '+' not in scenario
                for metric, value in metrics.items()
                if metric == (benchmark.primary_metric or next(iter(metrics)))
            )
            outcome = (
                f'ok in {record["seconds"]:.0f} s, {record["epochs"]} epochs ({scores})'
            )
        else:
            outcome = f'FAILED: {record["error"]}'
        print_fn(
            f'{head}: {outcome} | elapsed {elapsed / 60:.1f} min, ~{remaining / 60:.1f} min left'
        )
    return records


def collect(benchmark: Benchmark, output: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the run records of the grid.

    Args:
        benchmark: The benchmark.
        output: The output folder.

    Returns:
        The scores, one row per (method, fold, seed, scenario, metric) with ``value``; and the runs, one
        row per (method, fold, seed) with ``status``, ``error``, ``epochs``, ``best_epoch``, ``seconds``
        (runs without a record are 'missing').
    """
    scores, runs = [], []
    for method in benchmark.methods:
        for fold in benchmark.folds:
            for seed in benchmark.seeds:
                path = run_path(output, method.name, fold, seed)
                key = {'method': method.name, 'fold': fold, 'seed': seed}
                if not os.path.exists(path):
                    runs.append({**key, 'status': 'missing'})
                    continue
                with open(path) as file:
                    record = json.load(file)
                runs.append(
                    {
                        **key,
                        'status': record['status'],
                        'error': record.get('error'),
                        'epochs': record.get('epochs'),
                        'best_epoch': record.get('best_epoch'),
                        'seconds': record.get('seconds'),
                        'code_version': record.get('code_version'),
                    }
                )
                for scenario, metrics in (record.get('results') or {}).items():
                    for metric, value in metrics.items():
                        scores.append(
                            {
                                **key,
                                'scenario': scenario,
                                'metric': metric,
                                'value': value,
                            }
                        )
    columns = ['method', 'fold', 'seed', 'scenario', 'metric', 'value']
    return pd.DataFrame(scores, columns=columns), pd.DataFrame(runs)


def summarize(scores: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Mean and standard deviation over folds (and seeds) per method, scenario and metric.

    Args:
        scores: Output of :func:`collect`.
        methods: Method order.

    Returns:
        Columns ``method, scenario, metric, mean, std, n, best``; ``std`` is the sample standard
        deviation (ddof 1; NaN with one run); ``best`` marks the best mean per (scenario, metric) (lower
        is better for :data:`LOWER_IS_BETTER`).
    """
    columns = ['method', 'scenario', 'metric', 'mean', 'std', 'n', 'best']
    if scores.empty:
        return pd.DataFrame(columns=columns)
    summary = (
        scores.groupby(['method', 'scenario', 'metric'], sort=False)['value']
        .agg(['mean', 'std', 'count'])
        .rename(columns={'count': 'n'})
        .reset_index()
    )
    summary['best'] = False
    for (_, metric), group in summary.groupby(['scenario', 'metric']):
        target = (
            group['mean'].min() if metric in LOWER_IS_BETTER else group['mean'].max()
        )
        summary.loc[group.index, 'best'] = np.isclose(group['mean'], target)
    order = {m: i for i, m in enumerate(methods)}
    summary['order'] = summary['method'].map(order)
    return summary.sort_values(['metric', 'order'], kind='stable')[columns].reset_index(
        drop=True
    )


def scenario_order(scenarios: Sequence[str]) -> list[str]:
    """Order scenarios: single modalities first, then by size (order of appearance within a size).

    Args:
        scenarios: Scenario names ('s1', 's1+s2', ...).

    Returns:
        The ordered distinct names.
    """
    distinct = list(dict.fromkeys(scenarios))
    return sorted(distinct, key=lambda s: (s.count('+'), distinct.index(s)))


def _cell(mean: float, std: float, n: int, expected: int, best: bool) -> str:
    """Format a ``mean ± std`` table cell.

    Args:
        mean: Mean over runs.
        std: Standard deviation over runs (NaN with one run).
        n: Number of runs.
        expected: Number of runs of the grid for this method.
        best: Bold the cell.

    Returns:
        Markdown text.
    """
    text = f'{mean:.3f}' if math.isnan(std) else f'{mean:.3f} ± {std:.3f}'
    if best:
        text = f'**{text}**'
    return text if n == expected else f'{text} (n={n})'


def markdown_tables(
    summary: pd.DataFrame,
    methods: Sequence[str],
    expected: int,
    failed: Sequence[str] = (),
    first_metric: str | None = None,
) -> str:
    """Markdown tables, one per metric: methods x scenarios, mean ± std, best per scenario in bold.

    Args:
        summary: Output of :func:`summarize`.
        methods: Method order.
        expected: Runs per method in the grid (folds x seeds); cells with fewer say ``(n=...)``.
        failed: Methods without any finished run but with failed ones; their cells say 'failed'.
        first_metric: Metric whose table comes first (the others follow in their order).

    Returns:
        Markdown text.
    """
    if summary.empty:
        return 'No finished run.\n'
    parts = []
    metrics = list(dict.fromkeys(summary['metric']))
    if first_metric in metrics:
        metrics.remove(first_metric)
        metrics.insert(0, first_metric)
    for metric in metrics:
        rows = summary[summary['metric'] == metric]
        scenarios = scenario_order(list(rows['scenario']))
        direction = 'lower' if metric in LOWER_IS_BETTER else 'higher'
        lines = [
            f'### {metric} ({direction} is better)',
            '',
            '| method | ' + ' | '.join(scenarios) + ' |',
            '|---|' + '---:|' * len(scenarios),
        ]
        for method in methods:
            cells = []
            for scenario in scenarios:
                match = rows[
                    (rows['method'] == method) & (rows['scenario'] == scenario)
                ]
                if match.empty:
                    cells.append('failed' if method in failed else '-')
                    continue
                row = match.iloc[0]
                cells.append(
                    _cell(
                        row['mean'],
                        row['std'],
                        int(row['n']),
                        expected,
                        bool(row['best']),
                    )
                )
            lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
        parts.append('\n'.join(lines))
    return '\n\n'.join(parts) + '\n'


def paired_comparison(
    scores: pd.DataFrame, reference: str, metric: str, methods: Sequence[str]
) -> pd.DataFrame:
    """Compare a reference method with each other method fold by fold, per single-modality scenario.

    Args:
        scores: Output of :func:`collect`.
        reference: The reference method.
        metric: The metric compared.
        methods: Method order.

    Returns:
        Columns ``scenario, method, reference_mean, method_mean, difference_mean, difference_std,
        wins, n``: the difference is reference minus method (sign flipped for
        :data:`LOWER_IS_BETTER`, so positive favours the reference), over the (fold, seed) pairs both
        finished; ``wins`` counts the pairs where the reference is better.
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    chosen = scores[
        (scores['metric'] == metric)
        & ~scores['scenario'].str.contains('+', regex=False)
    ]
    table = chosen.pivot_table(
        index=['scenario', 'fold', 'seed'], columns='method', values='value'
    )
    rows: list[dict[str, Any]] = []
    if reference not in table.columns:
        return pd.DataFrame(rows)
    for scenario in scenario_order(list(chosen['scenario'])):
        block = table.loc[scenario]
        for method in methods:
            if method == reference or method not in block.columns:
                continue
            pairs = block[[reference, method]].dropna()
            if pairs.empty:
                continue
            difference = sign * (pairs[reference] - pairs[method])
            rows.append(
                {
                    'scenario': scenario,
                    'method': method,
                    'reference_mean': pairs[reference].mean(),
                    'method_mean': pairs[method].mean(),
                    'difference_mean': difference.mean(),
                    'difference_std': difference.std(),
                    'wins': int((difference > 0).sum()),
                    'n': len(pairs),
                }
            )
    return pd.DataFrame(rows)


def comparison_markdown(comparison: pd.DataFrame, reference: str, metric: str) -> str:
    """Render the paired comparison as a markdown table with a one-line reading per scenario.

    Args:
        comparison: Output of :func:`paired_comparison`.
        reference: The reference method.
        metric: The metric compared.

    Returns:
        Markdown text.
    """
    if comparison.empty:
        return f'No fold where {reference} and another method both finished.\n'
    lines = [
        (
            f'Difference = {reference} minus the method on the same fold and seed '
            f'({"sign flipped: lower is better, so " if metric in LOWER_IS_BETTER else ""}'
            f'positive favours {reference}); wins = runs where {reference} is better.'
        ),
        '',
        f'| scenario | method | {reference} | method | difference | wins |',
        '|---|---|---:|---:|---:|---:|',
    ]
    for row in comparison.to_dict('records'):
        std = float(row['difference_std'])
        spread = '' if math.isnan(std) else f' ± {std:.3f}'
        lines.append(
            f'| {row["scenario"]} | {row["method"]} | {row["reference_mean"]:.3f} | '
            f'{row["method_mean"]:.3f} | {row["difference_mean"]:+.3f}{spread} | '
            f'{row["wins"]}/{row["n"]} |'
        )
    lines.append('')
    for scenario, group in comparison.groupby('scenario', sort=False):
        beaten = group[group['difference_mean'] > 0]['method'].tolist()
        not_beaten = group[group['difference_mean'] <= 0]['method'].tolist()
        clauses = []
        if beaten:
            clauses.append(f'better mean {metric} than {", ".join(beaten)}')
        if not_beaten:
            clauses.append(f'not better than {", ".join(not_beaten)}')
        lines.append(f'- **{scenario}**: {reference} has a ' + '; '.join(clauses) + '.')
    return '\n'.join(lines) + '\n'


def plot(
    summary: pd.DataFrame, metric: str, methods: Sequence[str], path: str, title: str
) -> None:
    """Bar chart of one metric: scenarios on the x axis, one bar per method, std as error bars.

    Args:
        summary: Output of :func:`summarize`.
        metric: The metric plotted.
        methods: Method order.
        path: PNG file.
        title: Figure title.
    """
    rows = summary[summary['metric'] == metric]
    scenarios = scenario_order(list(rows['scenario']))
    present = [m for m in methods if m in set(rows['method'])]
    figure = Figure(figsize=(max(6.0, 0.25 * len(scenarios) * len(present) + 3.0), 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(present))
    # Distinct colours for up to 20 methods (the default cycle repeats after 10).
    palette = colormaps['tab10' if len(present) <= 10 else 'tab20']
    for index, method in enumerate(present):
        chosen = rows[rows['method'] == method].set_index('scenario')
        positions = [
            i + (index - (len(present) - 1) / 2) * width
            for i, s in enumerate(scenarios)
            if s in chosen.index
        ]
        values = [chosen.loc[s] for s in scenarios if s in chosen.index]
        axes.bar(
            positions,
            [v['mean'] for v in values],
            width,
            yerr=[0.0 if pd.isna(v['std']) else float(v['std']) for v in values],
            capsize=2,
            label=method,
            color=palette(index % palette.N),
        )
    axes.set_xticks(range(len(scenarios)), scenarios)
    axes.set_xlabel('inference scenario (available modalities)')
    axes.set_ylabel(f'{metric} (mean ± std over runs)')
    axes.set_title(title)
    axes.axhline(0.0, color='black', linewidth=0.5)
    axes.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    figure.savefig(path, dpi=110)


def runs_markdown(runs: pd.DataFrame, methods: Sequence[str]) -> str:
    """Per-method run status: finished, failed (with the first error), epochs and time.

    Args:
        runs: Runs table of :func:`collect`.
        methods: Method order.

    Returns:
        Markdown text.
    """
    lines = [
        '| method | finished | failed | missing | epochs (mean) | best epoch (mean) | minutes per run | first error |',
        '|---|---:|---:|---:|---:|---:|---:|---|',
    ]
    for method in methods:
        chosen = runs[runs['method'] == method]
        ok = chosen[chosen['status'] == 'ok']
        failed = chosen[chosen['status'] == 'failed']
        error = (
            ''
            if failed.empty
            else str(failed['error'].iloc[0]).replace('|', '\\|')[:200]
        )

        def mean_of(column: str, rows: pd.DataFrame = ok) -> str:
            if rows.empty or column not in rows or rows[column].isna().all():
                return '-'
            return f'{rows[column].mean():.1f}'

        minutes = '-' if ok.empty else f'{ok["seconds"].mean() / 60:.1f}'
        lines.append(
            f'| {method} | {len(ok)} | {len(failed)} | {int((chosen["status"] == "missing").sum())} | '
            f'{mean_of("epochs")} | {mean_of("best_epoch")} | {minutes} | {error} |'
        )
    if 'code_version' in runs:
        versions = runs.loc[runs['status'] == 'ok', 'code_version'].fillna(
            'not recorded'
        )
        counts = ', '.join(
            f'`{v}` ({n} runs)' for v, n in versions.value_counts().items()
        )
        lines += ['', f'Code (`git describe --always --dirty`): {counts}.']
    return '\n'.join(lines) + '\n'


def _trainer_overrides(benchmark: Benchmark) -> list[str]:
    """Report lines naming the methods whose trainer settings differ from the shared ones.

    Args:
        benchmark: The benchmark.

    Returns:
        One markdown paragraph and a blank line, or nothing.
    """
    changed = [
        f'`{m.name}` ('
        + ', '.join(
            f'{key} {value}'
            for key, value in m.trainer.items()
            if value != benchmark.trainer[key]
        )
        + ')'
        for m in benchmark.methods
        if m.trainer != benchmark.trainer
    ]
    if not changed:
        return []
    return [f'Methods with their own trainer settings: {", ".join(changed)}.', '']


def write_report(
    benchmark: Benchmark, output: str, report: str, command: str
) -> pd.DataFrame:
    """Aggregate the runs: CSV tables, plot and the whole markdown report.

    Writes ``<output>/scores.csv`` (every run's scores), ``<output>/summary.csv`` (mean, std, n, best),
    ``<output>/comparison.csv``, the plot next to the report (``<report stem>.png``) and the report.

    Args:
        benchmark: The benchmark.
        output: The output folder holding the runs.
        report: Markdown file to write.
        command: The command line that produced it, shown in the report.

    Returns:
        The summary table.
    """
    methods = [m.name for m in benchmark.methods]
    scores, runs = collect(benchmark, output)
    summary = summarize(scores, methods)
    os.makedirs(output, exist_ok=True)
    scores.to_csv(os.path.join(output, 'scores.csv'), index=False)
    summary.to_csv(os.path.join(output, 'summary.csv'), index=False)
    metric = benchmark.primary_metric or (
        str(summary['metric'].iloc[0]) if not summary.empty else None
    )
    expected = len(benchmark.folds) * len(benchmark.seeds)
    figure_path = os.path.splitext(report)[0] + '.png'
    sections = [
        '<!-- Generated by `colearn benchmark`; do not edit by hand: re-run the command below. -->',
        f'# {benchmark.title}',
        '',
        benchmark.description.strip(),
        '',
        f'Generated on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by:',
        '',
        f'```bash\n{command}\n```',
        '',
        (
            f'Protocol: {len(benchmark.folds)} test folds ({", ".join(map(str, benchmark.folds))}) x '
            f'{len(benchmark.seeds)} seed(s) ({", ".join(map(str, benchmark.seeds))}); each run trains '
            f'with early stopping on `val_loss` (patience {benchmark.trainer["patience"]}, min_delta '
            f'{benchmark.trainer["min_delta"]}, at most {benchmark.trainer["max_epochs"]} epochs), reloads '
            'the best checkpoint and scores the test fold in every inference scenario of the method '
            '(single modalities; modality subsets for methods that fuse). Cells: mean ± sample standard '
            'deviation over the runs; **bold** = best mean of the scenario; `(n=k)` = only k runs '
            'finished; - = the method cannot predict that scenario.'
        ),
        '',
        *_trainer_overrides(benchmark),
        '## Results',
        '',
        markdown_tables(
            summary,
            methods,
            expected,
            sorted(
                set(runs.loc[runs['status'] == 'failed', 'method'])
                - set(summary['method'])
            ),
            metric,
        ),
    ]
    if metric is not None and not summary.empty:
        plot(summary, metric, methods, figure_path, f'{benchmark.title}: {metric}')
        sections += [
            f'![{metric} per inference scenario]({os.path.relpath(figure_path, os.path.dirname(report) or ".")})',
            '',
        ]
    if benchmark.reference is not None and metric is not None and not scores.empty:
        comparison = paired_comparison(scores, benchmark.reference, metric, methods)
        comparison.to_csv(os.path.join(output, 'comparison.csv'), index=False)
        sections += [
            f'## {benchmark.reference} vs each method, fold by fold ({metric}, single-modality scenarios)',
            '',
            comparison_markdown(comparison, benchmark.reference, metric),
        ]
    sections += [
        '## Runs',
        '',
        runs_markdown(runs, methods),
        '## Config',
        '',
        f'`{benchmark.path}`:',
        '',
        f'```yaml\n{benchmark.text.rstrip()}\n```',
        '',
    ]
    os.makedirs(os.path.dirname(report) or '.', exist_ok=True)
    with open(report, 'w') as file:
        file.write('\n'.join(sections))
    return summary


def _subset(benchmark: Benchmark, args: argparse.Namespace) -> Benchmark:
    """Apply the ``--methods``, ``--folds`` and ``--seeds`` filters.

    Args:
        benchmark: The full benchmark.
        args: Parsed arguments.

    Returns:
        The filtered benchmark (a method's teacher is kept if the method is).

    Raises:
        ValueError: If a filter names an unknown method.
    """
    methods = benchmark.methods
    if args.methods:
        names = {m.name for m in methods}
        if unknown := set(args.methods) - names:
            msg = f'--methods: unknown {sorted(unknown)} (config has {sorted(names)})'
            raise ValueError(msg)
        keep = set(args.methods)
        keep |= {m.teacher for m in methods if m.name in keep and m.teacher}
        methods = [m for m in methods if m.name in keep]
    return Benchmark(
        **{
            **benchmark.__dict__,
            'methods': methods,
            'folds': args.folds if args.folds is not None else benchmark.folds,
            'seeds': args.seeds if args.seeds is not None else benchmark.seeds,
        }
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run ``colearn benchmark``.

    Args:
        argv: Arguments after ``benchmark``; see ``colearn benchmark --help``.

    Returns:
        The summary table (see :func:`summarize`).
    """
    parser = argparse.ArgumentParser(
        prog='colearn benchmark',
        description=(
            'Run methods x folds x seeds of a benchmark config (resumable: finished runs are skipped, '
            'failed runs are recorded and retried next time), then write the cross-validated table '
            '(CSV), a plot and the markdown report.'
        ),
    )
    parser.add_argument(
        '--config', required=True, help='benchmark YAML (experiments/benchmarks/*.yaml)'
    )
    parser.add_argument(
        '--output', help='folder of the runs and tables (default logs/benchmark/<name>)'
    )
    parser.add_argument(
        '--report', help='markdown report (default docs/results/<name>.md)'
    )
    parser.add_argument(
        '--methods', nargs='+', help='run only these methods (and their teachers)'
    )
    parser.add_argument(
        '--folds', nargs='+', type=int, help='run only these test folds'
    )
    parser.add_argument('--seeds', nargs='+', type=int, help='run only these seeds')
    parser.add_argument(
        '--report-only',
        action='store_true',
        help='aggregate the finished runs without running',
    )
    args = parser.parse_args(argv)
    benchmark = _subset(load_config(args.config), args)
    output = args.output or os.path.join('logs', 'benchmark', benchmark.name)
    report = args.report or os.path.join('docs', 'results', f'{benchmark.name}.md')
    threads = benchmark.trainer['threads']
    if threads:
        torch.set_num_threads(int(threads))
    if not args.report_only:
        run_grid(benchmark, output)
    command = 'colearn benchmark ' + shlex.join(list(argv) if argv is not None else [])
    summary = write_report(benchmark, output, report, command)
    print(f'Report written to {report}; tables in {output}')
    return summary
