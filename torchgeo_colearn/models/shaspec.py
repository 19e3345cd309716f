# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The ShaSpec network (Wang et al., CVPR 2023), adapted to modalities of different shapes."""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from .encoder import Encoder, build_encoder
from .head import Head


class SharedSpecific(NamedTuple):
    """A modality's two features, each of shape (B, d)."""

    #: Output of the modality's own specific encoder.
    specific: Tensor
    #: Output of the shared encoder (per-modality projection, then the trunk shared by all).
    shared: Tensor


class ShaSpecModel(nn.Module):
    """Specific and shared features per modality, a shared composition layer and one head.

    Per modality m: a specific encoder (its own weights) giving ``spe_m`` (B, d), and a shared encoder
    giving ``sha_m`` (B, d). ShaSpec's shared encoder has one set of weights for all modalities, which
    needs inputs of one shape; here each modality first goes through its own projection (an encoder of
    its config to a common ``projection_dim`` space), then through a trunk shared by every modality (an
    MLP). A residual composition layer, shared by the modalities, gives
    ``c_m = sha_m + W [spe_m, sha_m]``; the head sees the M composed features concatenated in training
    order. A missing modality's slot is filled with the mean shared feature of the available ones
    (ShaSpec's substitution), so any subset predicts. A linear modality classifier on the specific
    features serves the domain loss.

    If you use this model in your research, please cite:

    * https://doi.org/10.1109/CVPR52729.2023.01505
    """

    def __init__(
        self,
        encoders: Mapping[str, Mapping[str, Any]],
        embed_dim: int,
        output_dim: int,
        projection_dim: int | None = None,
        shared_hidden_dims: Sequence[int] | None = None,
        head_hidden_dim: int | None = None,
    ) -> None:
        """Initialize a new ShaSpecModel instance.

        Args:
            encoders: Modality mapped to its encoder config (specific encoder and projection).
            embed_dim: Size d of the specific, shared and composed features.
            output_dim: Size of the raw task output.
            projection_dim: Size of the common space the projections map to (default 2 x embed_dim).
            shared_hidden_dims: Hidden widths of the shared trunk (default one layer of projection_dim).
            head_hidden_dim: Hidden width of the head, or None for a linear head.
        """
        super().__init__()
        self.modalities = tuple(encoders)
        width = projection_dim or 2 * embed_dim
        self.specific = nn.ModuleDict(
            {m: build_encoder(c, embed_dim) for m, c in encoders.items()}
        )
        self.projections = nn.ModuleDict(
            {m: build_encoder(c, width) for m, c in encoders.items()}
        )
        self.shared = build_encoder(
            {
                'name': 'mlp',
                'in_features': width,
                'hidden_dims': [width]
                if shared_hidden_dims is None
                else list(shared_hidden_dims),
            },
            embed_dim,
        )
        self.composition = nn.Linear(2 * embed_dim, embed_dim)
        self.head = Head(len(encoders) * embed_dim, output_dim, head_hidden_dim)
        self.modality_classifier = nn.Linear(embed_dim, len(encoders))

    def encoder(self, modality: str) -> Encoder:
        """Return the specific encoder of a modality.

        Args:
            modality: A modality name.

        Returns:
            The encoder.
        """
        return cast(Encoder, self.specific[modality])

    def encode(
        self, inputs: Mapping[str, tuple[Tensor, Tensor | None]]
    ) -> dict[str, SharedSpecific]:
        """Encode each available modality.

        Args:
            inputs: Modality mapped to (input, validity mask).

        Returns:
            Modality mapped to its specific and shared features.
        """
        return {
            m: SharedSpecific(
                self.specific[m](x, valid), self.shared(self.projections[m](x, valid))
            )
            for m, (x, valid) in inputs.items()
        }

    def predict(
        self, features: Mapping[str, SharedSpecific], keep: Mapping[str, Tensor]
    ) -> Tensor:
        """Predict with per-sample missing modalities filled by the mean available shared feature.

        Args:
            features: Modality mapped to its features (at least the kept modalities).
            keep: Modality mapped to the (B,) bool mask of the samples that have it; every sample has at
                least one.

        Returns:
            Raw outputs.
        """
        present = [m for m in self.modalities if m in keep]
        weights = torch.stack([keep[m] for m in present]).to(
            features[present[0]].shared.dtype
        )
        shared = torch.stack([features[m].shared for m in present])
        substitute = (weights.unsqueeze(-1) * shared).sum(0) / weights.sum(0).unsqueeze(
            -1
        )
        slots = []
        for modality in self.modalities:
            if modality not in keep:
                slots.append(substitute)
                continue
            specific, own = features[modality]
            composed = own + self.composition(torch.cat([specific, own], dim=1))
            slots.append(torch.where(keep[modality].unsqueeze(1), composed, substitute))
        out: Tensor = self.head(torch.cat(slots, dim=1))
        return out
