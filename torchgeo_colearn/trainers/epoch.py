# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""What a task accumulates over an epoch: the loss terms and the scenario scores of each stage."""

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..distributed import sum_across_processes
from ..metrics import ScenarioScores, TaskType
from ..scenarios import Scenario, metric_key, scenario_name

#: Training stages, each with its own loss sums and scenario scores.
STAGES = ('train', 'val', 'test')


class EpochAccumulator(nn.Module):
    """Loss sums and scenario scores per stage, accumulated on the device and computed once per epoch.

    The steps only add device tensors (no synchronisation with the host); :meth:`compute` gives the
    epoch means of the loss terms and the scenario scores, then resets the stage. With several
    processes (DDP), both cover the samples of every process: the loss sums and sample counts are
    summed over the processes, and the scores gather their predictions (torchmetrics list states).
    """

    def __init__(
        self,
        scenarios: Mapping[str, Sequence[Scenario]],
        task: TaskType,
        num_classes: int | None = None,
        num_labels: int | None = None,
    ) -> None:
        """Initialize a new EpochAccumulator instance.

        Args:
            scenarios: Stage ('train', 'val', 'test') mapped to the scenarios it scores.
            task: The task type.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
        """
        super().__init__()
        # ModuleDict keys may not shadow nn.Module attributes such as 'train'.
        self.scores = nn.ModuleDict(
            {
                f'{stage}_scores': ScenarioScores(
                    [scenario_name(s) for s in chosen], task, num_classes, num_labels
                )
                for stage, chosen in scenarios.items()
            }
        )
        self._sums: dict[str, dict[str, Tensor]] = {}
        self._counts: dict[str, int] = {}

    def stage_scores(self, stage: str) -> ScenarioScores:
        """Return the scenario scores of a stage.

        Args:
            stage: 'train', 'val' or 'test'.

        Returns:
            The accumulator of its predictions.
        """
        scores = self.scores[f'{stage}_scores']
        assert isinstance(scores, ScenarioScores)
        return scores

    def add_losses(
        self, stage: str, terms: Mapping[str, Tensor], batch_size: int
    ) -> None:
        """Add the loss terms of a batch, weighted by its size.

        Args:
            stage: 'train', 'val' or 'test'.
            terms: Term name mapped to the batch mean (scalar tensor).
            batch_size: Number of samples of the batch.
        """
        sums = self._sums.setdefault(stage, {})
        for name, value in terms.items():
            weighted = value.detach() * batch_size
            sums[name] = sums[name] + weighted if name in sums else weighted
        self._counts[stage] = self._counts.get(stage, 0) + batch_size

    def compute(
        self, stage: str, report: bool = True
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Compute the epoch means of the loss terms and the scenario scores, then reset the stage.

        Args:
            stage: 'train', 'val' or 'test'.
            report: False to reset only (e.g. after Lightning's sanity check).

        Returns:
            ``<stage>_<term>`` mapped to its epoch mean, and ``<stage>/<scenario>/<metric>`` mapped to
            its score (both empty if nothing was accumulated).
        """
        sums = self._sums.pop(stage, {})
        count = self._counts.pop(stage, 0) if report else 0
        scores = self.stage_scores(stage)
        means: dict[str, Tensor] = {}
        if count:
            # one collective for every term and the count: the means of the samples of every process
            totals = sum_across_processes(
                torch.stack(
                    [
                        *(total.float() for total in sums.values()),
                        torch.tensor(float(count), device=scores.device),
                    ]
                )
            )
            means = {
                f'{stage}_{name}': total / totals[-1]
                for name, total in zip(sums, totals)
            }
        logged: dict[str, Tensor] = {}
        if count and scores.scenarios and scores.update_count:
            logged = {
                metric_key(stage, name, metric): value
                for name, metrics in scores.compute().items()
                for metric, value in metrics.items()
            }
        scores.reset()
        return means, logged


def to_floats(values: Mapping[str, Tensor]) -> dict[str, float]:
    """Read scalar tensors back to the host with a single transfer.

    Args:
        values: Name mapped to a scalar tensor.

    Returns:
        Name mapped to a Python float.
    """
    if not values:
        return {}
    stacked = torch.stack([v.float().reshape(()) for v in values.values()]).tolist()
    return dict(zip(values, stacked, strict=True))
