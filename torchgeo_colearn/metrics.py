# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The metrics of each task type, their directions, and the scoring of inference scenarios."""

from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

import torch
from torch import Tensor
from torchmetrics import (
    MeanAbsoluteError,
    MeanSquaredError,
    Metric,
    MetricCollection,
    R2Score,
)
from torchmetrics.classification import (
    Accuracy,
    CohenKappa,
    F1Score,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)
from torchmetrics.utilities import dim_zero_cat

from .scenarios import COUNT

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


class ScenarioScores(Metric):
    """Score several inference scenarios: accumulate on the device, compute once per epoch.

    ``update`` stacks the predictions of all scenarios of a batch into one tensor and appends it, so it
    never synchronises the device with the host (torchmetrics' classification updates do: ``bincount``
    and argument checks read values back) and costs one operation whatever the number of scenarios.
    ``compute`` concatenates the batches (gathered across processes as torchmetrics list states) and runs
    the metrics of :func:`build_metrics` once per scenario, on the samples that had the scenario's
    modalities. Memory: one (N, S, K) float32 tensor for N samples, S scenarios and K classes, labels or 1.
    """

    full_state_update = False

    #: Per batch: (B, S, K) or (B, S) predictions in metric space.
    preds: list[Tensor]
    #: Per batch: (B, S) bool, whether each sample had each scenario's modalities.
    available: list[Tensor]
    #: Per batch: the (B,) or (B, L) targets.
    target: list[Tensor]

    def __init__(
        self,
        scenarios: Sequence[str],
        task: TaskType,
        num_classes: int | None = None,
        num_labels: int | None = None,
    ) -> None:
        """Initialize a new ScenarioScores instance.

        Args:
            scenarios: Scenario display names, in the order of the stacked predictions.
            task: The task type.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
        """
        super().__init__()
        self.scenarios = list(scenarios)
        self.task = task
        self.metrics = build_metrics(task, num_classes, num_labels)
        for metric in self.metrics.values(copy_state=False):
            # the predictions are gathered once, by this metric; the inner metrics must not gather again
            metric.sync_on_compute = False
        self.add_state('preds', default=[], dist_reduce_fx='cat')
        self.add_state('available', default=[], dist_reduce_fx='cat')
        self.add_state('target', default=[], dist_reduce_fx='cat')

    def update(
        self,
        predictions: Mapping[str, Tensor],
        target: Tensor,
        available: Mapping[str, Tensor] | None = None,
    ) -> None:
        """Store the predictions of a batch.

        Args:
            predictions: Scenario name mapped to its (B,) / (B, K) / (B, L) prediction as returned by
                :meth:`~torchgeo_colearn.trainers.MultiModalTask.postprocess`; every scenario of this
                metric must be given (extra ones are ignored).
            target: The ``label`` of the batch: (B,) class indices or values, or (B, L) multi-hot.
            available: Scenario name mapped to a (B,) bool mask of the samples that have the
                scenario's modalities; None (or a scenario left out) means every sample.

        Raises:
            KeyError: If a scenario has no prediction.
            ValueError: If a prediction and the target disagree on the batch size.
        """
        if missing := [s for s in self.scenarios if s not in predictions]:
            msg = f'no prediction for scenarios {missing}; got {sorted(predictions)}'
            raise KeyError(msg)
        size = target.shape[0]
        for name in self.scenarios:
            if predictions[name].shape[0] != size:
                msg = (
                    f'prediction of scenario {name!r} has shape '
                    f'{tuple(predictions[name].shape)}, target has shape {tuple(target.shape)}'
                )
                raise ValueError(msg)
        stacked = torch.stack(
            [predictions[s].detach().float() for s in self.scenarios], 1
        )
        self.preds.append(stacked)
        masks = available or {}
        everyone = torch.ones(size, dtype=torch.bool, device=stacked.device)
        self.available.append(
            torch.stack([masks.get(s, everyone) for s in self.scenarios], 1)
        )
        self.target.append(metric_target(self.task, target))

    def compute(self) -> dict[str, dict[str, Tensor]]:
        """Score every scenario.

        Returns:
            Scenario name mapped to metric name mapped to a scalar tensor, plus ``count``, the number of
            samples scored. A scenario without any sample gets NaN scores and count 0.
        """
        preds = dim_zero_cat(self.preds)
        available = dim_zero_cat(self.available)
        target = dim_zero_cat(self.target)
        scores: dict[str, dict[str, Tensor]] = {}
        for index, name in enumerate(self.scenarios):
            rows = available[:, index]
            count = rows.sum()
            self.metrics.reset()
            if bool(count):
                self.metrics.update(
                    metric_input(self.task, preds[rows, index]), target[rows]
                )
                values = dict(self.metrics.compute())
            else:
                nan = torch.full((), float('nan'), device=preds.device)
                values = {str(key): nan for key in self.metrics.keys(keep_base=True)}
            scores[name] = {**values, COUNT: count.float()}
        self.metrics.reset()
        return scores
