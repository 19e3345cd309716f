# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os

import pytest
import torch
from torch import nn

from benchmarks import step_variants


@pytest.mark.filterwarnings('ignore:.*dropped \\d+ row')
def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    root = os.path.join('tests', 'data', 'lfmc')
    step_variants.main(['--root', root, '--batch-size', '8', '--repeats', '2'])
    out = capsys.readouterr().out
    assert 'load average before:' in out and 'load average after:' in out
    rows = {
        cells[1]: cells[2:-1]
        for line in out.splitlines()
        if line.startswith('| ')
        and (cells := [c.strip() for c in line.split('|')])[1] in step_variants.VARIANTS
    }
    assert list(rows) == list(step_variants.VARIANTS)
    for name, (arithmetic, ms, ratio, difference) in rows.items():
        assert float(ms.split()[0]) > 0 and float(ratio.split()[0]) > 0
        # the updates inside backward are Adam's arithmetic, parameter by parameter
        if arithmetic == 'float32':
            assert float(difference) <= 1e-6, name
    assert float(rows['bf16 autocast'][3]) > 0
    assert rows['floor'][2] == '1.00 [1.00-1.00]'


def test_optimiser_in_backward_needs_plain_adam() -> None:
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r'plain Adam.*got SGD'):
        step_variants.adam_settings(optimizer)


def test_missing_data() -> None:
    with pytest.raises(SystemExit):
        step_variants.main(['--root', os.path.join('tests', 'data', 'no_such_folder')])
