# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The MDiCo architecture: per-modality shared/specific encoders, heads and discriminators."""

import copy
import itertools
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from .encoder import Encoder, build_encoder, encoder_class
from .head import Head
from .layers import ConvertOnLoad


class Representation(NamedTuple):
    """The three parts of a modality's representation, each of shape (B, d)."""

    #: First half of the specific encoder output: informative, modality-specific.
    specific: Tensor
    #: Second half of the specific encoder output: modality-identifying, unused for the task.
    unused: Tensor
    #: Projected output of the shared encoder: aligned across modalities.
    shared: Tensor


class Encoding(NamedTuple):
    """Everything a training step and the predictions need from one modality, computed once."""

    #: The specific, unused and shared parts, each (B, d).
    representation: Representation
    #: Raw output of the modality's main head, (B,) or (B, output_dim).
    output: Tensor


class MDiCo(ConvertOnLoad):
    """Multi-modal Disentanglement for Co-learning (Mena et al., 2025).

    Per modality m: a specific encoder whose 2d output splits into ``specific`` (first d) and
    ``unused`` (last d), a shared encoder of the same architecture followed by a projection
    (Linear(2d, d) + BatchNorm + ReLU) giving ``shared``, and a main head on
    concat(specific, shared). Shared by all modalities: an auxiliary task head (applied to ``specific``
    and to ``shared``) and two modality discriminators (D1 on ``specific``, D2 on ``unused``, or on
    ``shared`` to reproduce the authors' code).

    The specific and shared encoders of a modality read the same input: where the encoder family
    supports it (:attr:`~torchgeo_colearn.models.Encoder.supports_copies`: TempCNN, MLP) they run as
    one module with two copies (``paired[m]``: grouped layers, one operation per layer for both),
    otherwise as two modules (``specific[m]`` and ``shared[m]``, e.g. timm CNNs). Both compute the same
    function; a state dict of the two-module layout (saved before the paired layout existed) loads
    into the paired one.

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
        #: Modality mapped to its specific and shared encoders as one module with two copies.
        self.paired = nn.ModuleDict()
        #: Specific and shared encoders of the modalities whose encoder cannot run copies.
        self.specific = nn.ModuleDict()
        self.shared = nn.ModuleDict()
        for modality, config in encoders.items():
            if encoder_class(config).supports_copies:
                paired = build_encoder(config, 2 * embed_dim, copies=2)
                if shared_init == 'copy':
                    _copy_first_copy(paired)
                self.paired[modality] = paired
                continue
            self.specific[modality] = build_encoder(config, 2 * embed_dim)
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
        """Return the module that reads a modality's input (its input shape defines the modality's).

        Args:
            modality: A modality name.

        Returns:
            The paired encoder, or the specific encoder where the encoders run as two modules.
        """
        encoder = (
            self.paired[modality]
            if modality in self.paired
            else self.specific[modality]
        )
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
        d = self.embed_dim
        if modality in self.paired:
            # (B, 4d): the specific encoder's 2d outputs, then the shared encoder's.
            specific, unused, shared = self.paired[modality](x, valid).split(
                (d, d, 2 * d), dim=1
            )
        else:
            specific, unused = self.specific[modality](x, valid).split(d, dim=1)
            shared = self.shared[modality](x, valid)
        return Representation(specific, unused, self.projection[modality](shared))

    def encode_and_predict(
        self, modality: str, x: Tensor, valid: Tensor | None = None
    ) -> Encoding:
        """Encode one modality as :meth:`encode` does and apply its main head.

        Returns:
            The representation and the main-head output.
        """
        representation = self.encode(modality, x, valid)
        return Encoding(representation, self.predict(modality, representation))

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
            part: A (N, d) representation part (several modalities and parts may be stacked along
                the first axis).

        Returns:
            Raw outputs, (N,) or (N, output_dim).
        """
        out: Tensor = self.aux_head(part)
        return out

    def convert_state_dict(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Convert the two-module layout of the paired modalities, in place.

        A state dict saved before the paired layout holds ``specific.<m>.*`` and ``shared.<m>.*`` for
        every modality; the paired encoder stacks the two along the first axis of every tensor (the
        batch counters of its batch norms, equal in both, are taken from the specific encoder).

        Args:
            state_dict: The state dict being loaded.
            prefix: This module's key prefix.
        """
        for modality, paired in self.paired.items():
            specific = f'{prefix}specific.{modality}.'
            shared = f'{prefix}shared.{modality}.'
            if not any(key.startswith(specific) for key in state_dict):
                continue
            for name in paired.state_dict():
                first = state_dict.pop(specific + name, None)
                second = state_dict.pop(shared + name, None)
                if first is None or second is None:
                    continue  # left missing: load_state_dict reports the paired key
                state_dict[f'{prefix}paired.{modality}.{name}'] = (
                    torch.cat([first, second]) if first.dim() else first
                )


def _copy_first_copy(encoder: nn.Module) -> None:
    """Set every copy of a paired encoder to the weights and statistics of the first.

    Args:
        encoder: An encoder built with ``copies=2``: every tensor of its state stacks the copies along
            its first axis.
    """
    with torch.no_grad():
        for tensor in itertools.chain(encoder.parameters(), encoder.buffers()):
            if tensor.dim():
                first, second = tensor.chunk(2)
                second.copy_(first)
