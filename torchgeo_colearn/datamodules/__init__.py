# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-modal Earth observation datamodules."""

from .base import KFoldDataModule, MultiModalDataModule, kfold_split

__all__ = ('KFoldDataModule', 'MultiModalDataModule', 'kfold_split')
