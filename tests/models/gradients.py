# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The gradients the layer tests compare."""

import torch
from torch import Tensor


def grads(outputs: Tensor, inputs: list[Tensor], seed: int = 0) -> list[Tensor]:
    """Return the gradients of a fixed random projection of *outputs* with respect to *inputs*."""
    weights = torch.randn(outputs.shape, generator=torch.Generator().manual_seed(seed))
    return list(torch.autograd.grad((outputs * weights).sum(), inputs))
