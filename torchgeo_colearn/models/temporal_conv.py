# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Same-padded temporal convolution of time-major, channels-last series, (T, B, C), as matrix products.

Two ways compute the same convolution:

* **windows** (im2col): gather the zero-padded windows of every step as the rows of one (T*B, K*C)
  matrix and multiply it by the weights once per group. Best for few input channels, where one product
  with K*C columns beats K thin ones.
* **shifted taps**: for each tap k, multiply the steps it reads by that tap's weights and add the
  product into the output steps it feeds. In the time-major layout the steps a tap reads, and the steps
  it writes, are contiguous blocks of rows, so no window matrix is built, and products with the zero
  padding are never computed: with T = 4 steps and a kernel of 5 that is 6 of 20 window slots.

``TemporalConv(algorithm='auto')`` takes the shifted taps from :data:`SHIFTED_TAPS_MIN_CHANNELS` input
channels per group on; ``benchmarks/temporal_conv.py`` measures both.
"""

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    ConvertOnLoad,
    autocast_operands,
    capturing_graph,
    custom_backward,
    grouped_linear,
)

#: Input channels per group from which ``algorithm='auto'`` takes the shifted taps. Measured with
#: ``benchmarks/conv_algorithms.py`` (one thread, training and inference): with 128 channels per group the
#: shifted taps were faster at every measured length and batch (median ratios 1.10 to 1.55), with 64
#: about even (0.91 to 0.99), with 16 and 32 slower (0.60 to 0.89).
SHIFTED_TAPS_MIN_CHANNELS = 128

#: How a :class:`TemporalConv` computes: 'windows' (im2col), 'shifted_taps', or 'auto' (by channels).
Algorithm = Literal['auto', 'windows', 'shifted_taps']


def tap_rows(kernel: int, steps: int, batch: int) -> list[tuple[int, slice, slice]]:
    """List the taps of a same-padded kernel that read real steps, with the rows involved.

    Args:
        kernel: Odd kernel size K; tap k reads step t + k - K // 2 for output step t.
        steps: Series length T.
        batch: Batch size B; row t * B + b of a flattened (T*B, C) series is step t of sample b.

    Returns:
        (tap, output rows, input rows) per tap that reads at least one real step: the rows of the output
        steps it feeds and the rows of the input steps they read, two contiguous blocks of equal length.
    """
    padding = kernel // 2
    rows = []
    for tap in range(kernel):
        offset = tap - padding
        first, end = max(0, -offset), min(steps, steps - offset)
        if first < end:
            written = slice(first * batch, end * batch)
            read = slice((first + offset) * batch, (end + offset) * batch)
            rows.append((tap, written, read))
    return rows


def shifted_taps_conv(x: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
    """Convolve a time-major series tap by tap (no autograd function: forward only).

    Args:
        x: (T, B, C_in) series.
        weight: (C_out, K, C_in / groups) weights, tap-major.
        bias: (C_out,) biases.
        groups: Number of channel groups.

    Returns:
        (T*B, C_out) outputs, rows in (step, sample) order.
    """
    steps, batch, channels = x.shape
    kernel = weight.shape[1]
    padding = kernel // 2
    flat = x.reshape(steps * batch, channels)
    out = flat.new_empty(steps * batch, weight.shape[0])
    rows_out, rows_in = weight.shape[0] // groups, channels // groups
    for group in range(groups):
        outputs = slice(group * rows_out, (group + 1) * rows_out)
        inputs = slice(group * rows_in, (group + 1) * rows_in)
        group_weight = weight[outputs]
        # the centre tap reads every step: it initialises the output, with the bias
        torch.addmm(
            bias[outputs],
            flat[:, inputs],
            group_weight[:, padding].t(),
            out=out[:, outputs],
        )
        for tap, written, read in tap_rows(kernel, steps, batch):
            if tap != padding:
                out[written, outputs].addmm_(
                    flat[read, inputs], group_weight[:, tap].t()
                )
    return out


class _ShiftedTapsConv(torch.autograd.Function):
    """:func:`shifted_taps_conv` with its backward, tap by tap as well."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, groups: int
    ) -> Tensor:
        """Convolve.

        Args:
            ctx: Autograd context.
            x: (T, B, C_in) series.
            weight: (C_out, K, C_in / groups) weights, tap-major.
            bias: (C_out,) biases.
            groups: Number of channel groups.

        Returns:
            (T*B, C_out) outputs, rows in (step, sample) order.
        """
        ctx.save_for_backward(x, weight)
        ctx.groups = groups
        return shifted_taps_conv(x, weight, bias, groups)

    @staticmethod
    def backward(
        ctx: Any, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        """Compute the gradients of the input, weights and biases.

        Args:
            ctx: Autograd context.
            grad: (T*B, C_out) gradient of the outputs.

        Returns:
            The gradients of x, weight and bias, and None for groups.
        """
        x, weight = ctx.saved_tensors
        groups: int = ctx.groups
        steps, batch, channels = x.shape
        kernel = weight.shape[1]
        padding = kernel // 2
        flat = x.reshape(steps * batch, channels)
        grad = grad.to(weight.dtype)
        grad_x = torch.empty_like(flat) if ctx.needs_input_grad[0] else None
        taps = tap_rows(kernel, steps, batch)
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = torch.empty_like(weight)
            # taps that read only padding (series shorter than the kernel's reach) get no gradient
            unread = sorted(set(range(kernel)) - {tap for tap, _, _ in taps})
            grad_weight[:, unread] = 0
        rows_out, rows_in = weight.shape[0] // groups, channels // groups
        for group in range(groups):
            outputs = slice(group * rows_out, (group + 1) * rows_out)
            inputs = slice(group * rows_in, (group + 1) * rows_in)
            group_weight = weight[outputs]
            if grad_x is not None:
                torch.mm(
                    grad[:, outputs], group_weight[:, padding], out=grad_x[:, inputs]
                )
            for tap, written, read in taps:
                if grad_x is not None and tap != padding:
                    grad_x[read, inputs].addmm_(
                        grad[written, outputs], group_weight[:, tap]
                    )
                if grad_weight is not None:
                    torch.mm(
                        grad[written, outputs].t(),
                        flat[read, inputs],
                        out=grad_weight[outputs, tap],
                    )
        grad_bias = grad.sum(0) if ctx.needs_input_grad[2] else None
        return (
            None if grad_x is None else grad_x.view(x.shape),
            grad_weight,
            grad_bias,
            None,
        )


def temporal_windows(x: Tensor, kernel: int, groups: int) -> Tensor:
    """Return the zero-padded windows of a time-major series as rows (im2col).

    Args:
        x: (T, B, C) series, C = groups * channels per group.
        kernel: Odd window length; the series is zero-padded by kernel // 2 at both ends.
        groups: Number of channel groups.

    Returns:
        (T*B, C*K) windows, rows in (step, sample) order: group g in columns
        ``[g * K * C/G, (g + 1) * K * C/G)``, in (tap, channel) order. With gradients recorded, the
        backward is a direct scatter-add of the windows.
    """
    if custom_backward():
        windows: Tensor = _TemporalWindows.apply(x, kernel, groups)
        return windows
    padding = kernel // 2
    padded = F.pad(x, (0, 0, 0, 0, padding, padding))
    steps, batch, channels = padded.shape
    unfolded = padded.unfold(0, kernel, 1)  # (T, B, C, K)
    windows = unfolded.reshape(steps - 2 * padding, batch, groups, -1, kernel)
    return windows.transpose(3, 4).reshape(-1, channels * kernel)


class _TemporalWindows(torch.autograd.Function):
    """The zero-padded windows of a time-major series as rows (im2col), with a direct backward.

    The windows are laid out (group, tap, channel), so that both the gather and the backward's
    scatter-add move whole runs of channels; autograd's backward of a strided view would be a general
    strided scatter.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, kernel: int, groups: int) -> Tensor:
        """Gather the windows.

        Args:
            ctx: Autograd context.
            x: (T, B, C) series, C = groups * channels per group.
            kernel: Odd window length; the series is zero-padded by kernel // 2 at both ends.
            groups: Number of channel groups.

        Returns:
            (T*B, C*K) windows, rows in (step, sample) order: group g in columns
            ``[g * K * C/G, (g + 1) * K * C/G)``, in (tap, channel) order.
        """
        steps, batch, channels = x.shape
        padding = kernel // 2
        ctx.kernel = kernel
        ctx.groups = groups
        ctx.shape = x.shape
        padded = F.pad(x, (0, 0, 0, 0, padding, padding))
        step_stride = padded.stride(0)
        windows = padded.as_strided(
            (steps, batch, groups, kernel, channels // groups),
            (step_stride, channels, channels // groups, step_stride, 1),
        )
        return windows.reshape(steps * batch, channels * kernel)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        """Sum the gradient of every window back onto the steps it read.

        Args:
            ctx: Autograd context.
            grad: (T*B, C*K) gradient of the windows.

        Returns:
            The (T, B, C) gradient of x, and None for kernel and groups.
        """
        kernel: int = ctx.kernel
        groups: int = ctx.groups
        steps, batch, channels = ctx.shape
        padding = kernel // 2
        taps = grad.view(steps, batch, groups, kernel, channels // groups)
        padded = grad.new_zeros(steps + 2 * padding, batch, groups, channels // groups)
        for tap in range(kernel):
            padded[tap : tap + steps].add_(taps[:, :, :, tap])
        return padded[padding : padding + steps].flatten(2), None, None


class TemporalConv(ConvertOnLoad):
    """Same-padded temporal convolution of time-major series, (T, B, C_in) -> (T, B, C_out).

    Computes ``nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
    groups=groups)`` on the (B, C, T) view of the series, as matrix products that keep the series
    time-major and channels-last (see the module's docstring for the two algorithms). With
    ``groups=1`` and ``out_channels = G * C`` it runs G independent convolutions on the same input.

    The weight is stored tap-major, (C_out, K, C_in / groups), the layout of the products; the state
    dict holds it in the ``nn.Conv1d`` layout, (C_out, C_in / groups, K), with the same
    initialisation, so that state dicts of ``nn.Conv1d`` load and the copies stack along the first axis.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        groups: int = 1,
        algorithm: Algorithm = 'auto',
    ) -> None:
        """Initialize a new TemporalConv instance.

        Args:
            in_channels: Input channels (all groups).
            out_channels: Output channels (all groups).
            kernel_size: Temporal kernel size, odd.
            groups: Number of independent groups of channels.
            algorithm: 'windows' (im2col), 'shifted_taps', or 'auto': shifted taps from
                :data:`SHIFTED_TAPS_MIN_CHANNELS` input channels per group on. Traced and compiled
                graphs always use the windows, as plain operators.

        Raises:
            ValueError: If the kernel size is even, the channels do not split into the groups, or
                the algorithm is unknown.
        """
        super().__init__()
        if kernel_size % 2 == 0:
            msg = f'TemporalConv kernel_size must be odd to keep the length, got {kernel_size}'
            raise ValueError(msg)
        if in_channels % groups or out_channels % groups:
            msg = (
                f'TemporalConv channels ({in_channels} in, {out_channels} out) must be '
                f'divisible by groups={groups}'
            )
            raise ValueError(msg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.groups = groups
        match algorithm:
            case 'auto':
                self.shifted_taps = in_channels // groups >= SHIFTED_TAPS_MIN_CHANNELS
            case 'windows' | 'shifted_taps':
                self.shifted_taps = algorithm == 'shifted_taps'
            case _:
                raise ValueError(
                    "TemporalConv algorithm must be 'auto', 'windows' or "
                    f"'shifted_taps', got {algorithm!r}"
                )
        reference = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=groups,
        )
        self.weight = nn.Parameter(
            reference.weight.detach().transpose(1, 2).contiguous()
        )
        assert reference.bias is not None
        self.bias = nn.Parameter(reference.bias.detach())

    def forward(self, x: Tensor) -> Tensor:
        """Convolve over time.

        Args:
            x: (T, B, in_channels) series.

        Returns:
            (T, B, out_channels) series.
        """
        steps, batch, _ = x.shape
        if self.shifted_taps and not capturing_graph():
            x, weight, bias = autocast_operands(x, self.weight, self.bias)
            assert bias is not None
            x = x.to(weight.dtype)
            out: Tensor = (
                _ShiftedTapsConv.apply(x, weight, bias, self.groups)
                if torch.is_grad_enabled()
                else shifted_taps_conv(x, weight, bias, self.groups)
            )
        else:
            windows = temporal_windows(x, self.kernel_size, self.groups)
            out = grouped_linear(
                windows, self.weight.flatten(1), self.bias, self.groups
            )
        return out.view(steps, batch, -1)

    def _save_to_state_dict(
        self, destination: dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        """Save the weight in the ``nn.Conv1d`` layout (C_out, C_in / groups, K).

        Args:
            destination: The state dict being built.
            prefix: This module's key prefix.
            keep_vars: Keep the parameters attached to autograd.
        """
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + 'weight'] = destination[prefix + 'weight'].transpose(1, 2)

    def convert_state_dict(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Turn a weight saved in the ``nn.Conv1d`` layout into the tap-major one, in place.

        Args:
            state_dict: The state dict being loaded.
            prefix: This module's key prefix.
        """
        key = prefix + 'weight'
        if key in state_dict and state_dict[key].dim() == 3:
            state_dict[key] = state_dict[key].transpose(1, 2)
