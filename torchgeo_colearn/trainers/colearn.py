# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Trainer for multi-modal co-learning with MDiCo."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from ..losses import (
    ContrastiveReduction,
    at_least_float32,
    contrastive_loss,
    modality_mean,
)
from ..models.mdico import Encoding, MDiCo, Representation
from ..presence import Inputs
from ..scenarios import Scenario
from .base import MultiModalTask
from .interface import Features, LossOutput


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
        validation_loss: Literal['total', 'main'] = 'total',
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
            validation_loss: What ``val_loss`` (and ``test_loss``) reports, the value early stopping,
                checkpointing and the 'plateau' schedule select on: the 'total' weighted objective (the
                authors'), or the 'main' loss of the main heads alone, the prediction that is deployed
                (the total is then logged as ``val_total_loss``). Training minimises the total either
                way.
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
        if (
            self.hparams['validation_loss'] == 'main'
            and not self.hparams['main_weight']
        ):
            msg = "validation_loss='main' needs main_weight > 0 (the main loss is computed)"
            raise ValueError(msg)
        for option, allowed in (
            ('validation_loss', ('total', 'main')),
            ('discriminator_input', ('unused', 'shared')),
            ('contrastive_reduction', ('mean', 'sum_ordered')),
            ('shared_init', ('copy', 'independent')),
        ):
            if self.hparams[option] not in allowed:
                msg = f'{option} must be one of {allowed}, got {self.hparams[option]!r}'
                raise ValueError(msg)
        self._targets: dict[tuple[int, int, torch.device], Tensor] = {}
        self.model = MDiCo(
            self.hparams['encoders'],
            self.hparams['embed_dim'],
            self.output_dim,
            self.hparams['head_hidden_dim'],
            self.hparams['shared_init'],
        )

    @override
    def encode(self, inputs: Inputs) -> dict[str, Encoding]:
        """Encode each available modality and apply its main head, once.

        Returns:
            Modality mapped to its representation and main-head output.
        """
        return {
            m: self.model.encode_and_predict(m, x, valid)
            for m, (x, valid) in inputs.items()
        }

    @override
    def predict_from(self, features: Features, scenario: Scenario) -> Tensor:
        """Predict a scenario: one modality's main-head output, or the mean of several."""
        outputs = [features[m].output for m in scenario]
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(0)

    @override
    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Return the ``'specific'``, ``'unused'`` and ``'shared'`` (B, d) parts of each modality."""
        features = self.encode(self.modality_inputs(batch, defer_nan_check=True))
        return {m: f.representation._asdict() for m, f in features.items()}

    @override
    def losses(self, inputs: Inputs, features: Features, target: Tensor) -> LossOutput:
        """Compute the weighted MDiCo objective from the encoded modalities.

        Each per-modality term is the mean over modalities of its mean over the samples that hold the
        modality; the contrastive term of a pair uses the samples that hold both
        (:func:`~torchgeo_colearn.losses.contrastive_loss`). When every sample holds every modality,
        each term is one computation on the modalities stacked along the batch axis
        (:func:`~torchgeo_colearn.losses.modality_mean`).

        Returns:
            The loss terms (``main_loss``, ``aux_loss``, ``contrastive_loss``, ``discriminator_loss``
            for the terms with a non-zero weight, and the total ``loss``), and each single-modality
            scenario's main-head outputs (computed by :meth:`encode`).
        """
        encodings: Mapping[str, Encoding] = features
        presence = inputs.presence
        # the modalities some sample of the batch holds
        held = [m for m in self.modalities if m in encodings]
        reps = [encodings[m].representation for m in held]
        outputs = {m: encodings[m].output for m in held}
        targets = [presence.select(target, (m,)) for m in held]
        terms: dict[str, Tensor] = {}
        weights = {
            'main_loss': self.hparams['main_weight'],
            'aux_loss': self.hparams['aux_weight'],
            'contrastive_loss': self.hparams['contrastive_weight'],
            'discriminator_loss': self.hparams['discriminator_weight'],
        }
        if weights['main_loss']:
            terms['main_loss'] = modality_mean(
                self.criterion, list(outputs.values()), targets, presence.complete
            )
        if weights['aux_loss']:
            # mean over modalities of 1/2 [l(g(specific)) + l(g(shared))]: one head call on all 2M parts
            parts = [torch.cat([rep.specific, rep.shared]) for rep in reps]
            terms['aux_loss'] = modality_mean(
                self.criterion,
                _split_like(self.model.auxiliary(torch.cat(parts)), parts),
                [_repeat(t, 2) for t in targets],
                presence.complete,
            )
        if weights['contrastive_loss']:
            # a modality no sample holds joins as no rows (every process gathers every modality)
            nothing = reps[0].shared[:0]
            terms['contrastive_loss'] = contrastive_loss(
                {
                    m: encodings[m].representation.shared if m in encodings else nothing
                    for m in self.modalities
                },
                self.hparams['temperature'],
                self.hparams['contrastive_reduction'],
                presence,
            )
        if weights['discriminator_loss']:
            terms['discriminator_loss'] = self._discriminator_loss(
                {m: encodings[m].representation for m in held}, presence.complete
            )
        total = sum(
            (weights[name] * value for name, value in terms.items()), torch.zeros(())
        )
        if not self.training and self.hparams['validation_loss'] == 'main':
            terms['total_loss'] = total
            total = terms['main_loss']
        return {**terms, 'loss': total}, {(m,): out for m, out in outputs.items()}

    def _discriminator_loss(
        self, reps: Mapping[str, Representation], same_samples: bool
    ) -> Tensor:
        """Modality-discriminative loss: both discriminators must recognise the modality.

        Args:
            reps: The representation of every modality some sample holds, in training order, on
                the samples that hold the modality.
            same_samples: Whether every modality holds the same samples.

        Returns:
            Mean over modalities of 1/2 [CE(D1(specific), m) + CE(D2(unused or shared), m)]: each
            discriminator runs once on the stacked parts of all modalities.
        """
        second = self.hparams['discriminator_input']
        specific = [rep.specific for rep in reps.values()]
        other = [
            rep.unused if second == 'unused' else rep.shared for rep in reps.values()
        ]
        first_logits = _split_like(
            self.model.discriminator_specific(torch.cat(specific)), specific
        )
        second_logits = _split_like(
            self.model.discriminator_unused(torch.cat(other)), other
        )
        logits = [torch.cat(pair) for pair in zip(first_logits, second_logits)]
        targets = [
            self._modality_targets(self.modalities.index(m), part.shape[0], part.device)
            for m, part in zip(reps, logits)
        ]
        # float32 under mixed precision: a bfloat16 log-softmax loses the small probabilities
        return modality_mean(
            lambda x, y: F.cross_entropy(at_least_float32(x), y),
            logits,
            targets,
            same_samples,
        )

    def _modality_targets(
        self, modality: int, size: int, device: torch.device
    ) -> Tensor:
        """Return a discriminator target, cached per modality, size and device.

        Args:
            modality: Index of the modality.
            size: Number of targets.
            device: The device of the logits.

        Returns:
            (size,) int64 filled with *modality*.
        """
        key = (modality, size, device)
        if key not in self._targets:
            self._targets[key] = torch.full((size,), modality, device=device)
        return self._targets[key]


def _split_like(stacked: Tensor, parts: Sequence[Tensor]) -> list[Tensor]:
    """Split rows computed on stacked parts back into the parts.

    Args:
        stacked: (sum of N_i, ...) rows.
        parts: The (N_i, ...) tensors that were stacked.

    Returns:
        The (N_i, ...) rows of each part.
    """
    return list(torch.split(stacked, [part.shape[0] for part in parts]))


def _repeat(target: Tensor, times: int) -> Tensor:
    """Repeat batch targets for a stack of *times* (B, ...) outputs.

    Args:
        target: (B,) or (B, L) targets.
        times: Number of stacked copies.

    Returns:
        (times * B,) or (times * B, L) targets.
    """
    return target.repeat(times, *([1] * (target.dim() - 1)))
