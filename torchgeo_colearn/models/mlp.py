# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-layer perceptron for static vectors (DEM, soil, land cover, ...)."""

from collections.abc import Sequence

from torch import Tensor, nn

from .encoder import Encoder, register_encoder
from .layers import Dropout, GroupedLinear


@register_encoder('mlp')
class MLP(Encoder):
    """Stack of Linear + BatchNorm + ReLU + Dropout blocks, then a linear projection.

    With ``copies=G`` the module holds G independent MLPs of this architecture that read the same input,
    run with one grouped operation per layer; every parameter stacks the copies along its first axis.
    """

    supports_copies = True

    def __init__(
        self,
        in_features: int,
        out_dim: int,
        hidden_dims: Sequence[int] = (128, 128),
        dropout: float = 0.2,
        copies: int = 1,
    ) -> None:
        """Initialize a new MLP instance.

        Args:
            in_features: Size of the input vector (C,).
            out_dim: Size of the output embedding.
            hidden_dims: Width of each hidden block.
            dropout: Dropout probability after each block.
            copies: Number of independently initialised MLPs run side by side on the same input; their
                embeddings are concatenated.
        """
        super().__init__()
        self.input_shape = (in_features,)
        self.out_dim = out_dim
        self.copies = copies
        layers: list[nn.Module] = []
        width = in_features
        for index, hidden in enumerate(hidden_dims):
            layers += [
                # the first layer reads the input shared by all copies
                GroupedLinear(width, hidden, copies, shared_input=index == 0),
                nn.BatchNorm1d(copies * hidden),
                nn.ReLU(),
                Dropout(dropout),
            ]
            width = hidden
        layers.append(
            GroupedLinear(width, out_dim, copies, shared_input=not hidden_dims)
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Encode a batch of vectors.

        Args:
            x: (B, C) batch.
            valid: Unused (vectors have no time axis).

        Returns:
            Embeddings, shape (B, copies * out_dim), copy c in ``[c * out_dim, (c + 1) * out_dim)``.
        """
        out: Tensor = self.layers(x)
        return out
