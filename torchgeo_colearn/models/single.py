# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Independent single-modality models: one encoder and one head per modality."""

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .encoder import Encoder, build_encoder
from .head import Head


class SingleModalityModels(nn.Module):
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
        super().__init__()
        self.encoders = nn.ModuleDict(
            {m: build_encoder(config, width) for m, config in encoders.items()}
        )
        self.heads = nn.ModuleDict(
            {m: Head(width, output_dim, head_hidden_dim) for m in encoders}
        )

    def encoder(self, modality: str) -> Encoder:
        """Return the encoder of a modality.

        Args:
            modality: A modality name.

        Returns:
            The encoder.
        """
        encoder = self.encoders[modality]
        assert isinstance(encoder, Encoder)
        return encoder

    def encode(
        self, inputs: Mapping[str, tuple[Tensor, Tensor | None]]
    ) -> dict[str, Tensor]:
        """Encode each available modality with its own encoder.

        Args:
            inputs: Modality mapped to (input (B, *input_shape), validity mask (B, T) or None).

        Returns:
            Modality mapped to (B, width) features.
        """
        return {m: self.encoders[m](x, valid) for m, (x, valid) in inputs.items()}

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
