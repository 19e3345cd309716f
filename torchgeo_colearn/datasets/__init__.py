# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-modal Earth observation datasets."""

from .tensor import TensorMultiModalDataset

__all__ = ('TensorMultiModalDataset',)
