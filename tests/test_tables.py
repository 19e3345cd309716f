# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from torchgeo_colearn.tables import (
    format_cell,
    markdown_table,
    print_table,
    write_table,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    table = pd.DataFrame(
        {'R2': [0.123456, float('nan')], 'RMSE': [30.0, 31.5], 'note': ['a', 'b']},
        index=pd.Index(['s1', 's1+s2'], name='scenario'),
    )
    return table


def test_format_cell() -> None:
    assert format_cell(0.5) == '0.5000'
    assert format_cell(float('nan')) == ''
    assert format_cell(None) == ''
    assert format_cell(3) == '3'
    assert format_cell('x') == 'x'


def test_markdown_alignment_and_bold(frame: pd.DataFrame) -> None:
    bold = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    bold.loc['s1', 'RMSE'] = True
    text = markdown_table(frame, digits=2, bold=bold)
    lines = text.splitlines()
    assert lines[0] == '| scenario | R2 | RMSE | note |'
    assert lines[1] == '|---|---:|---:|---|'
    assert lines[2] == '| s1 | 0.12 | **30.00** | a |'
    assert lines[3] == '| s1+s2 |  | 31.50 | b |'


def test_write_table_round_trip(frame: pd.DataFrame, tmp_path: Path) -> None:
    paths = write_table(
        frame, str(tmp_path / 'out' / 'test_scenarios'), {'stage': 'test'}
    )
    assert [Path(p).suffix for p in paths] == ['.csv', '.json', '.md']
    back = pd.read_csv(paths[0], index_col='scenario')
    assert back.loc['s1', 'R2'] == pytest.approx(0.123456)
    data = json.loads(Path(paths[1]).read_text())
    assert data['stage'] == 'test'
    assert data['rows'][1]['scenario'] == 's1+s2' and data['rows'][1]['R2'] is None


def test_print_table(frame: pd.DataFrame) -> None:
    console = Console(record=True, width=80)
    print_table(frame, 'test scores', console=console)
    text = console.export_text()
    assert 'test scores' in text and '0.1235' in text and 's1+s2' in text
