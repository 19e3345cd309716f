# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import argparse

import pytest

from benchmarks import conv_algorithms


def test_both_algorithms_timed_alternately() -> None:
    times = conv_algorithms.measure((3, 2, 4, 2), repeats=2, calls=1)
    assert set(times) == {
        (a, mode)
        for a in ('windows', 'shifted_taps')
        for mode in ('train', 'inference')
    }
    assert all(len(v) == 2 and min(v) > 0 for v in times.values())


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    conv_algorithms.main(
        ['--shapes', '4x2x8x2', '1x3x4x1', '--repeats', '2', '--calls', '1']
    )
    out = capsys.readouterr().out
    assert 'load average before:' in out and 'load average after:' in out
    rows = [line for line in out.splitlines() if line.startswith(('| 4 |', '| 1 |'))]
    assert [row.split('|')[5].strip() for row in rows] == ['4', '4']


@pytest.mark.parametrize('text', ['4x32x256', '4x32xa', '4x32x255x2', '0x1x1x1'])
def test_bad_shape(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=text):
        conv_algorithms.parse_shape(text)
