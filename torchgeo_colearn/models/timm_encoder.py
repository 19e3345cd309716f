# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Any timm image model as a (C, H, W) encoder, optionally with TorchGeo pretrained weights."""

import warnings
from typing import cast

import timm
from torch import Tensor, nn
from torchgeo.models import get_weight

from .encoder import Encoder, register_encoder


@register_encoder('timm')
class TimmEncoder(Encoder):
    """A timm backbone (global-pooled features) followed by a linear projection.

    The backbone takes any number of input channels (``in_chans``). Pretrained weights are given by
    TorchGeo weight name, e.g. ``'ResNet18_Weights.SENTINEL2_ALL_MOCO'``: parameters whose shape does not
    fit (the first convolution for another band count, the classifier) are left at their initialisation
    with a warning that names them. ``'imagenet'`` takes timm's own pretrained weights, whose first
    convolution timm adapts to the band count (the MDiCo authors' aerial encoder).
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        model: str = 'resnet18',
        weights: str | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        """Initialize a new TimmEncoder instance.

        Args:
            in_channels: Number of input bands.
            out_dim: Size of the output embedding.
            model: timm model name, e.g. 'resnet18', 'resnet50', 'efficientnet_b0'.
            weights: TorchGeo weight name (see :func:`torchgeo.models.get_weight`), 'imagenet' for timm's
                pretrained weights, or None for a random initialisation. Loading downloads the weights once
                into the torch hub (or Hugging Face) cache.
            image_size: (H, W) if the model needs a fixed size (ViTs); None accepts any size.
        """
        super().__init__()
        self.input_shape = (in_channels, *(image_size or (None, None)))
        self.out_dim = out_dim
        self.backbone: nn.Module = timm.create_model(
            model, pretrained=False, in_chans=in_channels, num_classes=0
        )
        if weights is not None:
            self._load(weights)
        self.projection = nn.Linear(cast(int, self.backbone.num_features), out_dim)

    def _load(self, name: str) -> None:
        """Load TorchGeo pretrained weights into the backbone.

        Args:
            name: TorchGeo weight name.
        """
        state_dict = get_weight(name).get_state_dict(progress=True)
        own = self.backbone.state_dict()
        fitting = {
            k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape
        }
        skipped = sorted(set(state_dict) - set(fitting))
        if skipped:
            warnings.warn(
                f'{name}: parameters left at their initialisation: {skipped}',
                UserWarning,
            )
        self.backbone.load_state_dict(fitting, strict=False)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Encode a batch of images.

        Args:
            x: (B, C, H, W) batch.
            valid: Unused (images have no time axis).

        Returns:
            Embeddings, shape (B, out_dim).
        """
        out: Tensor = self.projection(self.backbone(x))
        return out
