# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Trainer of single-modality models, the floor co-learning must beat."""

from typing import ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from ..models.single import SingleModalityModels
from ..presence import Inputs
from ..scenarios import Scenario
from .base import MultiModalTask
from .interface import Features, LossOutput


class SingleModalityTask(MultiModalTask):
    """One model (encoder + head) per modality in ``encoders``, each trained on its own modality.

    The encoders output 2 x ``embed_dim`` features, the size of the features CoLearnTask's main heads
    see. With one modality in ``encoders`` this is a model trained alone on that sensor, with its own
    early stopping and checkpoint: the fair single-modality baseline (``colearn benchmark`` trains one
    such run per modality). With several modalities the models share nothing but the training loop: the
    total loss is the sum of the per-modality losses, so each model gets the gradients it would get
    alone, but they are early-stopped and checkpointed together on the summed validation loss (the
    *joint* variant, which can stop a model too early or too late). Logged terms: ``<modality>_loss``
    and the total ``loss``.
    """

    #: Checkpoint key prefixes of torchgeo-colearn 0.1 mapped to today's.
    legacy_prefixes: ClassVar[dict[str, str]] = {
        'encoders.': 'model.encoders.',
        'heads.': 'model.heads.',
    }

    #: The single-modality models, built by :meth:`configure_models`.
    model: SingleModalityModels

    def configure_models(self) -> None:
        """Build one encoder and one head per modality."""
        self.model = SingleModalityModels(
            self.hparams['encoders'],
            2 * self.hparams['embed_dim'],
            self.output_dim,
            self.hparams['head_hidden_dim'],
        )

    @override
    def predict_from(self, features: Features, scenario: Scenario) -> Tensor:
        """Apply the head of the scenario's single modality."""
        (modality,) = scenario
        return self.model.predict(modality, features[modality])

    @override
    def losses(self, inputs: Inputs, features: Features, target: Tensor) -> LossOutput:
        """Sum the independent per-modality losses.

        Each model's loss is its mean over the samples that hold its modality; a modality that no
        sample of the batch holds adds no term (and no output).

        Returns:
            ``<modality>_loss`` terms and their sum ``loss``, and each single-modality scenario's
            outputs.
        """
        presence = inputs.presence
        outputs: dict[Scenario, Tensor] = {
            (m,): self.model.predict(m, features[m])
            for m in self.modalities
            if m in features
        }
        terms = {
            f'{s[0]}_loss': self.criterion(out, presence.select(target, s))
            for s, out in outputs.items()
        }
        total = sum(terms.values(), torch.zeros((), device=target.device))
        return {**terms, 'loss': total}, outputs
