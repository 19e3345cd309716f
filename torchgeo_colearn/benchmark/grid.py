# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The resumable grid: plan the units, skip the finished ones, run the rest on an executor, show progress."""

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import Benchmark, Method
from .executors import Executor, SerialExecutor
from .records import Unit, fingerprint, is_finished, read_json, unit_path
from .runner import Job, Progress
from .tuning import best_trial, suggest, trial_records


@dataclass
class Plan:
    """The units of a grid, in run order, and what each waits for.

    Attributes:
        units: Trials first (per fold, method, part), then runs (per seed, fold, method, part); teachers
            before their students.
        depends: Unit mapped to the units that must be finished (or recorded as failed) before it starts.
    """

    units: list[Unit]
    depends: dict[Unit, list[Unit]]


def tuned(benchmark: Benchmark, method: Method) -> bool:
    """Tell whether a method is tuned.

    Args:
        benchmark: The benchmark.
        method: One of its methods.

    Returns:
        True if the benchmark tunes and the method has a search space.
    """
    return benchmark.tuning is not None and bool(method.search_space)


def plan(benchmark: Benchmark) -> Plan:
    """List the units of the grid and their dependencies.

    Args:
        benchmark: The benchmark.

    Returns:
        The plan.
    """
    units: list[Unit] = []
    depends: dict[Unit, list[Unit]] = {}
    first_seed = benchmark.seeds[0]
    trials = benchmark.tuning.trials if benchmark.tuning is not None else 0
    for fold in benchmark.folds:
        for method in benchmark.methods:
            if not tuned(benchmark, method):
                continue
            for part in method.parts():
                for t in range(trials):
                    unit = Unit('trial', method.name, fold, first_seed, part, t)
                    depends[unit] = (
                        [Unit('trial', method.name, fold, first_seed, part, t - 1)]
                        if t
                        else []
                    )
                    if method.teacher is not None:
                        depends[unit].append(
                            Unit('run', method.teacher, fold, first_seed)
                        )
                    units.append(unit)
    for seed in benchmark.seeds:
        for fold in benchmark.folds:
            for method in benchmark.methods:
                for part in method.parts():
                    unit = Unit('run', method.name, fold, seed, part)
                    depends[unit] = []
                    if tuned(benchmark, method):
                        depends[unit].append(
                            Unit(
                                'trial', method.name, fold, first_seed, part, trials - 1
                            )
                        )
                    if method.teacher is not None:
                        depends[unit].append(Unit('run', method.teacher, fold, seed))
                    units.append(unit)
    known = set(units)
    return Plan(
        units, {u: [d for d in deps if d in known] for u, deps in depends.items()}
    )


