# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Equal-budget hyper-parameter tuning with Optuna, one resumable JSON record per trial.

Protocol (nested, leak-free): for each outer fold, each tuned method (and each part of a per-modality
method) gets the same number of trials. A trial trains on the fold's training split with early stopping on
its validation split and is scored on that validation split only; the test fold is never seen. The best
trial's parameters are then retrained with every seed and scored on the test fold. Trial t samples with a
TPE sampler seeded with ``tuning.seed + t`` after replaying the finished trials 0..t-1 from their records,
so an interrupted study resumes where it stopped and samples what an uninterrupted one would.
"""

import importlib
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

from ..metrics import higher_is_better
from ..scenarios import parse_scenario
from .config import Benchmark, Method
from .records import read_json, trial_path


def import_optuna() -> ModuleType:
    """Import Optuna, an optional dependency.

    Returns:
        The ``optuna`` module.

    Raises:
        ImportError: If it is not installed; the message says how to install it.
    """
    try:
        return importlib.import_module('optuna')
    except ImportError as error:
        msg = 'tuning needs Optuna: pip install "torchgeo-colearn[tune]"'
        raise ImportError(msg) from error


def distributions(method: Method) -> dict[str, Any]:
    """Turn a method's search space into Optuna distributions.

    Args:
        method: A method with a search space (validated by the config loader).

    Returns:
        Parameter path mapped to its ``optuna.distributions`` object.
    """
    kinds = import_optuna().distributions
    result: dict[str, Any] = {}
    for path, spec in method.search_space.items():
        match spec['type']:
            case 'float':
                result[path] = kinds.FloatDistribution(
                    spec['low'], spec['high'], log=spec['log']
                )
            case 'int':
                result[path] = kinds.IntDistribution(
                    spec['low'], spec['high'], log=spec['log']
                )
            case 'categorical':
                result[path] = kinds.CategoricalDistribution(spec['choices'])
    return result


def objective(record: Mapping[str, Any], metric: str) -> float:
    """Return a trial's objective: the mean validation *metric* over its single-modality scenarios.

    Args:
        record: A finished trial's record (``results`` and ``modalities``).
        metric: The metric.

    Returns:
        The mean over the scenarios of one modality.

    Raises:
        KeyError: If no single-modality scenario reports *metric*.
    """
    modalities = record['modalities']
    values = [
        metrics[metric]
        for name, metrics in record['results'].items()
        if len(parse_scenario(name, modalities)) == 1 and metric in metrics
    ]
    if not values:
        msg = f'no single-modality validation score {metric!r} in {sorted(record["results"])}'
        raise KeyError(msg)
    return float(sum(values) / len(values))


def trial_records(
    output: str, method: str, fold: int, part: str | None, trials: int
) -> list[dict[str, Any] | None]:
    """Read the records of a study's trials.

    Args:
        output: The benchmark output folder.
        method: Method name.
        fold: Outer fold.
        part: Modality of a per-modality method, or None.
        trials: Number of trials to read.

    Returns:
        One record (or None when missing) per trial number.
    """
    return [read_json(trial_path(output, method, fold, t, part)) for t in range(trials)]


def suggest(
    benchmark: Benchmark,
    method: Method,
    fold: int,
    part: str | None,
    trial: int,
    output: str,
) -> dict[str, Any]:
    """Sample the parameters of a trial, given the finished trials before it.

    Args:
        benchmark: The benchmark (with tuning settings).
        method: The tuned method.
        fold: Outer fold.
        part: Modality of a per-modality method, or None.
        trial: The trial number.
        output: The benchmark output folder.

    Returns:
        Parameter path mapped to value.
    """
    assert benchmark.tuning is not None
    optuna = import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = distributions(method)
    direction: Literal['maximize', 'minimize'] = (
        'maximize' if higher_is_better(benchmark.tuning.metric) else 'minimize'
    )
    study = optuna.create_study(
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=benchmark.tuning.seed + trial),
    )
    for record in trial_records(output, method.name, fold, part, trial):
        if record is None or record.get('parameters', {}).keys() != space.keys():
            continue
        ok = record['status'] == 'ok'
        study.add_trial(
            optuna.trial.create_trial(
                params=record['parameters'],
                distributions=space,
                value=record['value'] if ok else None,
                state=optuna.trial.TrialState.COMPLETE
                if ok
                else optuna.trial.TrialState.FAIL,
            )
        )
    params: dict[str, Any] = study.ask(space).params
    return params


def best_trial(
    records: Sequence[Mapping[str, Any] | None], metric: str
) -> Mapping[str, Any] | None:
    """Return the best finished trial.

    Args:
        records: A study's trial records.
        metric: The tuning metric (its direction decides).

    Returns:
        The finished trial with the best value (the earliest on ties), or None if none finished.
    """
    finished = [r for r in records if r is not None and r.get('status') == 'ok']
    if not finished:
        return None
    sign = 1.0 if higher_is_better(metric) else -1.0
    return max(finished, key=lambda r: (sign * r['value'], -r['trial']))
