# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import itertools
import math

import pytest
import torch

from torchgeo_colearn.losses import (
    TaskLoss,
    at_least_float32,
    contrastive_loss,
    nt_xent,
)


def nt_xent_by_hand(a: list[list[float]], b: list[list[float]], tau: float) -> float:
    """NT-Xent written out with plain Python loops."""
    views = a + b
    n = len(a)
    unit = [[x / math.sqrt(sum(v * v for v in vec)) for x in vec] for vec in views]
    total = 0.0
    for i in range(2 * n):
        sims = [
            sum(p * q for p, q in zip(unit[i], unit[j])) / tau for j in range(2 * n)
        ]
        positive = (i + n) % (2 * n)
        denominator = sum(math.exp(sims[j]) for j in range(2 * n) if j != i)
        total += -math.log(math.exp(sims[positive]) / denominator)
    return total / (2 * n)


A = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
B = [[0.5, 0.5], [-1.0, 1.0], [2.0, 0.5]]
C = [[0.0, -1.0], [1.0, -1.0], [0.3, 0.9]]


def test_nt_xent_by_hand() -> None:
    got = nt_xent(torch.tensor(A), torch.tensor(B), 0.5)
    assert got.item() == pytest.approx(nt_xent_by_hand(A, B, 0.5), rel=1e-5)


def test_nt_xent_symmetric() -> None:
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    assert nt_xent(a, b, 0.1).item() == pytest.approx(
        nt_xent(b, a, 0.1).item(), rel=1e-5
    )


def test_contrastive_three_modalities_mean() -> None:
    views = {'s1': torch.tensor(A), 's2': torch.tensor(B), 'dem': torch.tensor(C)}
    pairs = [(A, B), (A, C), (B, C)]
    expected = sum(nt_xent_by_hand(x, y, 0.1) for x, y in pairs) / 3
    assert contrastive_loss(views, 0.1).item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_three_modalities_sum_ordered() -> None:
    views = {'s1': torch.tensor(A), 's2': torch.tensor(B), 'dem': torch.tensor(C)}
    expected = sum(
        nt_xent_by_hand(x, y, 0.1) for x, y in itertools.permutations([A, B, C], 2)
    )
    got = contrastive_loss(views, 0.1, 'sum_ordered')
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_needs_two() -> None:
    with pytest.raises(ValueError, match='at least two modalities'):
        contrastive_loss({'s1': torch.randn(2, 3)}, 0.1)


def test_binary_weighted_by_hand() -> None:
    logits = torch.tensor([0.0, 2.0, -1.0])
    target = torch.tensor([1, 0, 0])
    weights = torch.tensor([0.5, 2.0])
    losses = [math.log(2), math.log(1 + math.exp(2.0)), math.log(1 + math.exp(-1.0))]
    sample_weights = [2.0, 0.5, 0.5]
    expected = sum(w * l for w, l in zip(sample_weights, losses)) / sum(sample_weights)
    got = TaskLoss('binary', weights)(logits, target)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_multiclass_weighted_by_hand() -> None:
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    target = torch.tensor([0, 1])
    weights = torch.tensor([1.0, 3.0, 1.0])

    def ce(row: list[float], k: int) -> float:
        return -row[k] + math.log(sum(math.exp(v) for v in row))

    expected = (1.0 * ce([1.0, 0.0, 0.0], 0) + 3.0 * ce([0.0, 0.0, 3.0], 1)) / 4.0
    assert TaskLoss('multiclass', weights)(logits, target).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_multilabel_by_hand() -> None:
    logits = torch.tensor([[0.0, 1.0]])
    target = torch.tensor([[1.0, 0.0]])
    expected = (math.log(2) + math.log(1 + math.e)) / 2
    assert TaskLoss('multilabel')(logits, target).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_regression_standardised_by_hand() -> None:
    loss = TaskLoss('regression', target_mean=100.0, target_std=40.0)
    output = torch.tensor([0.5, -1.0])
    target = torch.tensor([120.0, 100.0])
    expected = ((0.5 - 0.5) ** 2 + (-1.0 - 0.0) ** 2) / 2
    assert loss(output, target).item() == pytest.approx(expected)
    assert loss.standardize(torch.tensor([140.0])).item() == pytest.approx(1.0)


def test_nt_xent_lower_for_aligned_views() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(8, 4, generator=generator)
    aligned = a + 0.05 * torch.randn(8, 4, generator=generator)
    shuffled = aligned.roll(1, dims=0)
    assert nt_xent(a, aligned, 0.1) < nt_xent(a, shuffled, 0.1)


@pytest.mark.parametrize(
    ('dtype', 'expected'),
    [
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_at_least_float32(dtype: torch.dtype, expected: torch.dtype) -> None:
    assert at_least_float32(torch.ones(2, dtype=dtype)).dtype == expected


def test_nt_xent_in_float32_under_bf16_autocast() -> None:
    z_a, z_b = torch.randn(2, 6, 3).unbind()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = nt_xent(z_a.bfloat16(), z_b.bfloat16(), 0.1)
    assert loss.dtype == torch.float32
    expected = nt_xent(z_a.bfloat16().float(), z_b.bfloat16().float(), 0.1)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
