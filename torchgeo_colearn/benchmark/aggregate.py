# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Collect the records of a grid and compute its statistics: mean ± std, paired tests, ranks."""

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from ..metrics import higher_is_better
from ..scenarios import sort_scenario_names
from .config import Benchmark
from .records import read_json, run_path, trial_path

#: Columns of the per-run scores table (the CSV written next to each report).
SCORE_COLUMNS = ['method', 'fold', 'seed', 'scenario', 'metric', 'value']


def collect(benchmark: Benchmark, output: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the run records of the grid.

    Args:
        benchmark: The benchmark.
        output: The output folder.

    Returns:
        The scores, one row per (method, fold, seed, scenario, metric) with ``value`` (a per-modality
        method's scenario ``m`` comes from its run ``m``); and the runs, one row per (method, part, fold,
        seed) with ``status``, ``error``, ``epochs``, ``best_epoch``, ``seconds``, ``code_version``,
        ``parameters`` and ``split`` (runs without a record are 'missing').
    """
    scores: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for method in benchmark.methods:
        for fold in benchmark.folds:
            for seed in benchmark.seeds:
                for part in method.parts():
                    key = {'method': method.name, 'fold': fold, 'seed': seed}
                    record = read_json(
                        run_path(output, method.name, fold, seed, part=part)
                    )
                    if record is None:
                        runs.append({**key, 'part': part, 'status': 'missing'})
                        continue
                    runs.append(
                        {
                            **key,
                            'part': part,
                            **{
                                field: record.get(field)
                                for field in (
                                    'status',
                                    'error',
                                    'epochs',
                                    'best_epoch',
                                    'seconds',
                                    'code_version',
                                    'parameters',
                                    'split',
                                )
                            },
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
    return pd.DataFrame(scores, columns=SCORE_COLUMNS), pd.DataFrame(runs)


def collect_trials(benchmark: Benchmark, output: str) -> pd.DataFrame:
    """Read the tuning trials of the grid.

    Args:
        benchmark: The benchmark.
        output: The output folder.

    Returns:
        One row per recorded trial: ``method, part, fold, trial, status, value, parameters, seconds``.
    """
    rows: list[dict[str, Any]] = []
    if benchmark.tuning is None:
        return pd.DataFrame(rows)
    for method in benchmark.methods:
        if not method.search_space:
            continue
        for fold in benchmark.folds:
            for part in method.parts():
                for trial in range(benchmark.tuning.trials):
                    record = read_json(
                        trial_path(output, method.name, fold, trial, part)
                    )
                    if record is not None:
                        rows.append(
                            {
                                'method': method.name,
                                'part': part,
                                'fold': fold,
                                'trial': trial,
                                'status': record['status'],
                                'value': record.get('value'),
                                'parameters': record.get('parameters'),
                                'seconds': record.get('seconds'),
                            }
                        )
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Mean and standard deviation over folds and seeds per method, scenario and metric.

    Args:
        scores: Scores of :func:`collect`.
        methods: Method order.

    Returns:
        Columns ``method, scenario, metric, mean, std, n, best``; ``std`` is the sample standard deviation
        (ddof 1; NaN with one run); ``best`` marks the best mean per (scenario, metric).
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
            group['mean'].max()
            if higher_is_better(str(metric))
            else group['mean'].min()
        )
        summary.loc[group.index, 'best'] = np.isclose(group['mean'], target)
    order = {m: i for i, m in enumerate(methods)}
    summary['order'] = summary['method'].map(order)
    return summary.sort_values(['metric', 'order'], kind='stable')[columns].reset_index(
        drop=True
    )


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences.

    Args:
        differences: One difference per pair.

    Returns:
        The p-value, or NaN with fewer than two pairs or when every difference is zero.
    """
    values = np.asarray(differences, dtype=float)
    if len(values) < 2 or not np.any(values != 0):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return float(wilcoxon(values).pvalue)


def paired_comparison(
    scores: pd.DataFrame, reference: str, metric: str, methods: Sequence[str]
) -> pd.DataFrame:
    """Compare a reference method with each other method on the same fold and seed, per scenario.

    Args:
        scores: Scores of :func:`collect`.
        reference: The reference method.
        metric: The metric compared.
        methods: Method order.

    Returns:
        Columns ``scenario, method, reference_mean, method_mean, difference_mean, difference_std, wins,
        n, p_value`` for every scenario both methods predict: the difference is reference minus method,
        sign flipped when lower is better (positive favours the reference), over the (fold, seed) pairs
        both finished; ``wins`` counts the pairs where the reference is better; ``p_value`` is the
        two-sided Wilcoxon signed-rank test of the differences.
    """
    sign = 1.0 if higher_is_better(metric) else -1.0
    chosen = scores[scores['metric'] == metric]
    rows: list[dict[str, Any]] = []
    if reference not in set(chosen['method']):
        return pd.DataFrame(rows)
    table = chosen.pivot_table(
        index=['scenario', 'fold', 'seed'], columns='method', values='value'
    )
    for scenario in sort_scenario_names(chosen['scenario']):
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
                    'p_value': wilcoxon_p(difference.tolist()),
                }
            )
    return pd.DataFrame(rows)


def rank_summary(
    scores: pd.DataFrame, metric: str, methods: Sequence[str]
) -> pd.DataFrame:
    """Mean rank of each method per scenario over the (fold, seed) runs (1 = best; ties share the mean rank).

    In each run, the methods that predict the scenario and finished are ranked on *metric*.

    Args:
        scores: Scores of :func:`collect`.
        metric: The metric ranked.
        methods: Method order (the rows).

    Returns:
        Methods x scenarios (sorted) of mean ranks; NaN where a method does not predict a scenario.
    """
    chosen = scores[scores['metric'] == metric].copy()
    if chosen.empty:
        return pd.DataFrame()
    chosen['rank'] = chosen.groupby(['scenario', 'fold', 'seed'])['value'].rank(
        ascending=not higher_is_better(metric), method='average'
    )
    table = chosen.pivot_table(
        index='method', columns='scenario', values='rank', aggfunc='mean'
    )
    present = [m for m in methods if m in table.index]
    table = table.loc[present, sort_scenario_names(table.columns)]
    table.index.name = 'method'
    table.columns.name = None
    return table
