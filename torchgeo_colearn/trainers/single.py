# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Trainer of independent single-modality models, the floor co-learning must beat."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..metrics import TaskType
from ..models import Encoder, build_encoder
from ..models.head import Head
from .base import ModalityInput, MultiModalTask, OptimizerName, Scenario, SchedulerName


class SingleModalityTask(MultiModalTask):
    """One model per modality (encoder + head), each trained on its own modality alone.

    The models share nothing: the total loss is the sum of the per-modality losses, so each model gets
    exactly the gradients it would get if trained on its own (they only share the epoch loop and early
    stopping). The encoder outputs 2 x ``embed_dim`` features, the size of the features CoLearnTask's main
    heads see. Logged terms: ``<modality>_loss`` and the total ``loss``.
    """

    def __init__(
        self,
        encoders: dict[str, dict[str, Any]],
        task: TaskType = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        embed_dim: int = 64,
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
        """Initialize a new SingleModalityTask instance.

        Args:
            encoders: Modality name mapped to its encoder config (see
                :class:`~torchgeo_colearn.CoLearnTask`); one model per entry.
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            embed_dim: Half the encoder output size (the encoder outputs 2 x embed_dim).
            head_hidden_dim: Hidden width of the heads, or None for linear heads.
            class_weights: Class weights: a list, 'balanced' (from the datamodule), or None.
            target_mean: Regression target mean; None takes it from the datamodule.
            target_std: Regression target standard deviation; None takes it from the datamodule.
            lr: Learning rate.
            patience: Patience of the 'plateau' learning-rate schedule, in epochs.
            optimizer: 'adam', 'adamw' or 'sgd'.
            scheduler: 'plateau' (on val_loss), 'cosine' or 'none'.
            weight_decay: Weight decay of the optimiser.
        """
        super().__init__()

    def configure_models(self) -> None:
        """Build one encoder and one head per modality."""
        width = 2 * self.hparams['embed_dim']
        self.encoders = nn.ModuleDict(
            {
                m: build_encoder(config, width)
                for m, config in self.hparams['encoders'].items()
            }
        )
        self.heads = nn.ModuleDict(
            {
                m: Head(width, self.output_dim, self.hparams['head_hidden_dim'])
                for m in self.hparams['encoders']
            }
        )

    def encoder_of(self, modality: str) -> Encoder:
        """Return the encoder of a modality.

        Args:
            modality: A training modality.

        Returns:
            The encoder.
        """
        encoder = self.encoders[modality]
        assert isinstance(encoder, Encoder)
        return encoder

    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, Tensor]:
        """Encode each available modality with its own encoder.

        Args:
            inputs: Modality mapped to (input, validity mask).

        Returns:
            Modality mapped to (B, 2 x embed_dim) features.
        """
        return {m: self.encoders[m](x, valid) for m, (x, valid) in inputs.items()}

    def predict_from(self, features: Mapping[str, Any], scenario: Scenario) -> Tensor:
        """Apply the head of the scenario's single modality.

        Args:
            features: Modality mapped to its features.
            scenario: A one-modality scenario.

        Returns:
            Raw outputs.
        """
        (modality,) = scenario
        out: Tensor = self.heads[modality](features[modality])
        return out

    def training_losses(
        self, inputs: Mapping[str, ModalityInput], target: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Sum the independent per-modality losses.

        Args:
            inputs: Every training modality's input.
            target: The batch targets.

        Returns:
            ``<modality>_loss`` terms and their sum ``loss``, and each modality's outputs.
        """
        features = self.encode(inputs)
        outputs = {m: self.predict_from(features, (m,)) for m in features}
        terms = {f'{m}_loss': self.criterion(out, target) for m, out in outputs.items()}
        return {**terms, 'loss': torch.stack(list(terms.values())).sum()}, outputs
