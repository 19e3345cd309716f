# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Trainer for multi-modal co-learning with MDiCo."""

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..losses import ContrastiveReduction, contrastive_loss
from ..models import Encoder
from ..models.mdico import MDiCo, Representation
from ..scenarios import Scenario
from .base import MultiModalTask
from .interface import LossOutput, ModalityInput


class CoLearnTask(MultiModalTask):
    """Multi-modal co-learning: train with all modalities, predict with any one.

    Implements MDiCo (Mena et al., 2025). Each modality gets a specific and a shared encoder
    (:class:`~torchgeo_colearn.models.mdico.MDiCo`); the objective is

    ``L = w_main L_main + w_aux L_aux + w_con L_con + w_mod L_mod``

    * ``L_main``: mean over modalities of the task loss of each modality's main head;
    * ``L_aux``: mean over modalities of 1/2 [l(g(specific)) + l(g(shared))], g the shared auxiliary head;
    * ``L_con``: NT-Xent between the shared parts of every pair of modalities (temperature tau;
      negatives from both modalities of the pair);
    * ``L_mod``: mean over modalities of 1/2 [CE(D1(specific), m) + CE(D2(unused), m)].

    A weight of 0 skips the term (its heads get no gradient). At inference only the encoders, projection
    and main head of the available modality run; a batch with several modalities gets one prediction
    per modality, and a fused scenario averages the main-head logits of its modalities.

    Batches are dicts with one ``image_<modality>`` key per modality (all of them in training) and
    ``label``.

    If you use this task in your research, please cite:

    * https://doi.org/10.1007/s10994-025-06903-0
    """

    supports_fusion = True
    min_modalities = 2

    #: The MDiCo model, built by :meth:`configure_models`.
    model: MDiCo  # type: ignore[assignment]

    def __init__(
        self,
        *,
        shared_init: Literal['copy', 'independent'] = 'copy',
        main_weight: float = 1.0,
        aux_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        discriminator_weight: float = 1.0,
        temperature: float = 0.1,
        discriminator_input: Literal['unused', 'shared'] = 'unused',
        contrastive_reduction: ContrastiveReduction = 'mean',
        **kwargs: Any,
    ) -> None:
        """Initialize a new CoLearnTask instance.

        Args:
            shared_init: 'copy' the specific encoder's initial weights into the shared one (the
                authors' code), or 'independent'.
            main_weight: Weight of the main-head loss.
            aux_weight: Weight of the auxiliary-head loss.
            contrastive_weight: Weight of the contrastive loss between shared parts.
            discriminator_weight: Weight of the modality-discriminator loss.
            temperature: Temperature tau of the contrastive loss.
            discriminator_input: Input of the second discriminator: 'unused' (the paper's description)
                or 'shared' (the authors' code, where the unused part gets no gradient).
            contrastive_reduction: 'mean' over unordered modality pairs, or 'sum_ordered' over ordered
                pairs (the authors' code).
            **kwargs: The arguments shared by every method (:class:`~torchgeo_colearn.trainers.base.\
                MultiModalTask`): ``encoders`` (at least two modalities), ``task``, ``num_classes``,
                ``num_labels``, ``embed_dim`` (the size d of each representation part; the specific
                encoder outputs 2d), ``head_hidden_dim``, ``class_weights``, ``target_mean``,
                ``target_std``, ``lr``, ``patience``, ``optimizer``, ``scheduler``, ``weight_decay``.

        Raises:
            ValueError: With fewer than two modalities or an invalid option.
        """
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        """Build the MDiCo model.

        Raises:
            ValueError: If a modality name cannot name a submodule.
        """
        weights = (
            'main_weight',
            'aux_weight',
            'contrastive_weight',
            'discriminator_weight',
        )
        if not any(self.hparams[w] for w in weights) or any(
            self.hparams[w] < 0 for w in weights
        ):
            msg = f'loss weights must be >= 0 and not all 0, got { {w: self.hparams[w] for w in weights} }'
            raise ValueError(msg)
        for option, allowed in (
            ('discriminator_input', ('unused', 'shared')),
            ('contrastive_reduction', ('mean', 'sum_ordered')),
            ('shared_init', ('copy', 'independent')),
        ):
            if self.hparams[option] not in allowed:
                msg = f'{option} must be one of {allowed}, got {self.hparams[option]!r}'
                raise ValueError(msg)
        self.model = MDiCo(
            self.hparams['encoders'],
            self.hparams['embed_dim'],
            self.output_dim,
            self.hparams['head_hidden_dim'],
            self.hparams['shared_init'],
        )

    def encoder_of(self, modality: str) -> Encoder:
        """Return the specific encoder of a modality.

        Args:
            modality: A training modality.

        Returns:
            The encoder.
        """
        return self.model.encoder(modality)

    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, Representation]:
        """Encode each available modality.

        Args:
            inputs: Modality mapped to (input, validity mask).

        Returns:
            Modality mapped to its representation.
        """
        return {m: self.model.encode(m, x, valid) for m, (x, valid) in inputs.items()}

    def predict_from(self, features: Mapping[str, Any], scenario: Scenario) -> Tensor:
        """Predict a scenario: one modality's main head, or the mean logits of several.

        Args:
            features: Modality mapped to its representation.
            scenario: The available modalities.

        Returns:
            Raw outputs.
        """
        outputs = [self.model.predict(m, features[m]) for m in scenario]
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(0)

    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Return the specific, unused and shared parts of each modality present.

        Args:
            batch: Normalised batch.

        Returns:
            Modality mapped to {'specific', 'unused', 'shared'} (B, d) embeddings.
        """
        features = self.encode(self.modality_inputs(batch, defer_nan_check=True))
        return {m: rep._asdict() for m, rep in features.items()}

    def losses(
        self,
        inputs: Mapping[str, ModalityInput],
        features: Mapping[str, Any],
        target: Tensor,
    ) -> LossOutput:
        """Compute the weighted MDiCo objective.

        Args:
            inputs: Every training modality's input (unused: the representations hold everything).
            features: Every training modality's representation, from :meth:`encode`.
            target: The batch targets.

        Returns:
            The loss terms (``main_loss``, ``aux_loss``, ``contrastive_loss``, ``discriminator_loss``
            for the terms with a non-zero weight, and the total ``loss``), and each single-modality
            scenario's main-head outputs.
        """
        reps: Mapping[str, Representation] = features
        outputs = {m: self.model.predict(m, rep) for m, rep in reps.items()}
        terms: dict[str, Tensor] = {}
        weights = {
            'main_loss': self.hparams['main_weight'],
            'aux_loss': self.hparams['aux_weight'],
            'contrastive_loss': self.hparams['contrastive_weight'],
            'discriminator_loss': self.hparams['discriminator_weight'],
        }
        if weights['main_loss']:
            terms['main_loss'] = torch.stack(
                [self.criterion(out, target) for out in outputs.values()]
            ).mean()
        if weights['aux_loss']:
            terms['aux_loss'] = (
                torch.stack(
                    [
                        self.criterion(self.model.auxiliary(rep.specific), target)
                        + self.criterion(self.model.auxiliary(rep.shared), target)
                        for rep in reps.values()
                    ]
                ).mean()
                / 2
            )
        if weights['contrastive_loss']:
            terms['contrastive_loss'] = contrastive_loss(
                {m: rep.shared for m, rep in reps.items()},
                self.hparams['temperature'],
                self.hparams['contrastive_reduction'],
            )
        if weights['discriminator_loss']:
            terms['discriminator_loss'] = self._discriminator_loss(reps)
        total = sum(
            (weights[name] * value for name, value in terms.items()), torch.zeros(())
        )
        return {**terms, 'loss': total}, {(m,): out for m, out in outputs.items()}

    def _discriminator_loss(self, reps: Mapping[str, Representation]) -> Tensor:
        """Modality-discriminative loss: both discriminators must recognise the modality.

        Args:
            reps: Every training modality's representation.

        Returns:
            Mean over modalities of 1/2 [CE(D1(specific), m) + CE(D2(unused or shared), m)].
        """
        second_input = self.hparams['discriminator_input']
        losses = []
        for index, modality in enumerate(self.modalities):
            rep = reps[modality]
            target = torch.full(
                (rep.specific.shape[0],), index, device=rep.specific.device
            )
            second = rep.unused if second_input == 'unused' else rep.shared
            losses.append(
                F.cross_entropy(self.model.discriminator_specific(rep.specific), target)
                + F.cross_entropy(self.model.discriminator_unused(second), target)
            )
        return torch.stack(losses).mean() / 2
