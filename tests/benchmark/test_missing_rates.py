# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The synthetic benchmark with samples that lack s2, through the benchmark runner (slow)."""

from pathlib import Path

import pytest
import yaml

from .common import run


@pytest.mark.slow
@pytest.mark.parametrize('rate', ['30', '60'])
def test_co_learning_with_gaps_learns_every_sensor(tmp_path: Path, rate: str) -> None:
    """MDiCo and each sensor alone on fold 0 of experiments/benchmarks/synthetic_missing_s2_<rate>.

    The committed 5-fold x 2-seed reports (docs/results/synthetic_missing.md) give the comparison;
    on one fold this checks that training with gaps learns every sensor and that co-learning is on
    par with training each sensor alone on average over the sensors (it does not beat the static
    `dem` sensor alone on this benchmark, with or without gaps).
    """
    config = yaml.safe_load(
        Path(f'experiments/benchmarks/synthetic_missing_s2_{rate}.yaml').read_text()
    )
    config['folds'], config['seeds'] = [0], [0]
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    summary = run(str(path), tmp_path)
    scores = summary[summary['metric'] == 'AverageAccuracy'].set_index(
        ['method', 'scenario']
    )['mean']
    sensors = ['s1', 's2', 'dem']
    # chance is 0.25 (4 balanced classes)
    assert all(scores['mdico', s] > 0.6 and scores['single', s] > 0.6 for s in sensors)
    together = sum(scores['mdico', s] for s in sensors) / 3
    alone = sum(scores['single', s] for s in sensors) / 3
    assert together > alone - 0.03
