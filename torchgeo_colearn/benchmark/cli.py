# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""``colearn benchmark``: the command line of the runner."""

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence

import pandas as pd

from .config import Benchmark, load_config
from .executors import make_executor
from .grid import run_grid
from .report import write_report
from .validation import ConfigError


def subset(
    benchmark: Benchmark,
    methods: Sequence[str] | None = None,
    folds: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
) -> Benchmark:
    """Keep only some methods, folds and seeds of a benchmark.

    Args:
        benchmark: The full benchmark.
        methods: Methods to keep (a kept method's teacher is kept too), or None for all.
        folds: Test folds, or None for the config's.
        seeds: Seeds, or None for the config's.

    Returns:
        The filtered benchmark.

    Raises:
        ConfigError: If a filter names an unknown method.
    """
    kept = benchmark.methods
    if methods:
        names = {m.name for m in kept}
        if unknown := sorted(set(methods) - names):
            msg = f'--methods: unknown {unknown} (config has {sorted(names)})'
            raise ConfigError(msg)
        keep = set(methods)
        keep |= {m.teacher for m in kept if m.name in keep and m.teacher}
        kept = [m for m in kept if m.name in keep]
    return dataclasses.replace(
        benchmark,
        methods=kept,
        folds=list(folds) if folds is not None else benchmark.folds,
        seeds=list(seeds) if seeds is not None else benchmark.seeds,
    )


def parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``colearn benchmark``.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog='colearn benchmark',
        description=(
            'Run methods x folds x seeds of a benchmark config (resumable: finished runs are skipped, failed '
            'runs are recorded and retried next time; with a `tuning` section, equal-budget Optuna trials '
            'first), then write the cross-validated tables (CSV), a plot and the markdown report. The config '
            'is validated before anything runs.'
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
    parser.add_argument(
        '--executor',
        choices=['serial', 'ray'],
        default='serial',
        help='run the units one after the other (default) or as Ray tasks (pip install torchgeo-colearn[ray])',
    )
    parser.add_argument(
        '--ray-address', help="address of a running Ray cluster ('auto': the local one)"
    )
    parser.add_argument(
        '--ray-cpus', type=int, help='CPUs of a local Ray instance (default: all)'
    )
    parser.add_argument(
        '--progress',
        choices=['run', 'epoch', 'bar'],
        default='run',
        help="a line per run (default), also a line per epoch, or Lightning's progress bar",
    )
    parser.add_argument(
        '--trials',
        type=int,
        help='tune the methods that have a search_space with this many trials each (sets tuning.trials)',
    )
    parser.add_argument(
        '--any-code-version',
        action='store_true',
        help='reuse finished runs made by other package code (the report lists the code versions)',
    )
    return parser


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run ``colearn benchmark``.

    Args:
        argv: Arguments after ``benchmark``; see ``colearn benchmark --help``.

    Returns:
        The summary table (see :func:`~torchgeo_colearn.benchmark.aggregate.summarize`).
    """
    args = parser().parse_args(argv)
    try:
        tuning = {'tuning': {'trials': args.trials}} if args.trials is not None else {}
        benchmark = subset(
            load_config(args.config, tuning), args.methods, args.folds, args.seeds
        )
    except ConfigError as error:
        sys.exit(f'colearn benchmark: invalid config: {error}')
    output = args.output or os.path.join('logs', 'benchmark', benchmark.name)
    report = args.report or os.path.join('docs', 'results', f'{benchmark.name}.md')
    if not args.report_only:
        executor = make_executor(args.executor, args.ray_address, args.ray_cpus)
        run_grid(
            benchmark,
            output,
            executor,
            progress=args.progress,
            any_code=args.any_code_version,
        )
    command = 'colearn benchmark ' + shlex.join(
        list(argv) if argv is not None else sys.argv[2:]
    )
    summary = write_report(benchmark, output, report, command)
    print(f'Report written to {report}; tables in {output}')
    return summary
