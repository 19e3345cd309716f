# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch
from torch import nn

from torchgeo_colearn.models.temporal_conv import (
    SHIFTED_TAPS_MIN_CHANNELS,
    Algorithm,
    TemporalConv,
    tap_rows,
)

from .gradients import grads


def reference_of(conv: TemporalConv) -> nn.Conv1d:
    """The nn.Conv1d with the weights of *conv*."""
    reference = nn.Conv1d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        padding=conv.kernel_size // 2,
        groups=conv.groups,
    )
    reference.load_state_dict(conv.state_dict())
    return reference


@pytest.mark.parametrize('algorithm', ['windows', 'shifted_taps'])
@pytest.mark.parametrize(
    'in_channels,out_channels,kernel,groups,steps',
    [
        (3, 8, 5, 1, 7),
        (8, 6, 3, 2, 7),
        (6, 9, 5, 3, 4),
        (4, 6, 5, 2, 1),
        (4, 4, 7, 1, 2),
    ],
)
def test_temporal_conv_equals_conv1d(
    algorithm: Algorithm,
    in_channels: int,
    out_channels: int,
    kernel: int,
    groups: int,
    steps: int,
) -> None:
    conv = TemporalConv(in_channels, out_channels, kernel, groups, algorithm)
    reference = reference_of(conv)
    x = torch.randn(steps, 4, in_channels, requires_grad=True)  # (T, B, C)
    out = conv(x)
    expected = reference(x.permute(1, 2, 0)).permute(2, 0, 1)
    assert out.shape == (steps, 4, out_channels)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert reference.bias is not None
    got = grads(out, [x, conv.weight, conv.bias])
    want = grads(expected, [x, reference.weight, reference.bias])
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1], want[1].transpose(1, 2), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[2], want[2], atol=1e-5, rtol=1e-4)
    with (
        torch.no_grad()
    ):  # inference runs other code: the plain windows, the forward of the taps
        torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('algorithm', ['windows', 'shifted_taps'])
@pytest.mark.parametrize('steps', [5, 2])
def test_temporal_conv_gradcheck(algorithm: Algorithm, steps: int) -> None:
    conv = TemporalConv(4, 6, 5, groups=2, algorithm=algorithm).double()
    x = torch.randn(steps, 2, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_tap_rows() -> None:
    # T = 4, K = 5: the outer taps read 2 real steps, the next ones 3, the centre 4
    assert tap_rows(5, 4, 1) == [
        (0, slice(2, 4), slice(0, 2)),
        (1, slice(1, 4), slice(0, 3)),
        (2, slice(0, 4), slice(0, 4)),
        (3, slice(0, 3), slice(1, 4)),
        (4, slice(0, 2), slice(2, 4)),
    ]
    # rows of a (T*B, C) series: B rows per step
    assert tap_rows(5, 4, 3)[0] == (0, slice(6, 12), slice(0, 6))
    # T = 1: only the centre tap reads a real step
    assert tap_rows(5, 1, 2) == [(2, slice(0, 2), slice(0, 2))]


def test_temporal_conv_taps_without_real_steps_get_zero_gradient() -> None:
    conv = TemporalConv(2, 2, 5, algorithm='shifted_taps')
    conv(torch.randn(1, 3, 2)).sum().backward()
    assert conv.weight.grad is not None
    assert torch.equal(conv.weight.grad[:, [0, 1, 3, 4]], torch.zeros(2, 4, 2))
    assert conv.weight.grad[:, 2].abs().sum() > 0


def test_temporal_conv_algorithm_by_channels() -> None:
    wide = 2 * SHIFTED_TAPS_MIN_CHANNELS
    assert TemporalConv(wide, 4, 5, groups=2).shifted_taps
    assert not TemporalConv(wide, 4, 5, groups=4).shifted_taps
    assert not TemporalConv(8, 4, 5).shifted_taps
    assert TemporalConv(8, 4, 5, algorithm='shifted_taps').shifted_taps
    assert not TemporalConv(wide, 4, 5, algorithm='windows').shifted_taps


def test_temporal_conv_exported_uses_plain_operators() -> None:
    conv = TemporalConv(4, 6, 5, groups=2, algorithm='shifted_taps').eval()
    x = torch.randn(3, 2, 4)
    exported = torch.export.export(conv, (x,))
    graph = str(exported.graph)
    assert 'aten.unfold' in graph and 'addmm' not in graph
    torch.testing.assert_close(exported.module()(x), conv(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('algorithm', ['windows', 'shifted_taps'])
def test_temporal_conv_follows_autocast(algorithm: Algorithm) -> None:
    conv = TemporalConv(4, 6, 3, groups=2, algorithm=algorithm)
    reference = reference_of(conv)
    x = torch.randn(5, 3, 4, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = conv(x)
        expected = reference(x.permute(1, 2, 0)).permute(2, 0, 1)
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, atol=0.05, rtol=0.05)
    out.float().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32


def test_temporal_conv_state_dict_round_trip() -> None:
    conv = TemporalConv(4, 6, 5, groups=2)
    assert conv.state_dict()['weight'].shape == (6, 2, 5)  # nn.Conv1d layout
    other = TemporalConv(4, 6, 5, groups=2)
    other.load_state_dict(conv.state_dict())
    x = torch.randn(4, 3, 4)
    assert torch.equal(other(x), conv(x))


def test_temporal_conv_same_initialisation() -> None:
    torch.manual_seed(0)
    conv = TemporalConv(3, 5, 5)
    torch.manual_seed(0)
    reference = nn.Conv1d(3, 5, 5, padding=2)
    assert torch.equal(conv.state_dict()['weight'], reference.weight)
    assert reference.bias is not None
    assert torch.equal(conv.bias, reference.bias)


@pytest.mark.parametrize(
    'args,match',
    [
        ((3, 4, 4, 1), 'odd'),
        ((4, 6, 3, 4), 'divisible'),
        ((4, 6, 3, 1, 'toeplitz'), "algorithm must be .* got 'toeplitz'"),
    ],
)
def test_temporal_conv_bad_arguments(args: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TemporalConv(*args)  # type: ignore[arg-type]
