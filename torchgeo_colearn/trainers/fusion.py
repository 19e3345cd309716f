# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Input-level and feature-level fusion baselines trained with modality (sensor) dropout."""

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from ..models.fusion import FeatureFusionModel, FusionName, InputFusionModel
from .dropout import ModalityDropoutTask
from .interface import Features


class InputFusionTask(ModalityDropoutTask):
    """Input-level fusion (early fusion) with modality dropout: one encoder on all inputs stacked.

    The network is :class:`~torchgeo_colearn.models.fusion.InputFusionModel`: time series with one fixed
    number of steps (plus static vectors repeated over the steps) are concatenated per step along the
    features, images of one size along the channels; other combinations are rejected (use
    :class:`FeatureFusionTask`). The fused encoder outputs 2 x ``embed_dim`` features, as the
    single-modality models. A missing or dropped modality is zero-filled (the training mean after
    z-scoring). Training and validation objectives: see
    :class:`~torchgeo_colearn.trainers.dropout.ModalityDropoutTask`.
    """

    #: Checkpoint key prefixes of torchgeo-colearn 0.1 mapped to today's.
    legacy_prefixes: ClassVar[dict[str, str]] = {
        'stems.': 'model.stems.',
        'encoder.': 'model.fused_encoder.',
        'head.': 'model.head.',
    }

    #: The input-fusion network, built by :meth:`configure_models`.
    model: InputFusionModel

    def __init__(
        self, *, fusion_encoder: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Initialize a new InputFusionTask instance.

        Args:
            fusion_encoder: Config of the encoder of the fused input, without ``in_channels`` (set to
                the fused width); None uses the first modality's config.
            **kwargs: ``modality_dropout`` (see
                :class:`~torchgeo_colearn.trainers.dropout.ModalityDropoutTask`) and the arguments shared
                by every method (:class:`~torchgeo_colearn.trainers.base.MultiModalTask`); only the
                input shape each ``encoders`` entry defines is used.

        Raises:
            ValueError: If the modalities cannot be fused at input level or an option is invalid.
        """
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        """Build the input-fusion network."""
        self.model = InputFusionModel(
            self.hparams['encoders'],
            2 * self.hparams['embed_dim'],
            self.output_dim,
            self.hparams['fusion_encoder'],
            self.hparams['head_hidden_dim'],
        )

    @override
    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Return the fused encoder's features of each modality alone, under ``'features'``."""
        features = self.encode(self.modality_inputs(batch))
        reps = {}
        for modality, (x, _) in features.items():
            keep = {modality: torch.ones(x.shape[0], dtype=torch.bool, device=x.device)}
            reps[modality] = {'features': self.model.fuse(features, keep)}
        return reps


class FeatureFusionTask(ModalityDropoutTask):
    """Feature-level fusion with modality dropout: per-modality encoders, fused features, one head.

    Each modality has its own encoder (output 2 x ``embed_dim``, as the single-modality models); the
    features of the available modalities are fused by their mean or a gated (softmax-weighted) sum
    (:class:`~torchgeo_colearn.models.fusion.FeatureFusionModel`) and one head predicts. Dropped
    modalities are left out of the fusion, so the head learns to predict from any subset. Training and
    validation objectives: see :class:`~torchgeo_colearn.trainers.dropout.ModalityDropoutTask`.
    """

    #: The feature-fusion network, built by :meth:`configure_models`.
    model: FeatureFusionModel

    def __init__(self, *, fusion: FusionName = 'mean', **kwargs: Any) -> None:
        """Initialize a new FeatureFusionTask instance.

        Args:
            fusion: 'mean' or 'gated'.
            **kwargs: ``modality_dropout`` (see
                :class:`~torchgeo_colearn.trainers.dropout.ModalityDropoutTask`) and the arguments shared
                by every method (:class:`~torchgeo_colearn.trainers.base.MultiModalTask`).

        Raises:
            ValueError: On an invalid option.
        """
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        """Build the feature-fusion network."""
        self.model = FeatureFusionModel(
            self.hparams['encoders'],
            2 * self.hparams['embed_dim'],
            self.output_dim,
            self.hparams['fusion'],
            self.hparams['head_hidden_dim'],
        )

    @override
    def predict_kept(self, features: Features, keep: Mapping[str, Tensor]) -> Tensor:
        """Fuse the kept features and apply the head."""
        return self.model.predict(
            {m: features[m] for m in self.modalities if m in keep}, keep
        )
