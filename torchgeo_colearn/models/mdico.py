# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The MDiCo architecture: per-modality shared/specific encoders, heads and discriminators."""

import copy
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from .encoder import Encoder, build_encoder
from .head import Head


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
