# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math
from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

from torchgeo_colearn.metrics import (
    LOWER_IS_BETTER,
    ScenarioScores,
    TaskType,
    build_metrics,
    higher_is_better,
)


def score(
    task: TaskType,
    batches: Sequence[tuple[Tensor, Tensor]],
    num_classes: int | None = None,
    num_labels: int | None = None,
) -> dict[str, float]:
    scores = ScenarioScores(['a'], task, num_classes, num_labels)
    for prediction, target in batches:
        scores.update({'a': prediction}, target)
    return {k: float(v) for k, v in scores.compute()['a'].items()}


def test_directions() -> None:
    assert not higher_is_better('RMSE') and not higher_is_better('MAE')
    assert higher_is_better('R2') and higher_is_better('F1Score')
    for task in ('binary', 'multiclass', 'multilabel', 'regression'):
        names = set(build_metrics(task, num_classes=3, num_labels=2))
        assert LOWER_IS_BETTER <= names or not LOWER_IS_BETTER & names


def test_multiclass_metrics_by_hand() -> None:
    # predictions 0 0 1 2 2 1 for targets 0 0 1 1 2 2: confusion [[2,0,0],[0,1,1],[0,1,1]]
    predicted = torch.tensor([0, 0, 1, 2, 2, 1])
    probabilities = torch.nn.functional.one_hot(predicted, 3).float() * 0.8 + 0.2 / 3
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    values = score(
        'multiclass',
        [(probabilities[:4], target[:4]), (probabilities[4:], target[4:])],
        num_classes=3,
    )
    observed = 4 / 6
    expected_agreement = (2 * 2 + 2 * 2 + 2 * 2) / 36
    assert values['OverallAccuracy'] == pytest.approx(observed)
    assert values['AverageAccuracy'] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert values['F1Score'] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert values['CohenKappa'] == pytest.approx(
        (observed - expected_agreement) / (1 - expected_agreement)
    )
    assert values['count'] == 6


def test_binary_metrics_by_hand() -> None:
    # positive-class probabilities; predicted 1 1 0 0 0 against 1 0 0 0 1: TP 1, FP 1, TN 2, FN 1
    probability = torch.tensor([0.9, 0.6, 0.2, 0.4, 0.3])
    target = torch.tensor([1, 0, 0, 0, 1])
    values = score('binary', [(probability, target)])
    recall = {0: 2 / 3, 1: 1 / 2}
    precision = {0: 2 / 3, 1: 1 / 2}
    f1 = [2 * precision[c] * recall[c] / (precision[c] + recall[c]) for c in (0, 1)]
    observed = 3 / 5
    expected_agreement = (3 / 5) * (3 / 5) + (2 / 5) * (2 / 5)
    assert values['OverallAccuracy'] == pytest.approx(observed)
    assert values['AverageAccuracy'] == pytest.approx((recall[0] + recall[1]) / 2)
    assert values['F1Score'] == pytest.approx(sum(f1) / 2)
    assert values['CohenKappa'] == pytest.approx(
        (observed - expected_agreement) / (1 - expected_agreement)
    )


def test_multilabel_metrics_by_hand() -> None:
    probability = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6], [0.3, 0.4]])
    target = torch.tensor([[1, 0], [0, 1], [0, 1], [1, 0]])
    values = score('multilabel', [(probability, target.float())], num_labels=2)
    # label 0: predicted 1 1 0 0 vs 1 0 0 1 -> TP 1, FP 1, FN 1; label 1: 0 1 1 0 vs 0 1 1 0 -> TP 2
    assert values['MacroF1Score'] == pytest.approx((0.5 + 1.0) / 2)
    assert values['MicroF1Score'] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    # AP of label 0: ranking 0.9 (+), 0.8 (-), 0.3 (+), 0.1 (-) -> (1/1 + 2/3) / 2
    # AP of label 1: ranking 0.7 (+), 0.6 (+), 0.4, 0.2 -> 1
    assert values['AveragePrecision'] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)


def test_regression_metrics_by_hand() -> None:
    prediction = torch.tensor([2.0, 4.0, 7.0, 9.0])
    target = torch.tensor([1.0, 5.0, 7.0, 11.0])
    values = score(
        'regression', [(prediction[:2], target[:2]), (prediction[2:], target[2:])]
    )
    errors = torch.tensor([1.0, -1.0, 0.0, -2.0])
    ss_res = float(errors.square().sum())
    ss_tot = float((target - target.mean()).square().sum())
    assert values['R2'] == pytest.approx(1 - ss_res / ss_tot)
    assert values['RMSE'] == pytest.approx(math.sqrt(ss_res / 4))
    assert values['MAE'] == pytest.approx(1.0)


def test_scenarios_scored_on_their_available_samples() -> None:
    scores = ScenarioScores(['a', 'b', 'c'], 'regression')
    prediction = torch.tensor([2.0, 4.0, 7.0, 9.0])
    target = torch.tensor([1.0, 5.0, 7.0, 11.0])
    available = {
        'b': torch.tensor([True, False, True, False]),
        'c': torch.zeros(4, dtype=torch.bool),
    }
    scores.update(
        {'a': prediction, 'b': prediction, 'c': prediction}, target, available
    )
    computed = scores.compute()
    assert float(computed['a']['count']) == 4 and float(computed['b']['count']) == 2
    # b: errors 1 and 0 on the samples 0 and 2 only
    assert float(computed['b']['MAE']) == pytest.approx(0.5)
    assert float(computed['c']['count']) == 0
    assert math.isnan(float(computed['c']['R2']))


def test_scores_reject_mismatched_predictions() -> None:
    scores = ScenarioScores(['a', 'b'], 'regression')
    with pytest.raises(KeyError, match="'b'"):
        scores.update({'a': torch.zeros(2)}, torch.zeros(2))
    with pytest.raises(ValueError, match="'a' has shape"):
        scores.update({'a': torch.zeros(3), 'b': torch.zeros(2)}, torch.zeros(2))


def test_update_stacks_the_scenarios() -> None:
    scores = ScenarioScores(['a', 'b', 'c'], 'multiclass', num_classes=4)
    probabilities = torch.rand(5, 4).softmax(-1)
    scores.update(dict.fromkeys('abc', probabilities), torch.zeros(5, dtype=torch.long))
    assert len(scores.preds) == 1 and scores.preds[0].shape == (5, 3, 4)
