# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""ShaSpec: shared-specific feature modelling for missing modalities (Wang et al., CVPR 2023)."""

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from ..losses import at_least_float32, modality_mean
from ..models.shaspec import ShaSpecModel
from ..presence import Presence
from .checks import check_non_negative
from .dropout import ModalityDropoutTask
from .interface import Features


class ShaSpecTask(ModalityDropoutTask):
    """ShaSpec (Wang et al., CVPR 2023), adapted to modalities of different shapes.

    The network is :class:`~torchgeo_colearn.models.shaspec.ShaSpecModel` (per-modality specific
    encoders, per-modality projections into a trunk shared by every modality, a shared residual
    composition layer, one head over the composed features; a missing modality's slot gets the mean
    shared feature of the available ones).

    Objective: the task loss under modality dropout in training (ShaSpec's random-missing training
    stage) and per scenario in evaluation (see
    :class:`~torchgeo_colearn.trainers.dropout.ModalityDropoutTask`), plus ``alignment_weight`` (alpha) x
    the L1 distance between the shared features of neighbouring modalities (a ring over the modalities;
    the single pair for two), plus ``domain_weight`` (beta) x the cross-entropy of a modality classifier
    on the specific features.

    If you use this method in your research, please cite:

    * https://doi.org/10.1109/CVPR52729.2023.01505
    """

    #: Checkpoint key prefixes of torchgeo-colearn 0.1 mapped to today's.
    legacy_prefixes: ClassVar[dict[str, str]] = {
        f'{name}.': f'model.{name}.'
        for name in (
            'specific',
            'projections',
            'shared',
            'composition',
            'head',
            'modality_classifier',
        )
    }

    #: The ShaSpec network, built by :meth:`configure_models`.
    model: ShaSpecModel

    def __init__(
        self,
        *,
        projection_dim: int | None = None,
        shared_hidden_dims: Sequence[int] | None = None,
        alignment_weight: float = 0.1,
        domain_weight: float = 0.02,
        **kwargs: Any,
    ) -> None:
        """Initialize a new ShaSpecTask instance.

        Args:
            projection_dim: Size of the common space the projections map to (default 2 x embed_dim).
            shared_hidden_dims: Hidden widths of the shared trunk (default one layer of projection_dim).
            alignment_weight: Weight alpha of the L1 alignment of the shared features.
            domain_weight: Weight beta of the modality classification of the specific features.
            **kwargs: ``modality_dropout`` (see
                :class:`~torchgeo_colearn.trainers.dropout.ModalityDropoutTask`) and the arguments shared
                by every method (:class:`~torchgeo_colearn.trainers.base.MultiModalTask`); ``embed_dim``
                is the size d of the specific, shared and composed features, and each ``encoders``
                entry builds the modality's specific encoder and projection.

        Raises:
            ValueError: On a negative weight or an invalid option.
        """
        check_non_negative(
            alignment_weight=alignment_weight, domain_weight=domain_weight
        )
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        """Build the ShaSpec network."""
        self.model = ShaSpecModel(
            self.hparams['encoders'],
            self.hparams['embed_dim'],
            self.output_dim,
            self.hparams['projection_dim'],
            self.hparams['shared_hidden_dims'],
            self.hparams['head_hidden_dim'],
        )

    @override
    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Return the ``'specific'`` and ``'shared'`` (B, d) features of each modality present."""
        features = self.encode(self.modality_inputs(batch))
        return {m: f._asdict() for m, f in features.items()}

    @override
    def extra_losses(
        self, features: Features, target: Tensor, presence: Presence
    ) -> dict[str, Tensor]:
        """The weighted alignment and modality-classification terms.

        The alignment of a pair is over the samples that hold both modalities, the classification of
        a modality over the samples that hold it; pairs and modalities without such samples add
        nothing.

        Returns:
            ``alignment_loss`` and ``domain_loss``, each already multiplied by its weight.
        """
        # a ring over the training modalities; the modalities no sample holds add nothing
        modalities = self.modalities
        count = len(modalities)
        pairs = [(0, 1)] if count == 2 else [(i, (i + 1) % count) for i in range(count)]
        # float32 under mixed precision, as every loss
        shared = [
            [
                at_least_float32(presence.restrict(features[m].shared, m, pair))
                for m in pair
            ]
            for pair in ((modalities[i], modalities[j]) for i, j in pairs)
            if all(m in features for m in pair)
        ]
        alignment = [F.l1_loss(a, b) for a, b in shared if a.shape[0]]
        held = [
            (i, features[m].specific) for i, m in enumerate(modalities) if m in features
        ]
        domain = modality_mean(
            F.cross_entropy,
            at_least_float32(
                self.model.modality_classifier(torch.cat([x for _, x in held]))
            ),
            torch.cat(
                [torch.full((len(x),), index, device=x.device) for index, x in held]
            ),
            None if presence.complete else [len(x) for _, x in held],
        )
        zero = torch.zeros((), device=target.device)
        return {
            'alignment_loss': self.hparams['alignment_weight']
            * (torch.stack(alignment).mean() if alignment else zero),
            'domain_loss': self.hparams['domain_weight'] * domain,
        }
