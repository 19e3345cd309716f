# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchgeo_colearn.models.layers import (
    ChannelsLastBatchNorm,
    Dropout,
    GroupedLayerNorm,
    GroupedLinear,
    grouped_linear,
)

from .gradients import grads


@pytest.mark.parametrize('groups', [1, 2, 3])
def test_grouped_linear_equals_separate_layers(groups: int) -> None:
    layer = GroupedLinear(5, 4, groups)
    x = torch.randn(6, 5 * groups, requires_grad=True)
    expected = torch.cat(
        [
            F.linear(x[:, 5 * g : 5 * (g + 1)], w, b)
            for g, (w, b) in enumerate(
                zip(layer.weight.chunk(groups), layer.bias.chunk(groups))
            )
        ],
        dim=1,
    )
    out = layer(x)
    assert torch.allclose(out, expected, atol=1e-6)
    params = [x, layer.weight, layer.bias]
    for got, want in zip(grads(out, params), grads(expected, params)):
        assert torch.allclose(got, want, atol=1e-5)


def test_grouped_linear_shared_input() -> None:
    layer = GroupedLinear(5, 4, groups=3, shared_input=True)
    x = torch.randn(6, 5)
    assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias))


def test_grouped_linear_gradcheck() -> None:
    x = torch.randn(4, 6, dtype=torch.double, requires_grad=True)
    weight = torch.randn(10, 3, dtype=torch.double, requires_grad=True)
    bias = torch.randn(10, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, w, b: grouped_linear(a, w, b, 2), (x, weight, bias)
    )
    assert torch.autograd.gradcheck(
        lambda a, w: grouped_linear(a, w, None, 2), (x, weight)
    )


def test_grouped_linear_keeps_leading_axes() -> None:
    layer = GroupedLinear(3, 2, groups=2)
    x = torch.randn(4, 5, 6)
    assert torch.allclose(layer(x), layer(x.reshape(20, 6)).view(4, 5, 4), atol=1e-6)


def test_channels_last_batch_norm_equals_batch_norm_1d() -> None:
    norm = ChannelsLastBatchNorm(5)
    reference = nn.BatchNorm1d(5)
    x = torch.randn(4, 7, 5, requires_grad=True)
    out = norm(x)
    expected = reference(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(out, expected, atol=1e-5)
    assert norm.running_mean is not None and reference.running_mean is not None
    assert norm.running_var is not None and reference.running_var is not None
    assert torch.allclose(norm.running_mean, reference.running_mean)
    assert torch.allclose(norm.running_var, reference.running_var)
    assert torch.allclose(grads(out, [x])[0], grads(expected, [x])[0], atol=1e-5)


def test_grouped_layer_norm_equals_separate_norms() -> None:
    norm = GroupedLayerNorm(4, groups=3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(6, 12)
    expected = torch.cat(
        [
            F.layer_norm(x[:, 4 * g : 4 * (g + 1)], (4,), w, b)
            for g, (w, b) in enumerate(zip(norm.weight.chunk(3), norm.bias.chunk(3)))
        ],
        dim=1,
    )
    assert torch.allclose(norm(x), expected, atol=1e-5)
    single = GroupedLayerNorm(12)
    assert torch.allclose(single(x), F.layer_norm(x, (12,)), atol=1e-5)


def test_dropout() -> None:
    dropout = Dropout(0.25)
    x = torch.ones(200_000)
    out = dropout(x)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert torch.allclose(out[kept], torch.full_like(out[kept], 4 / 3))
    assert torch.equal(dropout.eval()(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    assert torch.equal(Dropout(0.0)(x), x)


def test_grouped_linear_follows_autocast() -> None:
    layer = GroupedLinear(3, 4, groups=2)
    x = torch.randn(5, 6, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x)
        # the same operands in bfloat16 as autocast gives F.linear, group by group
        expected = torch.cat(
            [
                F.linear(p, w, b)
                for p, w, b in zip(
                    x.chunk(2, -1), layer.weight.chunk(2), layer.bias.chunk(2)
                )
            ],
            -1,
        )
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected)
    out.float().sum().backward()
    # the parameters and the input keep float32 gradients
    assert layer.weight.grad is not None and layer.weight.grad.dtype == torch.float32
    assert x.grad is not None and x.grad.dtype == torch.float32
