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
        self._targets: dict[
            tuple[tuple[int, ...], tuple[int, ...], torch.device], Tensor
        ] = {}
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
        # each modality's number of samples (None when all hold every sample) and their targets
        sizes = None if presence.complete else [len(out) for out in outputs.values()]
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
                self.criterion,
                torch.cat(list(outputs.values())),
                torch.cat(targets),
                sizes,
            )
        if weights['aux_loss']:
            # mean over modalities of 1/2 [l(g(specific)) + l(g(shared))]: one head call on all 2M parts
            parts = torch.cat([p for rep in reps for p in (rep.specific, rep.shared)])
            terms['aux_loss'] = modality_mean(
                self.criterion,
                self.model.auxiliary(parts),
                torch.cat([t for t in targets for _ in range(2)]),
                None if sizes is None else [2 * size for size in sizes],
            )
        if weights['contrastive_loss']:
            # a modality no sample holds joins as no rows (every process gathers every modality)
            shared = {m: rep.shared for m, rep in zip(held, reps)}
            if len(held) < len(self.modalities):
                shared = {m: shared.get(m, reps[0].shared[:0]) for m in self.modalities}
            terms['contrastive_loss'] = contrastive_loss(
                shared,
                self.hparams['temperature'],
                self.hparams['contrastive_reduction'],
                presence,
            )
        if weights['discriminator_loss']:
            terms['discriminator_loss'] = self._discriminator_loss(
                {m: encodings[m].representation for m in held}, sizes
            )
        total = sum(
            (weights[name] * value for name, value in terms.items()), torch.zeros(())
        )
        if not self.training and self.hparams['validation_loss'] == 'main':
            terms['total_loss'] = total
            total = terms['main_loss']
        return {**terms, 'loss': total}, {(m,): out for m, out in outputs.items()}

    def _discriminator_loss(
        self, reps: Mapping[str, Representation], sizes: Sequence[int] | None
    ) -> Tensor:
        """Modality-discriminative loss: both discriminators must recognise the modality.

        Args:
            reps: The representation of every modality some sample holds, in training order, on
                the samples that hold the modality.
            sizes: The number of samples of each of those modalities, or None when every modality
                holds every sample of the batch.

        Returns:
            Mean over modalities of 1/2 [CE(D1(specific), m) + CE(D2(unused or shared), m)]: each
            discriminator runs once on the stacked parts of all modalities.
        """
        second = self.hparams['discriminator_input']
        specific = torch.cat([rep.specific for rep in reps.values()])
        other = torch.cat(
            [rep.unused if second == 'unused' else rep.shared for rep in reps.values()]
        )
        logits = torch.cat(
            [
                self.model.discriminator_specific(specific),
                self.model.discriminator_unused(other),
            ]
        )
        indices = [self.modalities.index(m) for m in reps]
        counts = [len(specific) // len(reps)] * len(reps) if sizes is None else sizes
        targets = self._modality_targets(indices, counts, logits.device, sizes is None)
        # float32 under mixed precision: a bfloat16 log-softmax loses the small probabilities
        return modality_mean(
            lambda x, y: F.cross_entropy(at_least_float32(x), y),
            logits,
            targets,
            None if sizes is None else [*sizes, *sizes],
        )

    def _modality_targets(
        self,
        indices: Sequence[int],
        counts: Sequence[int],
        device: torch.device,
        cache: bool,
    ) -> Tensor:
        """Return the targets of the two discriminators.

        Args:
            indices: The index of each modality.
            counts: How many samples hold each modality.
            device: The device of the logits.
            cache: Keep the targets for the next batch of the same counts (complete batches).

        Returns:
            (2 * sum of counts,) int64: each index repeated its count times, twice.
        """
        key = (tuple(indices), tuple(counts), device)
        if key in self._targets:
            return self._targets[key]
        targets = (
            torch.tensor(indices, device=device)
            .repeat_interleave(torch.tensor(counts, device=device))
            .repeat(2)
        )
        if cache:
            self._targets[key] = targets
        return targets
