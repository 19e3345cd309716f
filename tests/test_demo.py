# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import csv
from pathlib import Path

import pytest

from torchgeo_colearn.demo import main
from torchgeo_colearn.main import main as colearn


def test_demo_writes_comparison(tmp_path: Path) -> None:
    rows = main(
        ['--max-epochs', '1', '--num-samples', '200', '--output', str(tmp_path)]
    )
    assert {row['modality'] for row in rows} == {'s1', 's2', 'dem'}
    with open(tmp_path / 'comparison.csv') as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) == 3 * 4
    first = written[0]
    assert float(first['gain']) == pytest.approx(
        float(first['co-learned']) - float(first['trained alone']), abs=1e-9
    )


@pytest.mark.slow
def test_colearning_beats_single_modality(tmp_path: Path) -> None:
    """The synthetic default shows the benefit of co-learning for every inference modality."""
    rows = main(['--output', str(tmp_path)])
    for row in rows:
        if row['metric'] in ('AverageAccuracy', 'F1Score'):
            assert row['gain'] > 0, row


def test_demo_subcommand_dispatch(tmp_path: Path) -> None:
    colearn(
        ['demo', '--max-epochs', '1', '--num-samples', '150', '--output', str(tmp_path)]
    )
    assert (tmp_path / 'comparison.csv').exists()
