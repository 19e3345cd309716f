# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""TempCNN: temporal convolutions for (T, C) and (T, C, H, W) time series."""

import math
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from .encoder import Encoder, register_encoder
from .layers import ChannelsLastBatchNorm, Dropout, GroupedLayerNorm, GroupedLinear
from .temporal_conv import TemporalConv


@register_encoder('tempcnn')
class TempCNN(Encoder):
    """Temporal CNN encoder (Pelletier et al., 2019), the time-series encoder of MDiCo.

    ``num_layers`` blocks of Conv1d over time (same padding) + BatchNorm + ReLU + Dropout, then either
    the flattened (T x hidden) features (``pooling='flatten'``, fixed length) or their mean over the valid
    time steps (``pooling='mean'``, any length, padded steps ignored), then a dense block
    (Linear + BatchNorm + ReLU + Dropout) and a linear projection to ``out_dim``, optionally
    layer-normalised. Image time series (T, C, H, W) are flattened per time step.

    With ``copies=G`` the module holds G independent encoders of this architecture that read the same
    input (MDiCo's specific and shared encoders), run with one grouped operation per layer; every
    parameter stacks the copies along its first axis, so that copy c's state dict is the c-th slice.
    The series are processed time-major and channels-last, (T, B, C), for speed (see
    :class:`~torchgeo_colearn.models.temporal_conv.TemporalConv`); the parameters keep the layout of
    ``nn.Conv1d`` / ``nn.Linear`` on (B, C, T).

    If you use this model in your research, please cite:

    * https://doi.org/10.3390/rs11050523
    """

    supports_copies = True

    def __init__(
        self,
        in_channels: int | Sequence[int],
        out_dim: int,
        seq_len: int | None = None,
        hidden_dim: int = 128,
        num_layers: int = 3,
        kernel_size: int = 5,
        dense_dim: int = 512,
        dropout: float = 0.2,
        pooling: Literal['flatten', 'mean'] = 'flatten',
        layer_norm: bool = False,
        copies: int = 1,
    ) -> None:
        """Initialize a new TempCNN instance.

        Args:
            in_channels: Channels per time step, or the per-step shape, e.g. ``[10, 6, 6]`` for
                (T, 10, 6, 6) image time series.
            out_dim: Size of the output embedding.
            seq_len: Number of time steps; required with ``pooling='flatten'``.
            hidden_dim: Filters of each convolution.
            num_layers: Number of convolution blocks.
            kernel_size: Temporal kernel size (odd).
            dense_dim: Width of the dense layer.
            dropout: Dropout probability after each block.
            pooling: 'flatten' (fixed length) or 'mean' (masked mean over valid steps).
            layer_norm: Apply LayerNorm to the output (the MDiCo LFMC setup).
            copies: Number of independently initialised encoders of this architecture run side by side
                on the same input (grouped layers); their embeddings are concatenated.

        Raises:
            ValueError: If ``pooling='flatten'`` without ``seq_len``, or the kernel size is even.
        """
        super().__init__()
        step_shape = (
            (in_channels,) if isinstance(in_channels, int) else tuple(in_channels)
        )
        if pooling == 'flatten' and seq_len is None:
            raise ValueError("TempCNN with pooling='flatten' needs seq_len")
        if kernel_size % 2 == 0:
            msg = (
                f'TempCNN kernel_size must be odd to keep the length, got {kernel_size}'
            )
            raise ValueError(msg)
        self.input_shape = (seq_len, *step_shape)
        self.out_dim = out_dim
        self.copies = copies
        self.pooling = pooling
        self.hidden_dim = hidden_dim
        features = math.prod(step_shape)
        width = copies * hidden_dim
        # The first convolution reads the input shared by all copies: one convolution with
        # copies * hidden_dim filters; the next ones are grouped, one group per copy.
        self.blocks = nn.ModuleList(
            nn.Sequential(
                TemporalConv(
                    features if layer == 0 else width,
                    width,
                    kernel_size,
                    groups=1 if layer == 0 else copies,
                ),
                ChannelsLastBatchNorm(width),
                nn.ReLU(),
                Dropout(dropout),
            )
            for layer in range(num_layers)
        )
        pooled = (
            hidden_dim * seq_len if pooling == 'flatten' and seq_len else hidden_dim
        )
        self.dense = nn.Sequential(
            GroupedLinear(pooled, dense_dim, copies),
            nn.BatchNorm1d(copies * dense_dim),
            nn.ReLU(),
            Dropout(dropout),
        )
        self.output = GroupedLinear(dense_dim, out_dim, copies)
        self.norm: nn.Module = (
            GroupedLayerNorm(out_dim, copies) if layer_norm else nn.Identity()
        )

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Encode a batch of time series.

        Args:
            x: (B, T, C) or (B, T, C, H, W) batch.
            valid: Optional (B, T) bool mask of valid time steps; invalid steps are zeroed before each
                convolution and, with ``pooling='mean'``, left out of the mean.

        Returns:
            Embeddings, shape (B, copies * out_dim), copy c in ``[c * out_dim, (c + 1) * out_dim)``.
        """
        # Time-major, channels-last (T, B, F) throughout: image time series are flattened per step.
        features = x.flatten(2).transpose(0, 1)
        # Zero the invalid steps before every convolution, so that they act like the zero padding at
        # the ends of the series and never leak into the valid steps.
        step_mask = (
            None if valid is None else valid.t().unsqueeze(-1).to(features.dtype)
        )
        for block in self.blocks:
            if step_mask is not None:
                features = features * step_mask
            features = block(features)
        match self.pooling:
            case 'flatten':
                # Each copy flattens its (hidden, time) features in the order of a (B, C, T) layout.
                steps, batch = features.shape[:2]
                pooled = (
                    features.view(steps, batch, self.copies, self.hidden_dim)
                    .permute(1, 2, 3, 0)
                    .reshape(batch, -1)
                )
            case 'mean':
                if step_mask is None:
                    pooled = features.mean(0)
                else:
                    assert step_mask is not None
                    pooled = (features * step_mask).sum(0) / step_mask.sum(0).clamp(
                        min=1
                    )
        out: Tensor = self.norm(self.output(self.dense(pooled)))
        return out
