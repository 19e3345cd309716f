# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from torchgeo_colearn.callbacks import ScenarioReport

from ..fakes import fake_task, loader, make_dataset, make_trainer


def test_test_end_writes_tables_figure_and_tensorboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = fake_task('multiclass')
    report = ScenarioReport()
    trainer = make_trainer(tmp_path, [report])
    trainer.test(model, loader(make_dataset('multiclass')), verbose=False)
    log_dir = Path(trainer.log_dir or '')
    names = {f'test_scenarios.{ext}' for ext in ('csv', 'json', 'md', 'png')}
    assert names <= set(os.listdir(log_dir))
    table = pd.read_csv(log_dir / 'test_scenarios.csv', index_col='scenario')
    assert list(table.index) == ['s1', 's2', 's1+s2']
    assert list(table.columns)[-1] == 'count' and (table['count'] == 40).all()
    expected = model.scenario_results['test']['s1+s2']['F1Score']
    assert table.loc['s1+s2', 'F1Score'] == pytest.approx(expected)
    document = json.loads((log_dir / 'test_scenarios.json').read_text())
    assert document['task'] == 'multiclass' and document['stage'] == 'test'
    assert [row['scenario'] for row in document['rows']] == ['s1', 's2', 's1+s2']
    markdown = (log_dir / 'test_scenarios.md').read_text().splitlines()
    assert markdown[0].startswith('| scenario | ') and 'AverageAccuracy' in markdown[0]
    assert len(markdown) == 2 + 3
    printed = capsys.readouterr().out
    assert 's1+s2' in printed and 'OverallAccuracy' in printed

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={'images': 0}).Reload()
    assert 'test/scenarios' in events.Tags()['images']
    assert 'test/s1+s2/OverallAccuracy' in events.Tags()['scalars']


def test_output_dir_subset_and_no_logger(tmp_path: Path) -> None:
    model = fake_task('regression')
    report = ScenarioReport(
        output_dir=str(tmp_path / 'results'), print_table=False, scenarios=['s2', 's1']
    )
    make_trainer(tmp_path, [report], logger=False).test(
        model, loader(make_dataset('regression')), verbose=False
    )
    table = pd.read_csv(tmp_path / 'results' / 'test_scenarios.csv', index_col=0)
    assert list(table.index) == ['s2', 's1']
    assert {'R2', 'RMSE', 'MAE', 'count'} == set(table.columns)
    assert (tmp_path / 'results' / 'test_scenarios.png').exists()


def test_table_errors_name_the_problem() -> None:
    report = ScenarioReport(scenarios=['s3'])
    with pytest.raises(KeyError, match='no test scores yet'):
        report.table()
    report.results = {'s1': {'R2': 0.5, 'count': 3.0}}
    with pytest.raises(KeyError, match=r"\['s3'\] were not scored"):
        report.table()
