# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The generated markdown report of a benchmark, its per-run scores CSV and its figure."""

import datetime
import math
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..metrics import higher_is_better
from ..scenarios import sort_scenario_names
from ..tables import markdown_table
from ..trainers.base import MultiModalTask
from .aggregate import (
    collect,
    collect_trials,
    paired_comparison,
    rank_summary,
    summarize,
)
from .config import Benchmark
from .grid import tuned
from .plot import plot_summary
from .validation import import_class


def _mean_std(mean: float, std: float, digits: int = 3) -> str:
    """Format ``mean ± std`` (just the mean when the std is undefined).

    Args:
        mean: The mean.
        std: The sample standard deviation (NaN with one value).
        digits: Digits after the decimal point.

    Returns:
        The text.
    """
    return (
        f'{mean:.{digits}f}'
        if math.isnan(std)
        else f'{mean:.{digits}f} ± {std:.{digits}f}'
    )


def _p_value(p: float) -> str:
    """Format a p-value.

    Args:
        p: The p-value (NaN when undefined).

    Returns:
        E.g. '0.017', '<0.001' or '-'.
    """
    if math.isnan(p):
        return '-'
    return '<0.001' if p < 0.001 else f'{p:.3f}'


def split_description(benchmark: Benchmark) -> str:
    """Describe the cross-validation split from the datamodule's arguments.

    Args:
        benchmark: The benchmark.

    Returns:
        One sentence: sample-level or grouped k-fold, the fold seed and where validation comes from.
    """
    args = benchmark.data['init_args']
    folds = args.get('num_folds', 'k')
    group = args.get('group_by')
    kind = (
        f'{folds}-fold cross-validation grouped by `{group}` (whole groups are held out together'
        + (f', blocks of {args["block_size"]}' if 'block_size' in args else '')
        + ')'
        if group
        else f'{folds}-fold cross-validation at sample level (random folds)'
    )
    seed = f', fold seed {args["seed"]}' if 'seed' in args else ''
    validation = (
        "validation on the test fold (`val_is_test`, the authors' protocol)"
        if args.get('val_is_test')
        else 'validation on the next fold, carved from the training folds'
    )
    return f'Split: {kind}{seed}; {validation}.'


def methods_table(benchmark: Benchmark) -> str:
    """Tabulate how each method is trained.

    Args:
        benchmark: The benchmark.

    Returns:
        Markdown table: method, class, training (joint, or one run per modality), teacher, tuning.
    """
    rows = []
    for method in benchmark.methods:
        cls = import_class(method.class_path)
        if method.per_modality:
            training = (
                'one run per modality on that modality alone (own early stopping and best checkpoint on '
                'its own validation loss)'
            )
        elif issubclass(cls, MultiModalTask):
            training = 'one run with every modality'
        else:
            training = (cls.__doc__ or '').strip().splitlines()[0]
        overrides = ', '.join(
            f'{key} {value}'
            for key, value in method.trainer.items()
            if benchmark.trainer.get(key) != value
        ) + ''.join(
            f', {key} {value}'
            for key, value in method.runner.items()
            if benchmark.runner.get(key) != value
        )
        rows.append(
            {
                'method': f'`{method.name}`',
                'class': f'`{method.class_path.rpartition(".")[2]}`',
                'training': training,
                'teacher': method.teacher or '',
                'own trainer settings': overrides.strip(', '),
                'tuned': (
                    f'{benchmark.tuning.trials} trials: '
                    + ', '.join(f'`{p}`' for p in method.search_space)
                    if tuned(benchmark, method) and benchmark.tuning is not None
                    else ''
                ),
            }
        )
    return markdown_table(pd.DataFrame(rows), index=False)


