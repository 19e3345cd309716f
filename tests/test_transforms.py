# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math

import pytest
import torch
from torch import Tensor

from torchgeo_colearn.transforms import ModalityNormalizer

STATS = {
    'ts': (torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])),
    'vec': (torch.zeros(3), torch.ones(3)),
}


def batch() -> dict[str, Tensor]:
    """Three samples: the first lacks ``ts``, the second has a missing step of it."""
    ts = torch.arange(24, dtype=torch.float32).view(3, 4, 2)
    ts[0] = math.nan
    ts[1, 2] = math.nan
    return {
        'image_ts': ts,
        'image_vec': torch.ones(3, 3),
        'present_ts': torch.tensor([False, True, True]),
    }


@pytest.mark.parametrize('fill_nan', [True, False])
def test_absent_rows_are_zero(fill_nan: bool) -> None:
    out = ModalityNormalizer(STATS, fill_nan=fill_nan)(batch())
    x = out['image_ts']
    assert x[0].eq(0).all()
    expected = (torch.arange(24.0).view(3, 4, 2)[2] - STATS['ts'][0]) / STATS['ts'][1]
    torch.testing.assert_close(x[2], expected)
    # a missing step of a present sample is filled only with fill_nan
    assert x[1, 2].isnan().all() != fill_nan
    if fill_nan:
        assert out['valid_ts'].tolist() == [
            [False] * 4,
            [True, True, False, True],
            [True] * 4,
        ]
    else:
        assert 'valid_ts' not in out
    torch.testing.assert_close(out['image_vec'], torch.ones(3, 3))


def test_dataset_mask_cleared_for_absent_rows() -> None:
    data = batch() | {'valid_ts': torch.ones(3, 4, dtype=torch.bool)}
    out = ModalityNormalizer(STATS, fill_nan=False)(data)
    assert out['valid_ts'].tolist() == [[False] * 4, [True] * 4, [True] * 4]


def test_without_presence_nan_only_rows_are_filled() -> None:
    data = batch()
    del data['present_ts']
    out = ModalityNormalizer(STATS)(data)
    assert out['image_ts'][0].eq(0).all() and not out['valid_ts'][0].any()
