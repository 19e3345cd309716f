# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Methods of the benchmark that are not Lightning tasks: their interface, inputs and scoring."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from ..batch import image_key, modalities_in, present_key, valid_key
from ..metrics import TaskType, build_metrics, metric_input, metric_target

#: A datamodule split scored by an estimator.
Split: TypeAlias = Literal['train', 'val', 'test']


@runtime_checkable
class Estimator(Protocol):
    """A benchmark method that trains outside Lightning (e.g. gradient-boosted trees).

    The runner builds it from the method's ``init_args``, gives it the run's datamodule (same folds and
    normalisation as every other method) and records what :meth:`score` returns like a task's test scores.
    """

    def fit(self, datamodule: LightningDataModule, seed: int) -> None:
        """Train on the training split, early-stopping on the validation split.

        Args:
            datamodule: The run's datamodule (not set up yet).
            seed: The training seed.
        """

    def score(
        self, datamodule: LightningDataModule, split: Split
    ) -> dict[str, dict[str, float]]:
        """Score every inference scenario on a split.

        Args:
            datamodule: The datamodule given to :meth:`fit`.
            split: 'val' or 'test'.

        Returns:
            Scenario name mapped to metric name mapped to value.
        """

    def summary(self) -> dict[str, Any]:
        """Return what the run record keeps about the training (e.g. iterations).

        Returns:
            JSON-serialisable facts.
        """


def split_arrays(
    datamodule: LightningDataModule, split: Split
) -> tuple[dict[str, np.ndarray], Tensor]:
    """Return a split's normalised inputs, flattened per modality, and its targets.

    The batches go through the datamodule's own normalisation (``on_after_batch_transfer`` outside
    training, so without augmentation). Time steps marked invalid by a ``valid_<modality>`` mask become NaN,
    so that estimators with native missing-value handling see them as missing rather than as zeros, and
    so do all the values of a sample that lacks the modality (``present_<modality>`` False): such a
    sample's row is all NaN (:func:`holding`).

    Args:
        datamodule: A set-up datamodule.
        split: 'train', 'val' or 'test'.

    Returns:
        Modality mapped to (N, F) float32 features, and the (N, ...) targets.

    Raises:
        RuntimeError: If the datamodule has no such split.
    """
    dataset = getattr(datamodule, f'{split}_dataset', None)
    if dataset is None:
        msg = f'{type(datamodule).__name__} has no {split} split'
        raise RuntimeError(msg)
    loader = DataLoader(
        dataset,
        batch_size=max(256, getattr(datamodule, 'batch_size', 1)),
        collate_fn=getattr(datamodule, 'collate_fn', None),
    )
    features: dict[str, list[np.ndarray]] = {}
    targets: list[Tensor] = []
    for raw in loader:
        batch = datamodule.on_after_batch_transfer(raw, 0)
        for modality in modalities_in(batch):
            x = batch[image_key(modality)].float()
            valid = batch.get(valid_key(modality))
            if valid is not None:
                mask = valid.bool().reshape(
                    *valid.shape, *([1] * (x.ndim - valid.ndim))
                )
                x = x.masked_fill(~mask, float('nan'))
            present = batch.get(present_key(modality))
            if present is not None:
                x = x.masked_fill(~present.view(-1, *[1] * (x.ndim - 1)), float('nan'))
            features.setdefault(modality, []).append(x.flatten(1).numpy())
        targets.append(batch['label'])
    return {m: np.concatenate(chunks) for m, chunks in features.items()}, torch.cat(
        targets
    )


def holding(
    features: Mapping[str, np.ndarray], modalities: Sequence[str]
) -> np.ndarray:
    """Return the samples of a split that hold every modality of a set.

    Args:
        features: Output of :func:`split_arrays`.
        modalities: Modality names, e.g. a scenario.

    Returns:
        (N,) bool: True where no modality's row is all NaN (a sample that lacks it).
    """
    rows = np.ones(len(next(iter(features.values()))), dtype=bool)
    for modality in modalities:
        rows &= ~np.isnan(features[modality]).all(1)
    return rows


def score_predictions(
    task: TaskType,
    predictions: Mapping[str, Tensor],
    target: Tensor,
    num_classes: int | None = None,
    num_labels: int | None = None,
) -> dict[str, dict[str, float]]:
    """Score predictions with the metrics every task reports (:func:`~torchgeo_colearn.metrics.build_metrics`).

    Args:
        task: The task type.
        predictions: Scenario name mapped to predictions as a task returns them: probability of the
            positive class (N,) (binary), class probabilities (N, K), label probabilities (N, L), or values
            in target units (N,).
        target: The (N, ...) targets.
        num_classes: Number of classes (multiclass).
        num_labels: Number of labels (multilabel).

    Returns:
        Scenario name mapped to metric name mapped to value.
    """
    scores: dict[str, dict[str, float]] = {}
    for scenario, prediction in predictions.items():
        metrics = build_metrics(task, num_classes, num_labels)
        metrics.update(
            metric_input(task, prediction.float()), metric_target(task, target)
        )
        scores[scenario] = {
            name: float(value) for name, value in metrics.compute().items()
        }
    return scores