def results_tables(
    summary: pd.DataFrame,
    methods: Sequence[str],
    expected: int,
    failed: Sequence[str],
    first: str | None,
) -> str:
    """One table per metric: methods x scenarios, mean ± std, best per scenario in bold.

    Args:
        summary: Summary of :func:`~torchgeo_colearn.benchmark.aggregate.summarize`.
        methods: Method order.
        expected: Runs per method of the grid (folds x seeds); cells with fewer say ``(n=k)``.
        failed: Methods without any finished run but with failed ones; their cells say 'failed'.
        first: Metric whose table comes first.

    Returns:
        Markdown text.
    """
    if summary.empty:
        return 'No finished run.\n'
    metrics = list(dict.fromkeys(summary['metric']))
    if first in metrics:
        metrics.remove(first)
        metrics.insert(0, first)
    parts = []
    for metric in metrics:
        rows = summary[summary['metric'] == metric]
        scenarios = sort_scenario_names(rows['scenario'])
        shown = [m for m in methods if m in set(rows['method']) or m in failed]
        cells = pd.DataFrame(
            '-', index=pd.Index(shown, name='method'), columns=scenarios
        )
        bold = pd.DataFrame(False, index=cells.index, columns=scenarios)
        for method in failed:
            if method in cells.index:
                cells.loc[method] = 'failed'
        for row in rows.itertuples():
            text = _mean_std(float(row.mean), float(row.std))
            cells.loc[row.method, row.scenario] = (
                text if row.n == expected else f'{text} (n={row.n})'
            )
            bold.loc[row.method, row.scenario] = bool(row.best)
        direction = 'higher' if higher_is_better(str(metric)) else 'lower'
        parts.append(
            f'### {metric} ({direction} is better)\n\n'
            + markdown_table(cells, bold=bold)
        )
    return '\n'.join(parts)


def comparison_markdown(comparison: pd.DataFrame, reference: str, metric: str) -> str:
    """Render the paired comparison.

    Args:
        comparison: Output of :func:`~torchgeo_colearn.benchmark.aggregate.paired_comparison`.
        reference: The reference method.
        metric: The metric compared.

    Returns:
        Markdown text.
    """
    if comparison.empty:
        return f'No run where {reference} and another method both finished.\n'
    flipped = '' if higher_is_better(metric) else 'sign flipped: lower is better, so '
    table = pd.DataFrame(
        {
            'scenario': comparison['scenario'],
            'method': comparison['method'],
            reference: comparison['reference_mean'].map(lambda v: f'{v:.3f}'),
            'method mean': comparison['method_mean'].map(lambda v: f'{v:.3f}'),
            'difference': [
                f'{m:+.3f}' + ('' if math.isnan(s) else f' ± {s:.3f}')
                for m, s in zip(
                    comparison['difference_mean'], comparison['difference_std']
                )
            ],
            'wins': [f'{w}/{n}' for w, n in zip(comparison['wins'], comparison['n'])],
            'Wilcoxon p': comparison['p_value'].map(_p_value),
        }
    )
    return (
        f'Difference = {reference} minus the method on the same fold and seed ({flipped}positive favours '
        f'{reference}), mean ± std over the pairs; wins = pairs where {reference} is better; p = two-sided '
        'Wilcoxon signed-rank test of the paired differences (scipy).\n\n'
        + markdown_table(table, index=False)
    )


def split_sizes(runs: pd.DataFrame) -> str:
    """Tabulate the groups and samples of each split per fold, when the datamodule describes them.

    Args:
        runs: Runs of :func:`~torchgeo_colearn.benchmark.aggregate.collect`, whose ``split`` column
            holds what the datamodule's ``split_summary()`` returned (``{'train': {'groups': g,
            'samples': n}, 'val': ..., 'test': ...}``).

    Returns:
        A markdown table (one row per fold: groups, then samples, of train, val and test), or '' when
        no run recorded a summary.
    """
    if 'split' not in runs:
        return ''
    rows = []
    for fold, group in runs.groupby('fold'):
        summary = next((s for s in group['split'] if isinstance(s, dict)), None)
        if summary is None:
            continue
        parts = [
            p for p in ('train', 'val', 'test') if isinstance(summary.get(p), dict)
        ]
        rows.append(
            {'fold': fold}
            | {
                f'{kind} {part}': summary[part].get(kind)
                for kind in ('groups', 'samples')
                for part in parts
            }
        )
    if not rows:
        return ''
    return markdown_table(pd.DataFrame(rows).set_index('fold'), digits=0)


