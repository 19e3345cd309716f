# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from typing import NamedTuple

import pytest
import torch
from torch import Tensor

from torchgeo_colearn.losses import modality_mean
from torchgeo_colearn.presence import Inputs, Presence, complete_samples


class Parts(NamedTuple):
    first: Tensor
    second: Tensor | None


def presence() -> Presence:
    # 5 samples: 'a' lacks samples 1 and 3, 'b' lacks sample 3, 'c' is held by all
    return Presence(
        5,
        {
            'a': torch.tensor([True, False, True, False, True]),
            'b': torch.tensor([True, True, True, False, True]),
        },
    )


def test_masks_and_counts() -> None:
    held = presence()
    assert not held.complete and Presence(5).complete
    assert held.mask(['c']) is None
    assert held.mask(['a', 'b']).tolist() == [True, False, True, False, True]  # type: ignore[union-attr]
    assert held.count(['b', 'c']) == 4 and held.count(['c']) == 5
    matrix = held.matrix(['a', 'b', 'c'])
    assert matrix is not None and matrix.shape == (5, 3) and matrix[:, 2].all()
    assert Presence(5).matrix(['a']) is None
    masks = held.masks_of(['b', 'c'])
    assert list(masks) == ['b', 'c'] and masks['c'].all() and not masks['b'][3]
    assert Presence(5).masks_of(['a']) == {}


def test_rows_move_between_batch_modality_and_scenario() -> None:
    held = presence()
    batch_rows = torch.arange(5.0)
    # the batch rows of the samples that hold b
    rows_of_b = held.select(batch_rows, ['b'])
    assert rows_of_b.tolist() == [0.0, 1.0, 2.0, 4.0]
    # among b's rows, those of the samples that hold a too; collections keep their structure
    parts = held.restrict(Parts(rows_of_b, None), 'b', ['a', 'b'])
    assert parts.first.tolist() == [0.0, 2.0, 4.0] and parts.second is None
    # back to batch rows
    assert held.expand(parts.first, ['a', 'b'], float('nan')).isnan().tolist() == [
        False,
        True,
        False,
        True,
        False,
    ]
    features = held.expand_features((rows_of_b + 1, rows_of_b > 0), 'b')
    assert features[0].tolist() == [1.0, 2.0, 3.0, 0.0, 5.0]
    assert features[1].tolist() == [False, True, True, False, True]
    # a modality every sample holds needs no indexing
    assert held.select(batch_rows, ['c']) is batch_rows
    assert held.expand_features(batch_rows, 'c') is batch_rows


def test_of_reads_and_checks_the_keys() -> None:
    batch = {
        'image_a': torch.zeros(3, 2),
        'image_b': torch.zeros(3, 2),
        'present_a': torch.tensor([True, False, True]),
    }
    held = Presence.of(batch, ['a', 'b'])
    assert held.size == 3 and list(held.masks) == ['a']
    with pytest.raises(
        ValueError, match=r'present_a must be a bool tensor of shape \(3,\).*int64'
    ):
        Presence.of({**batch, 'present_a': torch.ones(3, dtype=torch.long)}, ['a'])
    with pytest.raises(ValueError, match=r'present_a must be .*got list of shape \(\)'):
        Presence.of({**batch, 'present_a': [True] * 3}, ['a'])
    with pytest.raises(ValueError, match='at least one modality'):
        Presence.of(batch, [])


def test_inputs_subset_keeps_the_presence() -> None:
    held = presence()
    inputs = Inputs({m: (torch.zeros(1), None) for m in 'abc'}, held)
    subset = inputs.subset(['c', 'a'])
    assert list(subset) == ['a', 'c'] and subset.presence is held


def test_modality_mean_skips_modalities_without_samples() -> None:
    def loss(x: Tensor, y: Tensor) -> Tensor:
        return (x - y).abs().mean()

    # three modalities of 2, 0 and 1 samples: mean of 2 and 5
    outputs, targets = torch.tensor([1.0, 3.0, 5.0]), torch.zeros(3)
    assert modality_mean(loss, outputs, targets, [2, 0, 1]) == 3.5
    # with the same samples in every modality, the stacked loss is the mean of the means
    same = torch.tensor([1.0, 3.0, 2.0, 6.0])
    stacked = modality_mean(loss, same, torch.zeros(4), None)
    torch.testing.assert_close(
        stacked, modality_mean(loss, same, torch.zeros(4), [2, 2])
    )
    nothing = modality_mean(
        loss, torch.zeros(0, requires_grad=True), torch.zeros(0), [0]
    )
    assert nothing == 0 and nothing.requires_grad


def test_complete_samples_keep_the_rows_of_every_key() -> None:
    batch = {
        'image_a': torch.arange(4.0),
        'image_b': torch.arange(4.0),
        'present_b': torch.tensor([True, False, True, True]),
        'label': torch.tensor([0, 1, 2, 3]),
        'id': ['w', 'x', 'y', 'z'],
        'scale': torch.tensor(2.0),
    }
    kept = complete_samples(batch, ['a', 'b', 'c'])
    assert kept['label'].tolist() == [0, 2, 3] and kept['id'] == ['w', 'y', 'z']
    assert kept['scale'] == 2.0 and kept['present_b'].all()
    assert complete_samples(batch, ['a'])['id'] == batch['id']
