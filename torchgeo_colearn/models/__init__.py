# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Modality encoders and the MDiCo model."""

from .encoder import ENCODERS, Encoder, build_encoder, register_encoder
from .mlp import MLP
from .tempcnn import TempCNN
from .timm_encoder import TimmEncoder

__all__ = (
    'ENCODERS',
    'MLP',
    'Encoder',
    'TempCNN',
    'TimmEncoder',
    'build_encoder',
    'register_encoder',
)
