# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math
from typing import Any

import pytest
import torch

from torchgeo_colearn.labels import check_labels

IDS = ['a', 'b', 'c', 'd']
WHERE = "Demo, train split, 'label'"


@pytest.mark.parametrize(
    'labels,task,num_classes',
    [
        (torch.tensor([0, 1, 1, 0]), 'binary', None),
        (torch.tensor([0.0, 1.0, 1.0, 0.0]), 'binary', 2),
        (torch.tensor([0, 3, 2, 1]), 'multiclass', 4),
        (torch.tensor([0, 7, 2, 1]), 'multiclass', None),
        (torch.tensor([[0, 1], [1, 1], [0, 0], [1, 0]]).float(), 'multilabel', 2),
        (torch.tensor([12.5, -3.0, 0.0, 80.0]), 'regression', None),
        (torch.tensor([1.0, 2.0, 3.0, 4.0]), None, None),
    ],
)
def test_valid(labels: torch.Tensor, task: Any, num_classes: int | None) -> None:
    check_labels(labels, task, num_classes, WHERE, IDS)


@pytest.mark.parametrize(
    'labels,task,num_classes,match',
    [
        (
            torch.tensor([0.0, 0.7, 1.0, 1.0]),
            'multiclass',
            3,
            "sample 'b' has label 0.7, which is not a class index",
        ),
        (
            torch.tensor([0, 1, 4, 1]),
            'multiclass',
            4,
            "sample 'c' has label 4, outside the class indices 0..3",
        ),
        (
            torch.tensor([0, -1, 1, 1]),
            'multiclass',
            4,
            "sample 'b' has label -1, outside",
        ),
        (
            torch.tensor([0, 1, 1, 2]),
            'binary',
            None,
            "sample 'd' has label 2, outside the class indices 0..1",
        ),
        (
            torch.tensor([[0, 1, 0]] * 4).float(),
            'multilabel',
            2,
            'multi-hot labels of width 3 .* expected 2 labels',
        ),
        (
            torch.tensor([0, 1, 1, 0]),
            'multilabel',
            2,
            r'labels of shape \(4,\), expected a multi-hot vector',
        ),
        (
            torch.tensor([[0, 1], [1, 2], [0, 0], [1, 0]]).float(),
            'multilabel',
            2,
            "sample 'b' has label 2, expected 0 or 1",
        ),
        (
            torch.tensor([1.0, math.nan, 2.0, 3.0]),
            'regression',
            None,
            "sample 'b' has label nan, which is not a finite number",
        ),
        (
            torch.tensor([1.0, 2.0, math.inf, 3.0]),
            None,
            None,
            "sample 'c' has label inf",
        ),
        (
            torch.ones(4, 1),
            'regression',
            None,
            r'labels of shape \(4, 1\), expected one number per sample',
        ),
    ],
)
def test_invalid(
    labels: torch.Tensor, task: Any, num_classes: int | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match) as error:
        check_labels(labels, task, num_classes, WHERE, IDS)
    assert str(error.value).startswith(WHERE)


def test_rows_without_ids() -> None:
    with pytest.raises(ValueError, match='row 2 has label 9'):
        check_labels(torch.tensor([0, 1, 9]), 'multiclass', 3)
