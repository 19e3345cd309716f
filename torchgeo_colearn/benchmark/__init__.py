# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""``colearn benchmark``: methods x folds x seeds, tuning, cross-validated tables, statistics and reports."""

from .aggregate import collect, paired_comparison, rank_summary, summarize
from .cli import main, subset
from .config import Benchmark, Method, deep_merge, load_config, parse_config
from .estimator import Estimator
from .gbdt import GradientBoostingBaseline
from .grid import plan, run_grid
from .records import Unit, run_path, trial_path
from .report import write_report
from .validation import ConfigError

__all__ = (
    'Benchmark',
    'ConfigError',
    'Estimator',
    'GradientBoostingBaseline',
    'Method',
    'Unit',
    'collect',
    'deep_merge',
    'load_config',
    'main',
    'paired_comparison',
    'parse_config',
    'plan',
    'rank_summary',
    'run_grid',
    'run_path',
    'subset',
    'summarize',
    'trial_path',
    'write_report',
)