def tuning_markdown(
    benchmark: Benchmark, trials: pd.DataFrame, runs: pd.DataFrame
) -> str:
    """Describe the tuning: the protocol, the trials done and the parameters retrained per fold.

    Args:
        benchmark: The benchmark (with tuning settings).
        trials: Trials of :func:`~torchgeo_colearn.benchmark.aggregate.collect_trials`.
        runs: Runs of :func:`~torchgeo_colearn.benchmark.aggregate.collect`.

    Returns:
        Markdown text.
    """
    assert benchmark.tuning is not None
    lines = [
        (
            f'Each tuned method (and each modality of a per-modality method) gets {benchmark.tuning.trials} '
            "Optuna trials (TPE) per outer fold. A trial trains on the fold's training split, early-stops on its "
            f'validation split and is scored there only: the objective is the mean validation '
            f'{benchmark.tuning.metric} over the single-modality scenarios. The test fold is never used for '
            "tuning. The best trial's parameters are retrained with every seed and scored on the test fold."
        ),
        '',
    ]
    if not trials.empty:
        done = trials.groupby('method').agg(
            trials=('trial', 'size'),
            failed=('status', lambda s: int((s != 'ok').sum())),
            hours=('seconds', lambda s: s.sum() / 3600),
        )
        lines += [markdown_table(done, digits=2), '']
    chosen = (
        runs[runs['parameters'].map(lambda p: isinstance(p, dict) and bool(p))]
        if 'parameters' in runs
        else runs
    )
    if not chosen.empty:
        table = chosen.drop_duplicates(['method', 'part', 'fold'])[
            ['method', 'part', 'fold', 'parameters']
        ]
        table = table.assign(
            part=table['part'].fillna(''),
            parameters=table['parameters'].map(
                lambda p: ', '.join(f'{k}={_short(v)}' for k, v in p.items())
            ),
        )
        lines += [
            'Parameters retrained per fold:',
            '',
            markdown_table(table, index=False),
        ]
    return '\n'.join(lines) + '\n'


def _short(value: Any) -> str:
    """Format a parameter value compactly.

    Args:
        value: The value.

    Returns:
        Floats with 4 significant digits, others as they are.
    """
    return f'{value:.4g}' if isinstance(value, float) else str(value)


def runs_markdown(runs: pd.DataFrame, methods: Sequence[str]) -> str:
    """Per-method run status: finished, failed (with the first error), epochs, time and code versions.

    Args:
        runs: Runs of :func:`~torchgeo_colearn.benchmark.aggregate.collect`.
        methods: Method order.

    Returns:
        Markdown text.
    """
    rows = []
    for method in methods:
        chosen = runs[runs['method'] == method]
        ok = chosen[chosen['status'] == 'ok']
        failed = chosen[chosen['status'] == 'failed']

        def mean_of(column: str, frame: pd.DataFrame = ok) -> float | None:
            if frame.empty or column not in frame or frame[column].isna().all():
                return None
            return float(frame[column].mean())

        seconds = mean_of('seconds')
        rows.append(
            {
                'method': method,
                'finished': len(ok),
                'failed': len(failed),
                'missing': int((chosen['status'] == 'missing').sum()),
                'epochs (mean)': mean_of('epochs'),
                'best epoch (mean)': mean_of('best_epoch'),
                'minutes per run': None if seconds is None else seconds / 60,
                'first error': ''
                if failed.empty
                else str(failed['error'].iloc[0]).replace('|', '\\|')[:200],
            }
        )
    text = markdown_table(pd.DataFrame(rows), digits=1, index=False)
    if 'code_version' in runs:
        versions = runs.loc[runs['status'] == 'ok', 'code_version'].fillna(
            'not recorded'
        )
        counts = ', '.join(
            f'`{v}` ({n} runs)' for v, n in versions.value_counts().items()
        )
        text += f'\nCode (`git describe --always --dirty` of the package checkout): {counts}.\n'
    return text


