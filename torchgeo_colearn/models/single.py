# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Independent single-modality models: one encoder and one head per modality."""

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .encoder import ModalityEncoders
from .head import Head


class SingleModalityModels(ModalityEncoders):
    """One model (encoder + head) per modality; the models share nothing."""

    def __init__(
        self,
        encoders: Mapping[str, Mapping[str, Any]],
        width: int,
        output_dim: int,
        head_hidden_dim: int | None = None,
    ) -> None:
        """Initialize a new SingleModalityModels instance.

        Args:
            encoders: Modality mapped to its encoder config (see
                :func:`~torchgeo_colearn.models.build_encoder`).
            width: Output size of every encoder, the features the heads see.
            output_dim: Size of the raw task output (1 for binary and regression).
            head_hidden_dim: Hidden width of the heads, or None for linear heads.
        """
        super().__init__(encoders, width)
        self.heads = nn.ModuleDict(
            {m: Head(width, output_dim, head_hidden_dim) for m in encoders}
        )

    def predict(self, modality: str, features: Tensor) -> Tensor:
        """Apply the head of a modality.

        Args:
            modality: A modality name.
            features: Its (B, width) features.

        Returns:
            Raw outputs, (B,) or (B, output_dim).
        """
        out: Tensor = self.heads[modality](features)
        return out
