# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Prediction heads."""

from torch import Tensor, nn


class Head(nn.Module):
    """A linear layer, or a one-hidden-layer MLP, whose single output is returned as (B,)."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int | None = None
    ) -> None:
        """Initialize a new Head instance.

        Args:
            in_dim: Input size.
            out_dim: Output size; 1 returns (B,) instead of (B, 1).
            hidden_dim: Width of a hidden layer (Linear + ReLU), or None for one linear layer (the
                MDiCo paper's heads).
        """
        super().__init__()
        self.out_dim = out_dim
        self.layers: nn.Module = (
            nn.Linear(in_dim, out_dim)
            if hidden_dim is None
            else nn.Sequential(
                nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the head.

        Args:
            x: (B, in_dim) features.

        Returns:
            (B, out_dim) outputs, or (B,) when out_dim is 1.
        """
        out: Tensor = self.layers(x)
        return out.squeeze(-1) if self.out_dim == 1 else out
