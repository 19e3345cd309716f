# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""``colearn demo``: the built-in benchmark config (co-learning vs single-modality training), run by the runner."""

import argparse
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

import pandas as pd

from .benchmark.aggregate import collect
from .benchmark.config import load_config
from .benchmark.grid import run_grid
from .benchmark.report import write_report
from .benchmark.runner import Progress
from .benchmark.validation import ConfigError
from .datasets.synthetic import ModalityKind
from .metrics import TaskType, higher_is_better
from .scenarios import sort_scenario_names
from .tables import print_table, write_table

#: The demo's methods (names in the built-in config) and their columns in the comparison table.
COLUMNS = {'mdico': 'co-learned', 'single': 'trained alone'}

#: Metric of the report and the progress lines, per task type.
PRIMARY_METRIC: dict[TaskType, str] = {
    'binary': 'AverageAccuracy',
    'multiclass': 'AverageAccuracy',
    'multilabel': 'MacroF1Score',
    'regression': 'R2',
}


def config_path() -> str:
    """Return the path of the built-in benchmark config of the demo.

    Returns:
        ``torchgeo_colearn/configs/demo.yaml`` inside the installed package.
    """
    return str(files('torchgeo_colearn') / 'configs' / 'demo.yaml')


def demo_encoders(
    modalities: Mapping[str, ModalityKind], seq_len: int = 12
) -> dict[str, dict[str, Any]]:
    """Return the encoder configs the demo (and ``experiments/synthetic.yaml``) use per modality kind.

    Args:
        modalities: Modality name mapped to its kind.
        seq_len: Time steps of time-series modalities.

    Returns:
        Modality name mapped to an encoder config: a small TempCNN for time series, an MLP for vectors,
        a timm ResNet-10 for images.
    """
    configs: dict[ModalityKind, dict[str, Any]] = {
        'timeseries': {
            'name': 'tempcnn',
            'in_channels': 3,
            'seq_len': seq_len,
            'hidden_dim': 32,
            'dense_dim': 64,
        },
        'vector': {'name': 'mlp', 'in_features': 16, 'hidden_dims': [64]},
        'image': {'name': 'timm', 'model': 'resnet10t', 'in_channels': 4},
    }
    return {name: dict(configs[kind]) for name, kind in modalities.items()}


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Turn the demo's options into overrides of the built-in config.

    Args:
        args: Parsed options.

    Returns:
        A mapping deep-merged over the config.
    """
    task: TaskType = args.task
    classification = task in ('binary', 'multiclass')
    model: dict[str, Any] = {
        'task': task,
        'class_weights': 'balanced' if classification else None,
    }
    if task == 'multilabel':
        model['num_labels'] = 5
    return {
        'data': {
            'init_args': {
                'task': task,
                'num_samples': args.num_samples,
                'seed': args.seed,
            }
        },
        'model': model,
        'seeds': [args.seed],
        'trainer': {
            'max_epochs': args.max_epochs,
            'patience': args.patience,
            'accelerator': args.accelerator,
            'threads': args.threads,
        },
        'report': {'metric': PRIMARY_METRIC[task]},
    }


def comparison(scores: pd.DataFrame) -> pd.DataFrame:
    """Tabulate co-learned vs trained-alone test scores per inference modality.

    Args:
        scores: The demo's per-run scores (:func:`~torchgeo_colearn.benchmark.aggregate.collect`).

    Returns:
        Indexed by (inference modality, metric): one column per method (:data:`COLUMNS`) and ``gain``
        (co-learned minus trained alone; sign flipped when lower is better, so positive favours co-learning).
    """
    table = (
        scores[scores['method'].isin(list(COLUMNS))]
        .pivot_table(index=['scenario', 'metric'], columns='method', values='value')
        .dropna()
        .rename(columns=COLUMNS)
    )
    scenarios = sort_scenario_names(
        scores['scenario']
    )  # training order of the modalities
    table = table.reindex(sorted(table.index, key=lambda key: scenarios.index(key[0])))
    sign = [
        1.0 if higher_is_better(str(metric)) else -1.0
        for metric in table.index.get_level_values(1)
    ]
    table['gain'] = sign * (table['co-learned'] - table['trained alone'])
    table.index.names = ['inference modality', 'metric']
    table.columns.name = None
    return table[[*COLUMNS.values(), 'gain']]


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the demo: the built-in benchmark config through the benchmark runner, then the comparison.

    Args:
        argv: Arguments after ``demo``; see ``colearn demo --help``.

    Returns:
        The comparison rows: ``modality``, ``metric``, ``co-learned``, ``trained alone``, ``gain``.
    """
    parser = argparse.ArgumentParser(
        prog='colearn demo',
        description=(
            'Train a co-learning model (MDiCo) with every modality and one model per modality trained alone '
            'on the embedded synthetic multi-sensor benchmark (the built-in benchmark config '
            'torchgeo_colearn/configs/demo.yaml, run by `colearn benchmark`), then compare them per '
            'inference modality on the test fold. Finished runs of the same settings are reused.'
        ),
    )
    parser.add_argument(
        '--task',
        default='multiclass',
        choices=['binary', 'multiclass', 'multilabel', 'regression'],
    )
    parser.add_argument(
        '--output', default='logs/demo', help='folder of the runs, tables and report'
    )
    parser.add_argument('--max-epochs', type=int, default=60)
    parser.add_argument(
        '--patience', type=int, default=10, help='early stopping on the validation loss'
    )
    parser.add_argument('--num-samples', type=int, default=2000)
    parser.add_argument('--accelerator', default='auto')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help=(
            'CPU threads of torch; the demo models are small, so one thread is fastest and does not '
            'collapse when other processes share the cores'
        ),
    )
    parser.add_argument(
        '--progress',
        choices=['run', 'epoch', 'bar'],
        help="a line per run, also a line per epoch (default when the output is not a terminal), or Lightning's "
        'progress bar (default in a terminal)',
    )
    args = parser.parse_args(argv)
    try:
        benchmark = load_config(config_path(), overrides(args))
    except ConfigError as error:
        sys.exit(f'colearn demo: {error}')
    progress: Progress = args.progress or ('bar' if sys.stdout.isatty() else 'epoch')
    start = time.perf_counter()
    run_grid(benchmark, args.output, progress=progress)
    command = 'colearn demo ' + shlex.join(
        list(argv) if argv is not None else sys.argv[2:]
    )
    report = os.path.join(args.output, 'report.md')
    write_report(benchmark, args.output, report, command)
    table = comparison(collect(benchmark, args.output)[0])
    print_table(
        table, f'Synthetic benchmark ({args.task}): test scores per inference modality'
    )
    write_table(table, os.path.join(args.output, 'comparison'), {'task': args.task})
    print(
        f'Done in {time.perf_counter() - start:.0f} s. Table: {os.path.join(args.output, "comparison.csv")}; '
        f'report: {report}'
    )
    return [
        {
            'modality': str(key[0]),
            'metric': str(key[1]),
            **{str(k): v for k, v in row.items()},
        }
        for key, row in zip(table.index, table.to_dict('records'), strict=True)
    ]
