# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Grouped and channels-last layers: several independent copies of a layer run as one module.

The encoders are small: at the usual batch sizes a training step costs more in per-operation overhead
than in arithmetic. These layers let an encoder run ``groups`` independent copies of itself on the same
input with one module call per layer (MDiCo's specific and shared encoders), and keep features
channels-last, (..., C), where batch normalisation is several times faster on CPU than on (B, C, T).
The temporal convolution of these layouts is in :mod:`.temporal_conv`.

Every parameter and buffer keeps the shape and initialisation of the torch layer it subclasses, with
the groups stacked along the first axis: a layer with ``groups=1`` loads the state dict of the plain
torch layer, and the state dicts of ``groups`` separate layers concatenated along the first axis load
into the grouped one.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _GroupedLinearFunction(torch.autograd.Function):
    """Linear maps of consecutive feature blocks, with each block's product written in place.

    Autograd over per-group ``F.linear`` calls would concatenate the outputs in the forward pass and
    split and concatenate the gradients in the backward pass; here every product writes straight into
    its block of one output (or gradient) tensor.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, groups: int
    ) -> Tensor:
        """Compute (N, G*in) @ block-diag(W_g^T) + b.

        Args:
            ctx: Autograd context.
            x: (N, groups * in) features.
            weight: (groups * out, in) weights.
            bias: (groups * out,) biases, or None.
            groups: Number of groups.

        Returns:
            (N, groups * out) outputs.
        """
        x = x.to(weight.dtype)
        size_in = weight.shape[1]
        size_out = weight.shape[0] // groups
        out = x.new_empty(x.shape[0], weight.shape[0])
        for group in range(groups):
            rows = slice(group * size_out, (group + 1) * size_out)
            x_group = x[:, group * size_in : (group + 1) * size_in]
            if bias is None:
                torch.mm(x_group, weight[rows].t(), out=out[:, rows])
            else:
                torch.addmm(bias[rows], x_group, weight[rows].t(), out=out[:, rows])
        ctx.save_for_backward(x, weight)
        ctx.groups = groups
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(
        ctx: Any, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        """Compute the gradients of the input, weights and biases.

        Args:
            ctx: Autograd context.
            grad: (N, groups * out) gradient of the outputs.

        Returns:
            The gradients of x, weight and bias, and None for groups.
        """
        x, weight = ctx.saved_tensors
        groups: int = ctx.groups
        grad = grad.to(weight.dtype)
        size_in = weight.shape[1]
        size_out = weight.shape[0] // groups
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad.new_empty(x.shape)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.empty_like(weight)
        for group in range(groups):
            rows = slice(group * size_out, (group + 1) * size_out)
            columns = slice(group * size_in, (group + 1) * size_in)
            if grad_x is not None:
                torch.mm(grad[:, rows], weight[rows], out=grad_x[:, columns])
            if grad_weight is not None:
                torch.mm(grad[:, rows].t(), x[:, columns], out=grad_weight[rows])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias, None


def grouped_linear(
    x: Tensor, weight: Tensor, bias: Tensor | None, groups: int
) -> Tensor:
    """Apply ``groups`` independent linear maps to the consecutive feature blocks of *x*.

    Args:
        x: (..., groups * in) features, group g in the block ``[g * in, (g + 1) * in)``.
        weight: (groups * out, in) weights, group g in rows ``[g * out, (g + 1) * out)``.
        bias: (groups * out,) biases, or None.
        groups: Number of groups.

    Returns:
        (..., groups * out) outputs, group g in its block.
    """
    if groups == 1:
        return F.linear(x, weight, bias)
    if not custom_backward():
        # plain operators (no custom autograd function): inference, and exports that trace them
        parts = x.chunk(groups, -1)
        weights = weight.chunk(groups, 0)
        biases = bias.chunk(groups, 0) if bias is not None else [None] * groups
        return torch.cat(
            [F.linear(p, w, b) for p, w, b in zip(parts, weights, biases, strict=True)],
            -1,
        )
    flat, weight, bias = autocast_operands(x.reshape(-1, x.shape[-1]), weight, bias)
    out: Tensor = _GroupedLinearFunction.apply(flat, weight, bias, groups)
    return out.view(*x.shape[:-1], -1)


def capturing_graph() -> bool:
    """Tell whether the model is being traced or compiled.

    Returns:
        True under TorchScript tracing and :func:`torch.compile` / :func:`torch.export`, which
        capture plain operators only (no custom autograd functions, no in-place writes into views).
    """
    tracing: bool = torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
    return tracing or torch.compiler.is_compiling()


def custom_backward() -> bool:
    """Tell whether the layers may use their custom autograd functions (faster backward).

    Returns:
        False when no gradient is recorded or when the graph is captured (:func:`capturing_graph`).
    """
    return torch.is_grad_enabled() and not capturing_graph()


def autocast_operands(
    x: Tensor, weight: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Cast the operands of a custom linear operation as autocast casts those of ``F.linear``.

    Autocast does not reach into custom functions and hand-written matrix products.

    Args:
        x: Input features.
        weight: Weights.
        bias: Biases, or None.

    Returns:
        The three operands in autocast's dtype for *x*'s device where autocast is on, else unchanged.
    """
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return x, weight, bias
    dtype = torch.get_autocast_dtype(device)
    return x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


class GroupedLinear(nn.Linear):
    """``groups`` independent linear layers: (B, G*in) -> (B, G*out), or (B, in) -> (B, G*out).

    Each group reads its own block of the input, or, with ``shared_input``, all groups read the same
    input. The parameters are those of ``nn.Linear(in_features, groups * out_features)`` (same
    initialisation, fan-in ``in_features``), group g in rows ``[g * out, (g + 1) * out)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        groups: int = 1,
        shared_input: bool = False,
    ) -> None:
        """Initialize a new GroupedLinear instance.

        Args:
            in_features: Input size of each group.
            out_features: Output size of each group.
            groups: Number of independent groups.
            shared_input: All groups read the same (B, in_features) input.
        """
        super().__init__(in_features, groups * out_features)
        self.groups = groups
        self.shared_input = shared_input

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers.

        Args:
            x: (..., groups * in_features) features, or (..., in_features) with ``shared_input``.

        Returns:
            (..., groups * out_features) outputs.
        """
        groups = 1 if self.shared_input else self.groups
        return grouped_linear(x, self.weight, self.bias, groups)


class ConvertOnLoad(nn.Module):
    """A module that converts its entries of a state dict before they load.

    Subclasses implement :meth:`convert_state_dict`; ``load_state_dict`` calls it for this module's
    prefix, then loads as ``nn.Module`` does.
    """

    def convert_state_dict(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Convert this module's entries of a state dict being loaded, in place.

        Args:
            state_dict: The state dict being loaded (a copy owned by ``load_state_dict``).
            prefix: This module's key prefix.
        """
        raise NotImplementedError

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Convert this module's entries with :meth:`convert_state_dict`, then load them.

        Args:
            state_dict: The state dict being loaded (a copy owned by ``load_state_dict``).
            prefix: This module's key prefix.
            local_metadata: Metadata of this module.
            strict: Whether unexpected or missing keys are errors.
            missing_keys: Missing keys found so far.
            unexpected_keys: Unexpected keys found so far.
            error_msgs: Errors found so far.
        """
        self.convert_state_dict(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict,
            prefix,
            local_metadata,
            strict,
            missing_keys,
            unexpected_keys,
            error_msgs,
        )


class ChannelsLastBatchNorm(nn.BatchNorm1d):
    """Batch normalisation of the last axis of (..., C) features: ``nn.BatchNorm1d(C)`` of (N, C).

    For (B, T, C) series the statistics run over B and T, as ``nn.BatchNorm1d`` does on (B, C, T).
    """

    def forward(self, x: Tensor) -> Tensor:
        """Normalise.

        Args:
            x: (..., num_features) features.

        Returns:
            The normalised features, same shape.
        """
        out: Tensor = super().forward(x.reshape(-1, x.shape[-1]))
        return out.view(x.shape)


class GroupedLayerNorm(nn.LayerNorm):
    """``groups`` independent LayerNorms over consecutive feature blocks: (B, G*d) -> (B, G*d).

    The affine parameters are those of ``nn.LayerNorm(groups * d)``, group g in ``[g * d, (g + 1) * d)``.
    """

    def __init__(self, normalized_size: int, groups: int = 1) -> None:
        """Initialize a new GroupedLayerNorm instance.

        Args:
            normalized_size: Size d of each group.
            groups: Number of independent groups.
        """
        super().__init__(groups * normalized_size)
        self.groups = groups
        self.normalized_size = normalized_size

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each group.

        Args:
            x: (..., groups * d) features.

        Returns:
            The normalised features, same shape.
        """
        if self.groups == 1:
            return F.layer_norm(
                x, self.normalized_shape, self.weight, self.bias, self.eps
            )
        grouped = x.view(*x.shape[:-1], self.groups, self.normalized_size)
        normalised = F.layer_norm(grouped, (self.normalized_size,), eps=self.eps)
        affine = torch.addcmul(
            self.bias.view(self.groups, -1),
            normalised,
            self.weight.view(self.groups, -1),
        )
        return affine.flatten(-2)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with its mask drawn from uniform numbers, about twice as fast on CPU.

    Keeps each element with probability 1 - p and scales it by 1 / (1 - p), as ``nn.Dropout``; only
    the random stream differs.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Drop elements in training mode.

        Args:
            x: Any tensor.

        Returns:
            *x* with dropped elements zeroed and the others scaled (training), or *x* (evaluation).
        """
        if not self.training or self.p == 0:
            return x
        scale = 1 / (1 - self.p) if self.p < 1 else 0.0
        mask = torch.rand_like(x).ge_(self.p).mul_(scale)
        return x * mask
