# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-layer perceptron for static vectors (DEM, soil, land cover, ...)."""

from collections.abc import Sequence

from torch import Tensor, nn

from .encoder import Encoder, register_encoder


@register_encoder('mlp')
class MLP(Encoder):
    """Stack of Linear + BatchNorm + ReLU + Dropout blocks, then a linear projection."""

    def __init__(
        self,
        in_features: int,
        out_dim: int,
        hidden_dims: Sequence[int] = (128, 128),
        dropout: float = 0.2,
    ) -> None:
        """Initialize a new MLP instance.

        Args:
            in_features: Size of the input vector (C,).
            out_dim: Size of the output embedding.
            hidden_dims: Width of each hidden block.
            dropout: Dropout probability after each block.
        """
        super().__init__()
        self.input_shape = (in_features,)
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_dims:
            layers += [
                nn.Linear(width, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Encode a batch of vectors.

        Args:
            x: (B, C) batch.
            valid: Unused (vectors have no time axis).

        Returns:
            Embeddings, shape (B, out_dim).
        """
        out: Tensor = self.layers(x)
        return out
