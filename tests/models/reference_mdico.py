# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The unfused MDiCo model and objective as of revision ed4f1f6, kept only as the tests' reference.

A verbatim copy of ``models/mdico.py``, ``models/tempcnn.py``, ``models/mlp.py`` and the loss methods of
``trainers/colearn.py`` before the fused implementation, with the registry decorators removed and the
encoder builder mapping 'tempcnn' and 'mlp' to these copies. The equivalence tests compare the package's
model with it; nothing else may import it.
"""

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchgeo_colearn.losses import TaskLoss, contrastive_loss
from torchgeo_colearn.models.encoder import Encoder
from torchgeo_colearn.models.encoder import build_encoder as package_build_encoder
from torchgeo_colearn.models.head import Head


class TempCNN(Encoder):
    """Temporal CNN encoder (Pelletier et al., 2019), the time-series encoder of MDiCo.

    ``num_layers`` blocks of Conv1d over time (same padding) + BatchNorm + ReLU + Dropout, then either
    the flattened (T x hidden) features (``pooling='flatten'``, fixed length) or their mean over the valid
    time steps (``pooling='mean'``, any length, padded steps ignored), then a dense block
    (Linear + BatchNorm + ReLU + Dropout) and a linear projection to ``out_dim``, optionally
    layer-normalised. Image time series (T, C, H, W) are flattened per time step.

    If you use this model in your research, please cite:

    * https://doi.org/10.3390/rs11050523
    """

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
        self.pooling = pooling
        features = math.prod(step_shape)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(
                    features if layer == 0 else hidden_dim,
                    hidden_dim,
                    kernel_size,
                    padding=kernel_size // 2,
                ),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(),
                nn.Dropout(dropout),
            )
            for layer in range(num_layers)
        )
        pooled = (
            hidden_dim * seq_len if pooling == 'flatten' and seq_len else hidden_dim
        )
        self.dense = nn.Sequential(
            nn.Linear(pooled, dense_dim),
            nn.BatchNorm1d(dense_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.output = nn.Linear(dense_dim, out_dim)
        self.norm: nn.Module = nn.LayerNorm(out_dim) if layer_norm else nn.Identity()

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Encode a batch of time series.

        Args:
            x: (B, T, C) or (B, T, C, H, W) batch.
            valid: Optional (B, T) bool mask of valid time steps; invalid steps are zeroed before each
                convolution and, with ``pooling='mean'``, left out of the mean.

        Returns:
            Embeddings, shape (B, out_dim).
        """
        features = x.flatten(2).transpose(1, 2)
        # Zero the invalid steps before every convolution, so that they act like the zero padding at
        # the ends of the series and never leak into the valid steps.
        step_mask = None if valid is None else valid.unsqueeze(1).to(features.dtype)
        for block in self.blocks:
            if step_mask is not None:
                features = features * step_mask
            features = block(features)
        match self.pooling:
            case 'flatten':
                pooled = features.flatten(1)
            case 'mean':
                if step_mask is None:
                    pooled = features.mean(-1)
                else:
                    assert step_mask is not None
                    pooled = (features * step_mask).sum(-1) / step_mask.sum(-1).clamp(
                        min=1
                    )
        out: Tensor = self.norm(self.output(self.dense(pooled)))
        return out


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


def build_encoder(config: Mapping[str, Any], out_dim: int) -> Encoder:
    """Build the reference encoder of a config: the copies above, else the package's (timm)."""
    kwargs = dict(config)
    match kwargs.pop('name'):
        case 'tempcnn':
            return TempCNN(out_dim=out_dim, **kwargs)
        case 'mlp':
            return MLP(out_dim=out_dim, **kwargs)
        case _:
            return package_build_encoder(config, out_dim)


class Representation(NamedTuple):
    """The three parts of a modality's representation, each of shape (B, d)."""

    #: First half of the specific encoder output: informative, modality-specific.
    specific: Tensor
    #: Second half of the specific encoder output: modality-identifying, unused for the task.
    unused: Tensor
    #: Projected output of the shared encoder: aligned across modalities.
    shared: Tensor