def write_report(
    benchmark: Benchmark, output: str, report: str, command: str
) -> pd.DataFrame:
    """Aggregate the runs: CSV tables, figure and the whole markdown report.

    Writes ``<output>/scores.csv`` (every run's scores), ``<output>/summary.csv`` (mean, std, n, best),
    ``<output>/comparison.csv``, ``<output>/ranks.csv``, the per-run scores next to the report
    (``<report stem>_scores.csv``: method, fold, seed, scenario, metric, value), the figure
    (``<report stem>.png``) and the report.

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
    stem = os.path.splitext(report)[0]
    os.makedirs(os.path.dirname(report) or '.', exist_ok=True)
    scores.to_csv(os.path.join(output, 'scores.csv'), index=False)
    scores.to_csv(f'{stem}_scores.csv', index=False)
    summary.to_csv(os.path.join(output, 'summary.csv'), index=False)
    metric = benchmark.primary_metric or (
        str(summary['metric'].iloc[0]) if not summary.empty else None
    )
    per_modality = [f'`{m.name}`' for m in benchmark.methods if m.per_modality]
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
        '## Protocol',
        '',
        split_description(benchmark),
        '',
        (
            f'{len(benchmark.folds)} test folds ({", ".join(map(str, benchmark.folds))}) x '
            f'{len(benchmark.seeds)} seed(s) ({", ".join(map(str, benchmark.seeds))}). Each run trains with '
            f'early stopping on the validation loss (patience {benchmark.runner["patience"]}, min_delta '
            f'{benchmark.runner["min_delta"]}, at most {benchmark.trainer.get("max_epochs")} epochs), reloads '
            'the best checkpoint and scores the test fold in every inference scenario of the method (single '
            'modalities; modality subsets for methods that fuse). '
            + (
                f'{", ".join(per_modality)}: one model per modality, each trained, early-stopped and '
                'checkpointed on its own (datamodule and encoders restricted to that modality), as a user '
                'training on that sensor alone would; scenario `m` is scored by the run of modality `m`. '
                if per_modality
                else ''
            )
            + 'Cells: mean ± sample standard deviation over the runs; **bold** = best mean of the scenario; '
            '`(n=k)` = only k runs finished; - = the method cannot predict that scenario.'
        ),
        '',
        methods_table(benchmark),
    ]
    sizes = split_sizes(runs)
    if sizes:
        sections += [
            'Samples (and groups) per split, as the datamodule reports them:',
            '',
            sizes,
        ]
    if benchmark.tuning is not None:
        sections += [
            '## Tuning',
            '',
            tuning_markdown(benchmark, collect_trials(benchmark, output), runs),
        ]
    failed = sorted(
        set(runs.loc[runs['status'] == 'failed', 'method']) - set(summary['method'])
    )
    expected = len(benchmark.folds) * len(benchmark.seeds)
    sections += [
        '## Results',
        '',
        results_tables(summary, methods, expected, failed, metric),
    ]
    if metric is not None and not summary.empty:
        plot_summary(
            summary, metric, methods, f'{stem}.png', f'{benchmark.title}: {metric}'
        )
        sections += [
            f'![{metric} per inference scenario]({os.path.basename(stem)}.png)',
            '',
        ]
    if metric is not None and not scores.empty:
        ranks = rank_summary(scores, metric, methods)
        ranks.to_csv(os.path.join(output, 'ranks.csv'))
        best = ranks.eq(ranks.min()).astype(bool)
        sections += [
            f'## Mean rank per scenario ({metric}; 1 = best, over folds x seeds)',
            '',
            markdown_table(ranks, digits=2, bold=best),
        ]
        if benchmark.reference is not None:
            comparison = paired_comparison(scores, benchmark.reference, metric, methods)
            comparison.to_csv(os.path.join(output, 'comparison.csv'), index=False)
            sections += [
                f'## {benchmark.reference} vs each method, run by run ({metric})',
                '',
                comparison_markdown(comparison, benchmark.reference, metric),
            ]
    if benchmark.discussion.strip():
        sections += ['## Discussion', '', benchmark.discussion.strip(), '']
    sections += [
        '## Runs',
        '',
        runs_markdown(runs, methods),
        f'Per-run scores (method, fold, seed, scenario, metric, value): `{os.path.basename(stem)}_scores.csv`.',
        '',
        '## Config',
        '',
        f'`{benchmark.path}`:',
        '',
        f'```yaml\n{benchmark.text.rstrip()}\n```',
        '',
    ]
    with open(report, 'w') as file:
        file.write('\n'.join(sections))
    return summary
