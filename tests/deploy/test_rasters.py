# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import io

import numpy as np
import torch

from torchgeo_colearn.deploy.rasters import (
    WindowProgress,
    output_bands,
    prediction_bands,
    tile_offsets,
)

from .conftest import synthetic_task


def test_output_bands_and_values() -> None:
    task = synthetic_task('multilabel')
    assert output_bands(task, None)[:2] == ['label_0', 'label_1']
    assert output_bands(task, None)[4:6] == ['probability_0', 'probability_1']
    p = torch.tensor([[0.2, 0.7, 0.5, 0.1]])
    np.testing.assert_allclose(
        prediction_bands(task, p), [[0, 1, 1, 0, 0.2, 0.7, 0.5, 0.1]]
    )
    regression = synthetic_task('regression')
    assert output_bands(regression, ['ignored']) == ['value']
    np.testing.assert_allclose(
        prediction_bands(regression, torch.tensor([3.5])), [[3.5]]
    )
    binary = synthetic_task('binary')
    assert output_bands(binary, None) == ['class', 'probability_0', 'probability_1']
    np.testing.assert_allclose(
        prediction_bands(binary, torch.tensor([0.25])), [[0, 0.75, 0.25]]
    )


def test_tile_offsets() -> None:
    assert tile_offsets(16, 8) == [0, 8]
    assert tile_offsets(20, 8) == [0, 8, 12]
    assert tile_offsets(8, 8) == [0]


def test_progress_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = WindowProgress(3, stream)
    for _ in range(3):
        progress.advance(10)
    progress.close()
    assert progress.done == 3 and progress.pixels == 30
    assert 'colearn map' in stream.getvalue()