def prepare(
    benchmark: Benchmark, unit: Unit, output: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Return what a unit depends on and the tuned parameters it trains with.

    Args:
        benchmark: The benchmark.
        unit: The unit.
        output: The benchmark output folder.

    Returns:
        The unit's settings (its record's ``config``) and its parameters: for a trial, None (sampled when
        it starts); for a tuned run, the best trial's parameters (``{}`` when no trial finished, and the
        settings say so); else ``{}``.
    """
    method = benchmark.method(unit.method)
    settings = fingerprint(benchmark, method)
    if unit.kind == 'trial':
        return {**settings, 'trial': unit.trial}, None
    if not tuned(benchmark, method):
        return settings, {}
    assert benchmark.tuning is not None
    records = trial_records(
        output, method.name, unit.fold, unit.part, benchmark.tuning.trials
    )
    best = best_trial(records, benchmark.tuning.metric)
    parameters = dict(best['parameters']) if best is not None else {}
    return {**settings, 'parameters': parameters, 'tuned': best is not None}, parameters


def _outcome(record: Mapping[str, Any], metric: str | None) -> str:
    """Summarise a unit's record in its progress line.

    Args:
        record: The record.
        metric: The metric shown (the first one reported if None).

    Returns:
        E.g. ``'ok in 35 s, 20 epochs (s1 R2 0.210, s2 R2 0.380)'`` or ``'FAILED: ValueError: ...'``.
    """
    if record['status'] != 'ok':
        return f'FAILED: {record["error"]}'
    scores = ', '.join(
        f'{scenario} {name} {value:.3f}'
        for scenario, metrics in record['results'].items()
        for name, value in metrics.items()
        if name == (metric or next(iter(metrics)))
    )
    length = f', {record["epochs"]} epochs' if 'epochs' in record else ''
    value = f', objective {record["value"]:.4f}' if 'value' in record else ''
    return f'ok in {record["seconds"]:.0f} s{length}{value} ({scores})'


def run_grid(
    benchmark: Benchmark,
    output: str,
    executor: Executor | None = None,
    print_fn: Callable[[str], Any] = print,
    progress: Progress = 'run',
    any_code: bool = False,
) -> list[dict[str, Any]]:
    """Run every unit of the grid that is not finished; record failures and go on.

    A unit is skipped when its record says 'ok' with the current settings and the current package code
    (:func:`~torchgeo_colearn.benchmark.records.is_finished`); failed units are retried. A unit starts once
    the units it depends on are done (trials of its study, its teacher). One progress line per unit:
    ``[k/N] <unit>: ...``, with the elapsed time and an estimate of the time left.

    Args:
        benchmark: The benchmark.
        output: The output folder.
        executor: Where the units run (default: one after the other in this process).
        print_fn: Where progress lines go.
        progress: 'run' (a line per unit), 'epoch' (and a line per epoch) or 'bar' (Lightning's bar).
        any_code: Reuse finished units made by other package code.

    Returns:
        Every unit's record, in completion order.
    """
    output = os.path.abspath(output)
    executor = executor or SerialExecutor()
    grid = plan(benchmark)
    total = len(grid.units)
    pending_count = sum(
        not is_finished(
            read_json(unit_path(output, u)), prepare(benchmark, u, output)[0], any_code
        )
        for u in grid.units
    )
    trials = sum(u.kind == 'trial' for u in grid.units)
    print_fn(
        f'{benchmark.name}: {total} units = {len(benchmark.methods)} methods x {len(benchmark.folds)} folds x '
        f'{len(benchmark.seeds)} seeds'
        + (f' (+ {trials} tuning trials)' if trials else '')
        + f', {pending_count} to run -> {output} ({executor.name})'
    )
    metric = benchmark.primary_metric
    waiting = list(grid.units)
    done: set[Unit] = set()
    records: list[dict[str, Any]] = []
    counter, ran, started = 0, 0, time.perf_counter()

    def report(unit: Unit, text: str) -> None:
        nonlocal counter
        counter += 1
        print_fn(f'[{counter}/{total}] {unit.label()}: {text}')

    while waiting or executor.running():
        moved = False
        # In plan order (a unit's dependencies come before it), as many as the executor takes.
        for unit in list(waiting):
            if not all(d in done for d in grid.depends[unit]):
                continue
            if not executor.has_room():
                break
            moved = True
            waiting.remove(unit)
            settings, parameters = prepare(benchmark, unit, output)
            record = read_json(unit_path(output, unit))
            if is_finished(record, settings, any_code):
                assert record is not None
                records.append(record)
                done.add(unit)
                report(unit, 'done before, skipped')
                continue
            if parameters is None:
                assert unit.trial is not None
                parameters = suggest(
                    benchmark,
                    benchmark.method(unit.method),
                    unit.fold,
                    unit.part,
                    unit.trial,
                    output,
                )
            executor.submit(
                Job(benchmark, unit, settings, parameters, output, progress)
            )
        if not moved and not executor.running():
            msg = f'the grid is stuck: {waiting[0].label()} waits for units that never run'
            raise RuntimeError(msg)
        for unit, record in executor.completed() if executor.running() else []:
            ran += 1
            done.add(unit)
            records.append(record)
            elapsed = time.perf_counter() - started
            left = elapsed / ran * max(0, pending_count - ran)
            report(
                unit,
                f'{_outcome(record, metric)} | elapsed {elapsed / 60:.1f} min, ~{left / 60:.1f} min left',
            )
    executor.close()
    return records
