# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os

import pytest

from benchmarks import throughput

ROOT = os.path.join('tests', 'data', 'lfmc')


def lfmc_case() -> dict[str, object]:
    """The benchmark's LFMC case on the fake table of the tests."""
    return {
        'name': 'LFMC, batch 8',
        'data': 'lfmc',
        'batch_size': 8,
        'config': os.path.join(throughput.REPO, throughput.CONFIG),
        'root': os.path.join(throughput.REPO, ROOT),
    }


@pytest.mark.filterwarnings('ignore:.*dropped \\d+ row')
def test_floor_and_phases() -> None:
    case = lfmc_case()
    floor = throughput.measure_floor(case, epochs=1)
    assert floor['samples'] > 0 and floor['seconds'] > 0
    result = throughput.profile_fit(case, epochs=1)
    lines = result['text'].splitlines()
    assert result['samples'] > 0
    assert lines[0].split()[0] == 'fit'
    for phase in ('model forward + loss', 'backward', 'optimiser update', 'validation'):
        assert any(line.strip().startswith(phase) for line in lines), phase


def test_synthetic_case_has_m_modalities() -> None:
    case = {**lfmc_case(), 'data': 'synthetic', 'modalities': 3}
    task, datamodule, _ = throughput.build(case)
    assert len(task.modalities) == 3
    assert datamodule.batch_size == 8


def test_report_prints_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    def run(samples: int, seconds: float) -> dict[str, float]:
        return {
            'samples': samples,
            'seconds': seconds,
            'cpu_seconds': seconds,
            'train_seconds': seconds / 2,
        }

    results = {
        ('new', 'fit'): [run(100, 1.0), run(100, 2.0)],
        ('new', 'floor'): [run(100, 0.5), run(100, 1.0)],
        ('base', 'fit'): [run(100, 2.0), run(100, 4.0)],
        ('base', 'floor'): [run(100, 1.0), run(100, 2.0)],
    }
    throughput.report({'name': 'case'}, results)
    out = capsys.readouterr().out
    # per repetition: new floor 200 and 100 samples/s, base floor 100 and 50 -> 2.00 both times
    assert 'new floor / base floor             2.00 [2.00-2.00]' in out
    assert 'new fit / new floor                0.50 [0.50-0.50]' in out
