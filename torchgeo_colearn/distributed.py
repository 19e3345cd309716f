# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Collectives for training on several processes (Lightning's DDP); no-ops in a single process.

Every function here must be called by every process of the default process group, in the same order
(they are collectives); a single process (``torch.distributed`` not initialised, or a world of one)
never communicates.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd.function import FunctionCtx

T = TypeVar('T')


def world_size() -> int:
    """Return the number of processes of the default process group.

    Returns:
        1 when ``torch.distributed`` is unavailable or not initialised.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class _GatherBatches(torch.autograd.Function):
    """All-gather along the batch axis whose backward returns each process its rows' summed gradient.

    Process r's loss may depend on the rows of every process, so the gradient of a local row is the sum
    over processes of their losses' gradients: the backward all-reduces the gathered gradient and keeps
    the local rows (what ``torch.distributed.nn.functional.all_gather`` does, deprecated in torch 2.9+,
    here also for batches of different sizes).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, tensor: Tensor, sizes: list[int]) -> Tensor:
        rank = dist.get_rank()
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        pieces = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(pieces, padded.contiguous())
        ctx.rows = (sum(sizes[:rank]), sizes[rank])  # type: ignore[attr-defined]
        return torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start, size = ctx.rows
        return grad[start : start + size], None


def gather_batches(tensor: Tensor) -> tuple[Tensor, int]:
    """Concatenate every process's batch, in rank order, keeping the gradient of the local rows.

    In a single process this returns *tensor* itself. Otherwise the batch sizes are exchanged first
    (one small collective, read back to the host), so processes may hold batches of different sizes.

    Args:
        tensor: This process's batch, shape (B, ...).

    Returns:
        The (N, ...) batches of every process (N the sum of their sizes) and the index of this process's
        first row in it. The gradient that flows back into *tensor* is the sum over processes of the
        gradients of their losses with respect to these rows.
    """
    if world_size() == 1:
        return tensor, 0
    local = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    counts = [int(size) for size in torch.cat(sizes).tolist()]
    gathered: Tensor = _GatherBatches.apply(tensor, counts)
    return gathered, sum(counts[: dist.get_rank()])


def sum_across_processes(tensor: Tensor) -> Tensor:
    """Sum a tensor over the processes.

    Args:
        tensor: This process's values.

    Returns:
        The element-wise sum over processes (*tensor* itself in a single process).
    """
    if world_size() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def computed_on_rank_zero(compute: Callable[[], T]) -> T:
    """Compute a value on the process of rank 0 only and give it to every process.

    Args:
        compute: Function computing the value; it runs on rank 0 only (in a single process, here).

    Returns:
        Rank 0's value, on every process (sent pickled: tensors arrive on the CPU they left).
    """
    if world_size() == 1:
        return compute()
    box: list[Any] = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    value: T = box[0]
    return value
