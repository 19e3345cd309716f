# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Ensemble of independent single-modality models: several modalities average their predictions."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import torch
from torch import Tensor

from ..metrics import TaskType
from .base import OptimizerName, Scenario, SchedulerName
from .single import SingleModalityTask

#: What the ensemble averages.
Averaging: TypeAlias = Literal['probabilities', 'logits']


class EnsembleTask(SingleModalityTask):
    """Single-modality models trained alone (as :class:`SingleModalityTask`), fused at decision level.

    Training is exactly that of :class:`SingleModalityTask`. A scenario with several modalities averages
    the predictions of their models: the probabilities (default; class probabilities for multiclass,
    sigmoid outputs for binary and multilabel) or the raw logits; regression averages the predicted
    values either way. Single-modality scenarios are those of the single-modality models.
    """

    supports_fusion = True

    def __init__(
        self,
        encoders: dict[str, dict[str, Any]],
        task: TaskType = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        embed_dim: int = 64,
        average: Averaging = 'probabilities',
        head_hidden_dim: int | None = None,
        class_weights: Sequence[float] | Literal['balanced'] | None = None,
        target_mean: float | None = None,
        target_std: float | None = None,
        lr: float = 1e-3,
        patience: int = 10,
        optimizer: OptimizerName = 'adam',
        scheduler: SchedulerName = 'plateau',
        weight_decay: float = 0.0,
    ) -> None:
        """Initialize a new EnsembleTask instance.

        Args:
            encoders: Modality name mapped to its encoder config (see
                :class:`~torchgeo_colearn.CoLearnTask`); one model per entry.
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            embed_dim: Half the encoder output size (the encoder outputs 2 x embed_dim).
            average: Average the 'probabilities' or the 'logits' of the models.
            head_hidden_dim: Hidden width of the heads, or None for linear heads.
            class_weights: Class weights: a list, 'balanced' (from the datamodule), or None.
            target_mean: Regression target mean; None takes it from the datamodule.
            target_std: Regression target standard deviation; None takes it from the datamodule.
            lr: Learning rate.
            patience: Patience of the 'plateau' learning-rate schedule, in epochs.
            optimizer: 'adam', 'adamw' or 'sgd'.
            scheduler: 'plateau' (on val_loss), 'cosine' or 'none'.
            weight_decay: Weight decay of the optimiser.

        Raises:
            ValueError: If *average* is unknown.
        """
        if average not in ('probabilities', 'logits'):
            msg = f"average must be 'probabilities' or 'logits', got {average!r}"
            raise ValueError(msg)
        super().__init__(
            encoders,
            task,
            num_classes,
            num_labels,
            embed_dim,
            head_hidden_dim,
            class_weights,
            target_mean,
            target_std,
            lr,
            patience,
            optimizer,
            scheduler,
            weight_decay,
        )

    def predict_from(self, features: Mapping[str, Any], scenario: Scenario) -> Tensor:
        """Average the scenario's single-modality predictions, returned as raw outputs.

        Averaged probabilities are mapped back to raw outputs (log-probabilities for multiclass, logits
        for binary and multilabel) so that :meth:`postprocess` returns the averaged probabilities.

        Args:
            features: Modality mapped to its features.
            scenario: The available modalities.

        Returns:
            Raw outputs.
        """
        outputs = torch.stack(
            [super(EnsembleTask, self).predict_from(features, (m,)) for m in scenario]
        )
        if len(scenario) == 1:
            return outputs[0]
        match (self.hparams['average'], self.task_type):
            case ('logits', _) | (_, 'regression'):
                return outputs.mean(0)
            case (_, 'multiclass'):
                return outputs.float().softmax(-1).mean(0).log()
            case _:
                return torch.logit(outputs.float().sigmoid().mean(0), eps=1e-7)
