# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The metrics reported for each task type, shared by the tasks and the evaluation callback."""

from typing import Literal, TypeAlias

import torch
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import (
    Accuracy,
    CohenKappa,
    F1Score,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)

#: The supported prediction tasks.
TaskType: TypeAlias = Literal['binary', 'multiclass', 'multilabel', 'regression']

#: Metrics of :func:`build_metrics` for which lower is better; every other metric is better when higher.
LOWER_IS_BETTER = frozenset({'RMSE', 'MAE'})


def higher_is_better(metric: str) -> bool:
    """Tell the direction of a metric.

    Args:
        metric: Metric name, as in :func:`build_metrics` (e.g. 'R2', 'RMSE').

    Returns:
        False for error metrics (:data:`LOWER_IS_BETTER`), True otherwise.
    """
    return metric not in LOWER_IS_BETTER


def build_metrics(
    task: TaskType, num_classes: int | None = None, num_labels: int | None = None
) -> MetricCollection:
    """Build the metric collection of a task type.

    ============  ===============================================================
    task          metrics (names)
    ============  ===============================================================
    binary        as multiclass, with two classes
    multiclass    OverallAccuracy, AverageAccuracy, F1Score (macro), CohenKappa
    multilabel    MacroF1Score, MicroF1Score, AveragePrecision (macro, i.e. mAP)
    regression    R2, RMSE, MAE
    ============  ===============================================================

    Classification metrics take probabilities (multi-class: (B, K), binary: (B, 2) from
    :func:`metric_input`, multi-label: (B, L)) and integer or multi-hot targets; regression metrics take
    predictions and targets in target units.

    Args:
        task: The task type.
        num_classes: Number of classes (multiclass).
        num_labels: Number of labels (multilabel).

    Returns:
        An unprefixed metric collection.

    Raises:
        ValueError: If the class or label count a task needs is missing.
    """
    if task == 'binary':
        task, num_classes = 'multiclass', 2
    match task:
        case 'multiclass':
            if num_classes is None:
                raise ValueError("task='multiclass' needs num_classes")
            return MetricCollection(
                {
                    'OverallAccuracy': Accuracy(
                        task='multiclass', num_classes=num_classes, average='micro'
                    ),
                    'AverageAccuracy': Accuracy(
                        task='multiclass', num_classes=num_classes, average='macro'
                    ),
                    'F1Score': F1Score(
                        task='multiclass', num_classes=num_classes, average='macro'
                    ),
                    'CohenKappa': CohenKappa(
                        task='multiclass', num_classes=num_classes
                    ),
                }
            )
        case 'multilabel':
            if num_labels is None:
                raise ValueError("task='multilabel' needs num_labels")
            return MetricCollection(
                {
                    'MacroF1Score': MultilabelF1Score(
                        num_labels=num_labels, average='macro'
                    ),
                    'MicroF1Score': MultilabelF1Score(
                        num_labels=num_labels, average='micro'
                    ),
                    'AveragePrecision': MultilabelAveragePrecision(
                        num_labels=num_labels, average='macro'
                    ),
                }
            )
        case 'regression':
            return MetricCollection(
                {
                    'R2': R2Score(),
                    'RMSE': MeanSquaredError(squared=False),
                    'MAE': MeanAbsoluteError(),
                }
            )


def metric_input(task: TaskType, prediction: Tensor) -> Tensor:
    """Shape a prediction for the metrics of :func:`build_metrics`.

    Args:
        task: The task type.
        prediction: Probabilities or values as returned by a task: (B,) for binary (probability of the
            positive class) and regression, (B, K) for multi-class, (B, L) for multi-label.

    Returns:
        (B, 2) class probabilities for binary; *prediction* unchanged otherwise.
    """
    if task == 'binary':
        return torch.stack([1 - prediction, prediction], dim=-1)
    return prediction


def metric_target(task: TaskType, target: Tensor) -> Tensor:
    """Shape a target for the metrics of :func:`build_metrics`.

    Args:
        task: The task type.
        target: Batch targets: class indices, multi-hot labels (any dtype) or values.

    Returns:
        int64 targets for classification tasks, float32 values for regression.
    """
    return target.float() if task == 'regression' else target.long()