class MDiCo(nn.Module):
    """Multi-modal Disentanglement for Co-learning (Mena et al., 2025).

    Per modality m: a specific encoder whose 2d output splits into ``specific`` (first d) and
    ``unused`` (last d), a shared encoder of the same architecture followed by a projection
    (Linear(2d, d) + BatchNorm + ReLU) giving ``shared``, and a main head on
    concat(specific, shared). Shared by all modalities: an auxiliary task head (applied to ``specific``
    and to ``shared``) and two modality discriminators (D1 on ``specific``, D2 on ``unused``, or on
    ``shared`` to reproduce the authors' code).

    If you use this model in your research, please cite:

    * https://doi.org/10.1007/s10994-025-06903-0
    """

    def __init__(
        self,
        encoders: Mapping[str, Mapping[str, Any]],
        embed_dim: int,
        output_dim: int,
        head_hidden_dim: int | None = None,
        shared_init: Literal['copy', 'independent'] = 'copy',
    ) -> None:
        """Initialize a new MDiCo instance.

        Args:
            encoders: Modality mapped to its encoder config (see
                :func:`~torchgeo_colearn.models.build_encoder`).
            embed_dim: Size d of each representation part.
            output_dim: Size of the raw task output (1 for binary and regression).
            head_hidden_dim: Hidden width of the heads, or None for linear heads.
            shared_init: 'copy' starts each shared encoder from the weights of the specific one (the
                authors' choice); 'independent' initialises it separately.
        """
        super().__init__()
        self.modalities = tuple(encoders)
        self.embed_dim = embed_dim
        self.output_dim = output_dim
        self.specific = nn.ModuleDict(
            {m: build_encoder(config, 2 * embed_dim) for m, config in encoders.items()}
        )
        self.shared = nn.ModuleDict()
        for modality, config in encoders.items():
            match shared_init:
                case 'copy':
                    self.shared[modality] = copy.deepcopy(self.specific[modality])
                case 'independent':
                    self.shared[modality] = build_encoder(config, 2 * embed_dim)
        self.projection = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.Linear(2 * embed_dim, embed_dim),
                    nn.BatchNorm1d(embed_dim),
                    nn.ReLU(),
                )
                for m in self.modalities
            }
        )
        self.main_heads = nn.ModuleDict(
            {
                m: Head(2 * embed_dim, output_dim, head_hidden_dim)
                for m in self.modalities
            }
        )
        self.aux_head = Head(embed_dim, output_dim, head_hidden_dim)
        num_modalities = len(self.modalities)
        self.discriminator_specific = Head(embed_dim, num_modalities, head_hidden_dim)
        self.discriminator_unused = Head(embed_dim, num_modalities, head_hidden_dim)

    def encoder(self, modality: str) -> Encoder:
        """Return the specific encoder of a modality.

        Args:
            modality: A modality name.

        Returns:
            The encoder.
        """
        encoder = self.specific[modality]
        assert isinstance(encoder, Encoder)
        return encoder

    def encode(
        self, modality: str, x: Tensor, valid: Tensor | None = None
    ) -> Representation:
        """Encode one modality.

        Args:
            modality: The modality name.
            x: Input batch, shape (B, *input_shape).
            valid: Optional (B, T) validity mask.

        Returns:
            The specific, unused and shared parts, each (B, d).
        """
        specific, unused = self.specific[modality](x, valid).split(
            self.embed_dim, dim=1
        )
        shared = self.projection[modality](self.shared[modality](x, valid))
        return Representation(specific, unused, shared)

    def predict(self, modality: str, representation: Representation) -> Tensor:
        """Apply the main head of a modality.

        Args:
            modality: The modality name.
            representation: Its representation.

        Returns:
            Raw outputs, (B,) or (B, output_dim).
        """
        features = torch.cat([representation.specific, representation.shared], dim=1)
        out: Tensor = self.main_heads[modality](features)
        return out

    def auxiliary(self, part: Tensor) -> Tensor:
        """Apply the auxiliary task head, shared by all modalities.

        Args:
            part: A (B, d) representation part.

        Returns:
            Raw outputs, (B,) or (B, output_dim).
        """
        out: Tensor = self.aux_head(part)
        return out


def training_losses(
    model: MDiCo,
    criterion: TaskLoss,
    hparams: Mapping[str, Any],
    inputs: Mapping[str, tuple[Tensor, Tensor | None]],
    target: Tensor,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Compute the weighted MDiCo objective.

    Args:
        inputs: Every training modality's input.
        target: The batch targets.

    Returns:
        The loss terms (``main_loss``, ``aux_loss``, ``contrastive_loss``, ``discriminator_loss``
        for the terms with a non-zero weight, and the total ``loss``), and each modality's main-head
        outputs.
    """
    reps = {m: model.encode(m, x, valid) for m, (x, valid) in inputs.items()}
    outputs = {m: model.predict(m, rep) for m, rep in reps.items()}
    terms: dict[str, Tensor] = {}
    weights = {
        'main_loss': hparams['main_weight'],
        'aux_loss': hparams['aux_weight'],
        'contrastive_loss': hparams['contrastive_weight'],
        'discriminator_loss': hparams['discriminator_weight'],
    }
    if weights['main_loss']:
        terms['main_loss'] = torch.stack(
            [criterion(out, target) for out in outputs.values()]
        ).mean()
    if weights['aux_loss']:
        terms['aux_loss'] = (
            torch.stack(
                [
                    criterion(model.auxiliary(rep.specific), target)
                    + criterion(model.auxiliary(rep.shared), target)
                    for rep in reps.values()
                ]
            ).mean()
            / 2
        )
    if weights['contrastive_loss']:
        terms['contrastive_loss'] = contrastive_loss(
            {m: rep.shared for m, rep in reps.items()},
            hparams['temperature'],
            hparams['contrastive_reduction'],
        )
    if weights['discriminator_loss']:
        terms['discriminator_loss'] = discriminator_loss(model, hparams, reps)
    total = sum(
        (weights[name] * value for name, value in terms.items()), torch.zeros(())
    )
    return {**terms, 'loss': total}, outputs


def discriminator_loss(
    model: MDiCo, hparams: Mapping[str, Any], reps: Mapping[str, Representation]
) -> Tensor:
    """Modality-discriminative loss: both discriminators must recognise the modality.

    Args:
        reps: Every training modality's representation.

    Returns:
        Mean over modalities of 1/2 [CE(D1(specific), m) + CE(D2(unused or shared), m)].
    """
    second_input = hparams['discriminator_input']
    losses = []
    for index, modality in enumerate(model.modalities):
        rep = reps[modality]
        target = torch.full((rep.specific.shape[0],), index, device=rep.specific.device)
        second = rep.unused if second_input == 'unused' else rep.shared
        losses.append(
            F.cross_entropy(model.discriminator_specific(rep.specific), target)
            + F.cross_entropy(model.discriminator_unused(second), target)
        )
    return torch.stack(losses).mean() / 2
