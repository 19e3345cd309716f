# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torchgeo_colearn.benchmark.estimator import (
    Estimator,
    score_predictions,
    split_arrays,
)
from torchgeo_colearn.benchmark.gbdt import GradientBoostingBaseline
from torchgeo_colearn.datamodules import SyntheticMultiSensorDataModule
from torchgeo_colearn.datamodules.lfmc import LFMCDataModule
from torchgeo_colearn.metrics import TaskType

from .common import GBDT, run, write_config

LFMC_ROOT = os.path.join('..', 'shared', 'data', 'lfmc')


def synthetic(task: TaskType, **kwargs: Any) -> SyntheticMultiSensorDataModule:
    return SyntheticMultiSensorDataModule(
        task=task,
        num_samples=300,
        modality_kinds={'s1': 'timeseries', 'dem': 'vector'},
        **kwargs,
    )


@pytest.mark.parametrize(
    ('task', 'extra', 'metrics'),
    [
        (
            'multiclass',
            {'num_classes': 4},
            {'OverallAccuracy', 'AverageAccuracy', 'F1Score', 'CohenKappa'},
        ),
        ('binary', {}, {'OverallAccuracy', 'AverageAccuracy', 'F1Score', 'CohenKappa'}),
        (
            'multilabel',
            {'num_labels': 5},
            {'MacroF1Score', 'MicroF1Score', 'AveragePrecision'},
        ),
        ('regression', {}, {'R2', 'RMSE', 'MAE'}),
    ],
)
def test_every_task_and_scenario(
    task: TaskType, extra: dict[str, Any], metrics: set[str]
) -> None:
    datamodule = synthetic(task, **extra)
    model = GradientBoostingBaseline(
        task=task,
        max_iter=30,
        min_samples_leaf=5,
        class_weights='balanced' if task != 'regression' else None,
        **extra,
    )
    assert isinstance(model, Estimator)
    model.fit(datamodule, seed=0)
    scores = model.score(datamodule, 'test')
    assert list(scores) == ['s1', 'dem', 's1+dem']
    assert all(set(values) == metrics for values in scores.values())
    summary = model.summary()
    assert summary['modalities'] == ['s1', 'dem']
    assert set(summary['iterations']) == {'s1', 'dem', 's1+dem'}


def test_learns_the_synthetic_signal_and_stops_early() -> None:
    datamodule = synthetic('regression')
    model = GradientBoostingBaseline(
        task='regression', max_iter=500, n_iter_no_change=5
    )
    model.fit(datamodule, seed=0)
    scores = model.score(datamodule, 'test')
    assert scores['s1+dem']['R2'] > 0.3
    # Early stopping on the validation split ends well before max_iter.
    assert all(n < 500 for n in model.summary()['iterations'].values())


def test_scores_are_the_tasks_metrics() -> None:
    target = torch.tensor([0.0, 1.0, 2.0, 3.0])
    scores = score_predictions('regression', {'s1': target + 0.5}, target)
    assert scores['s1']['MAE'] == pytest.approx(0.5)
    assert scores['s1']['RMSE'] == pytest.approx(0.5)


def test_invalid_steps_become_missing_values() -> None:
    datamodule = SyntheticMultiSensorDataModule(
        task='regression',
        num_samples=60,
        modality_kinds={'s1': 'timeseries', 's2': 'timeseries'},
    )
    datamodule.setup('fit')
    features, target = split_arrays(datamodule, 'train')
    assert features['s1'].shape == (len(target), 12 * 3)
    assert not np.isnan(features['s1']).any()
    # A datamodule that marks invalid steps: those steps are NaN for the trees.
    original = datamodule.on_after_batch_transfer

    def with_mask(
        batch: dict[str, torch.Tensor], index: int
    ) -> dict[str, torch.Tensor]:
        batch = original(batch, index)
        valid = torch.ones(batch['image_s1'].shape[:2], dtype=torch.bool)
        valid[:, 0] = False
        return {**batch, 'valid_s1': valid}

    datamodule.on_after_batch_transfer = with_mask  # type: ignore[method-assign, assignment]
    features, _ = split_arrays(datamodule, 'train')
    assert (
        np.isnan(features['s1'][:, :3]).all()
        and not np.isnan(features['s1'][:, 3:]).any()
    )


def test_gbdt_through_the_runner(tmp_path: Path) -> None:
    config = write_config(tmp_path, {'gbdt': GBDT}, model={'task': 'regression'})
    summary = run(config, tmp_path)
    assert set(summary['scenario']) == {'s1', 's2', 's1+s2'}
    assert (summary['n'] == 2).all()


@pytest.mark.skipif(not os.path.exists(LFMC_ROOT), reason='real LFMC data absent')
def test_lfmc_one_fold_takes_seconds() -> None:
    datamodule = LFMCDataModule(
        root=LFMC_ROOT,
        modality_groups={
            's1': ['s1', 's1_ratio'],
            'optical': ['optical', 'optical_indices'],
        },
        fold=0,
    )
    model = GradientBoostingBaseline(
        task='regression', learning_rate=0.05, n_iter_no_change=20
    )
    start = time.perf_counter()
    model.fit(datamodule, seed=0)
    scores = model.score(datamodule, 'test')
    seconds = time.perf_counter() - start
    assert scores['optical']['R2'] > 0.2 and scores['s1+optical']['R2'] > 0.2
    assert seconds < 120
