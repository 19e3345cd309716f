# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Networks of the input-level and feature-level fusion baselines."""

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, cast

import torch
from torch import Tensor, nn
from typing_extensions import override

from .encoder import Encoder, ModalityEncoders, build_encoder
from .head import Head

#: How feature-level fusion combines the features of the available modalities.
FusionName: TypeAlias = Literal['mean', 'gated']

#: How input-level fusion lays the modalities side by side.
InputLayout: TypeAlias = Literal['series', 'image']

#: A modality's input: the batch tensor and its optional (B, T) validity mask.
ModalityInput: TypeAlias = tuple[Tensor, Tensor | None]


class StepStem(Encoder):
    """Reshape one modality into a layout that can be concatenated with the others (no parameters).

    * ``'series'`` layout: a time series (T, C) or (T, C, H, W) becomes (T, F) with F the per-step
      feature count; a static vector (C,) is repeated over the T steps of the fused series.
    * ``'image'`` layout: an image (C, H, W) is kept as is and concatenated along the channels.
    """

    def __init__(
        self, input_shape: tuple[int | None, ...], layout: InputLayout, steps: int
    ) -> None:
        """Initialize a new StepStem instance.

        Args:
            input_shape: Shape of one sample of the modality, as its encoder defines it.
            layout: 'series' or 'image'.
            steps: Number of time steps T of the fused series (ignored for images).
        """
        super().__init__()
        self.input_shape = input_shape
        self.layout = layout
        self.steps = steps
        self.out_dim = (
            input_shape[0] or 0
            if layout == 'image' or len(input_shape) == 1
            else math.prod(d or 0 for d in input_shape[1:])
        )

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Reshape a batch.

        Args:
            x: (B, *input_shape) batch.
            valid: Unused; the fused validity mask is built by :class:`InputFusionModel`.

        Returns:
            (B, T, F) for the series layout, (B, C, H, W) for the image layout.
        """
        if self.layout == 'image':
            return x
        if x.ndim == 2:
            return x.unsqueeze(1).expand(-1, self.steps, -1)
        return x.flatten(2)


def input_layout(
    shapes: Mapping[str, tuple[int | None, ...]],
) -> tuple[InputLayout, int]:
    """Choose how modalities of the given sample shapes are concatenated at input level.

    Args:
        shapes: Modality mapped to the shape of one sample.

    Returns:
        The layout and the number of time steps of the fused series (0 for images).

    Raises:
        ValueError: If the shapes cannot be fused at input level.
    """
    shown = {m: tuple('*' if d is None else d for d in s) for m, s in shapes.items()}
    if all(len(s) == 3 for s in shapes.values()):
        sizes = {s[1:] for s in shapes.values()}
        if len(sizes) == 1 and None not in next(iter(sizes)):
            return 'image', 0
        msg = (
            f'input fusion needs images of one fixed size (set image_size), got {shown}'
        )
        raise ValueError(msg)
    lengths = {s[0] for s in shapes.values() if len(s) in (2, 4)}
    (length,) = lengths if len(lengths) == 1 else (None,)
    if length is not None and all(len(s) in (1, 2, 4) for s in shapes.values()):
        return 'series', length
    msg = (
        'input fusion needs time series with one fixed number of steps (plus static vectors), '
        f'or images of one size; got {shown}; use FeatureFusionTask instead'
    )
    raise ValueError(msg)


class FusionNetwork(nn.Module, ABC):
    """A network that fuses the kept modalities into one (B, width) feature and applies one head."""

    #: The head applied to the fused features.
    head: Head

    @abstractmethod
    def fuse(
        self, features: Mapping[str, Any], keep: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Fuse the kept modalities.

        Args:
            features: Output of the network's ``encode``, for the modalities present.
            keep: Optional modality mapped to the (B,) bool mask of the samples that keep it (a
                modality left out is dropped; modality dropout); every sample must keep at least one
                modality. None keeps every modality of *features*.

        Returns:
            (B, width) fused features.
        """

    def predict(
        self, features: Mapping[str, Any], keep: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Fuse the kept modalities and apply the head.

        Args:
            features: As for :meth:`fuse`.
            keep: As for :meth:`fuse`.

        Returns:
            Raw outputs.
        """
        out: Tensor = self.head(self.fuse(features, keep))
        return out


class InputFusionModel(FusionNetwork):
    """Early fusion: the modalities concatenated at input level, one encoder, one head.

    If every modality is a time series with the same fixed number of steps T, or a static vector, each
    is flattened per step to (T, F_m) (vectors repeated over the steps) and the steps are concatenated
    along the features, giving (T, sum F_m); if every modality is an image (C_m, H, W) of the same size,
    the images are concatenated along the channels. A missing modality is zero-filled, which after
    per-channel z-scoring is the training mean.
    """

    def __init__(
        self,
        encoders: Mapping[str, Mapping[str, Any]],
        width: int,
        output_dim: int,
        fusion_encoder: Mapping[str, Any] | None = None,
        head_hidden_dim: int | None = None,
    ) -> None:
        """Initialize a new InputFusionModel instance.

        Args:
            encoders: Modality mapped to its encoder config; only the input shape each defines is used.
            width: Output size of the fused encoder.
            output_dim: Size of the raw task output.
            fusion_encoder: Config of the fused encoder without ``in_channels`` (set to the fused
                width); None uses the first modality's config.
            head_hidden_dim: Hidden width of the head, or None for a linear head.

        Raises:
            ValueError: If the modalities cannot be fused at input level.
        """
        super().__init__()
        shapes = {m: build_encoder(c, 1).input_shape for m, c in encoders.items()}
        layout, steps = input_layout(shapes)
        self.layout: InputLayout = layout
        self.stems = nn.ModuleDict(
            {m: StepStem(shape, layout, steps) for m, shape in shapes.items()}
        )
        fused_width = sum(cast(StepStem, stem).out_dim for stem in self.stems.values())
        config = dict(fusion_encoder or next(iter(encoders.values())))
        config['in_channels'] = fused_width
        self.fused_encoder = build_encoder(config, width)
        self.head = Head(width, output_dim, head_hidden_dim)

    def encoder(self, modality: str) -> StepStem:
        """Return the stem of a modality, whose input shape is the modality's (its "encoder").

        Args:
            modality: A modality name.

        Returns:
            The stem.
        """
        return cast(StepStem, self.stems[modality])

    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, ModalityInput]:
        """Reshape each available modality to the fused layout (the encoder runs per prediction).

        Args:
            inputs: Modality mapped to (input, validity mask).

        Returns:
            Modality mapped to (reshaped input, validity mask).
        """
        return {m: (self.stems[m](x), valid) for m, (x, valid) in inputs.items()}

    def fused_input(
        self, features: Mapping[str, ModalityInput], keep: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor | None]:
        """Concatenate the modalities, zero-filling the missing ones.

        Args:
            features: Output of :meth:`encode`, for the modalities present.
            keep: Modality mapped to a (B,) bool mask of the samples that keep it (absent = dropped).

        Returns:
            The fused (B, T, F) or (B, C, H, W) input and its (B, T) validity mask, or None.
        """
        reference, _ = next(iter(features.values()))
        channel_dim = 1 if self.layout == 'image' else -1
        parts, masks = [], []
        for modality in self.stems:
            if modality in features and modality in keep:
                x, valid = features[modality]
                weight = keep[modality].view(-1, *[1] * (x.ndim - 1))
                parts.append(x * weight.to(x.dtype))
                if valid is not None:
                    masks.append(valid & keep[modality].unsqueeze(1))
            else:
                shape = list(reference.shape)
                shape[channel_dim] = self.encoder(modality).out_dim
                parts.append(reference.new_zeros(shape))
        fused = torch.cat(parts, dim=channel_dim)
        valid = torch.stack(masks).any(0) if masks else None
        return fused, valid

    @override
    def fuse(
        self,
        features: Mapping[str, ModalityInput],
        keep: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """Encode the fused input (see :meth:`fused_input`) into (B, width) features."""
        if keep is None:
            keep = {
                m: x.new_ones(x.shape[0], dtype=torch.bool)
                for m, (x, _) in features.items()
            }
        x, valid = self.fused_input(features, keep)
        out: Tensor = self.fused_encoder(x, valid)
        return out


class FeatureFusionModel(ModalityEncoders, FusionNetwork):
    """Per-modality encoders, a fusion of the available features, and one head.

    Fusion of the features f_m (B, D) of the available modalities:

    * ``'mean'``: their mean;
    * ``'gated'``: a softmax-weighted sum, with per-sample weights from a learned linear score of each
      f_m (missing modalities get no weight).
    """

    def __init__(
        self,
        encoders: Mapping[str, Mapping[str, Any]],
        width: int,
        output_dim: int,
        fusion: FusionName = 'mean',
        head_hidden_dim: int | None = None,
    ) -> None:
        """Initialize a new FeatureFusionModel instance.

        Args:
            encoders: Modality mapped to its encoder config.
            width: Feature size D of every encoder.
            output_dim: Size of the raw task output.
            fusion: 'mean' or 'gated'.
            head_hidden_dim: Hidden width of the head, or None for a linear head.

        Raises:
            ValueError: If *fusion* is unknown.
        """
        if fusion not in ('mean', 'gated'):
            msg = f"fusion must be 'mean' or 'gated', got {fusion!r}"
            raise ValueError(msg)
        super().__init__(encoders, width)
        self.fusion = fusion
        self.gates = nn.ModuleDict(
            {m: nn.Linear(width, 1) for m in encoders} if fusion == 'gated' else {}
        )
        self.head = Head(width, output_dim, head_hidden_dim)

    @override
    def fuse(
        self, features: Mapping[str, Tensor], keep: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Fuse the features of the available modalities.

        Args:
            features: Modality mapped to (B, D) features; only these modalities are fused.
            keep: Optional modality mapped to a (B,) bool mask of the samples that keep it (modality
                dropout); every sample must keep at least one of the fused modalities.

        Returns:
            (B, D) fused features.
        """
        names = [m for m in features if keep is None or m in keep]
        stacked = torch.stack([features[m] for m in names])
        if keep is None:
            mask = stacked.new_ones(stacked.shape[:2], dtype=torch.bool)
        else:
            mask = torch.stack([keep[m] for m in names])
        match self.fusion:
            case 'mean':
                weights = mask.to(stacked.dtype)
                weights = weights / weights.sum(0, keepdim=True)
            case 'gated':
                scores = torch.stack(
                    [self.gates[m](features[m]).squeeze(-1) for m in names]
                )
                weights = scores.masked_fill(~mask, float('-inf')).softmax(0)
        return (weights.unsqueeze(-1) * stacked).sum(0)
