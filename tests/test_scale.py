# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch

from benchmarks import scale


def test_steps_train_the_resident_data() -> None:
    case = scale.make_case(4, samples=40, device=torch.device('cpu'))
    assert set(case.task.modalities) == set(scale.CHANNELS)
    before = [p.detach().clone() for p in case.task.parameters()]
    result = scale.measure(case, batch_size=16, steps=3, threads=1, precision='32')
    # 2 warm-up and 3 timed steps of 16 samples wrap around the 40 samples
    assert result['samples'] == 48 and result['seconds'] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, case.task.parameters()))


def test_bf16_step_keeps_finite_weights() -> None:
    case = scale.make_case(2, samples=32, device=torch.device('cpu'))
    scale.measure(case, batch_size=16, steps=1, threads=1, precision='bf16-mixed')
    assert all(torch.isfinite(p).all() for p in case.task.parameters())


def test_table_rows(capsys: pytest.CaptureFixture[str]) -> None:
    # one thread: two would wait for each other on a busy machine (the ratio: next test)
    scale.main(
        [
            *('--samples', '48', '--modalities', '2', '--batch-sizes', '8', '16'),
            *('--threads', '1', '--steps', '1', '--repeats', '2'),
        ]
    )
    out = capsys.readouterr().out
    assert 'load average before:' in out
    rows = [line for line in out.splitlines() if line.startswith('| 2 |')]
    assert [row.split('|')[3].strip() for row in rows] == ['8', '16']
    assert all(row.endswith('| - | - |') for row in rows)


def test_rejects_impossible_settings() -> None:
    with pytest.raises(SystemExit):
        scale.main(['--modalities', '5'])
    with pytest.raises(SystemExit):
        scale.main(['--samples', '8', '--batch-sizes', '16'])
    with pytest.raises(SystemExit):
        scale.main(['--missing', '1.0'])


def test_report_ratio_per_repetition() -> None:
    def run(seconds: float) -> dict[str, float]:
        return {'samples': 100, 'seconds': seconds, 'cpu_seconds': seconds}

    table = scale.report(
        {
            (2, 0.0, 16, 1): [run(1.0), run(2.0)],
            (2, 0.0, 16, 2): [run(0.5), run(1.0)],
            (2, 0.5, 16, 1): [run(2.0), run(2.0)],
        },
        100,
    )
    rows = table.splitlines()
    # per repetition: 2 threads twice as fast both times
    assert rows[-2].endswith('| 2.00 [2.00-2.00] | - |')
    # with gaps: half as fast in the first repetition, as fast in the second
    assert rows[-1].startswith('| 2 | 50% |')
    assert rows[-1].endswith('| - | 0.75 [0.50-1.00] |')


def test_steps_with_samples_that_lack_s2() -> None:
    case = scale.make_case(2, samples=40, device=torch.device('cpu'), missing=0.5)
    present = case.data['present_s2']
    assert 0 < int(present.sum()) < 40
    assert (case.data['image_s2'][~present] == 0).all()
    result = scale.measure(case, batch_size=16, steps=2, threads=1, precision='32')
    assert result['samples'] == 32
    assert all(torch.isfinite(p).all() for p in case.task.parameters())
