# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import json
import os
from pathlib import Path
from typing import Any

import pytest

from torchgeo_colearn.benchmark import load_config, run_path, trial_path
from torchgeo_colearn.benchmark import runner as runner_module
from torchgeo_colearn.benchmark.tuning import best_trial, objective

from .common import GBDT, MDICO, printed, run, write_config

METHODS = {
    'mdico': {
        **MDICO,
        'search_space': {
            'lr': {'type': 'float', 'low': 1e-4, 'high': 1e-2, 'log': True},
            'embed_dim': {'type': 'categorical', 'choices': [4, 8]},
        },
    },
    'gbdt': {
        **GBDT,
        'search_space': {
            'learning_rate': {'type': 'float', 'low': 0.05, 'high': 0.3},
            'max_leaf_nodes': {'type': 'int', 'low': 4, 'high': 16},
        },
    },
}


def trial_files(out: Path) -> dict[str, float]:
    return {str(p): os.path.getmtime(p) for p in sorted(out.glob('trials/*/*/*.json'))}


def test_tuning_resumes_without_rerunning_finished_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(
        tmp_path,
        {'gbdt': METHODS['gbdt']},
        model={'task': 'regression'},
        tuning={'trials': 2, 'seed': 3},
    )
    # An uninterrupted grid, for reference.
    reference = tmp_path / 'reference'
    run(config, reference)
    printed(
        capsys,
        '6 units = 1 methods x 2 folds x 1 seeds (+ 4 tuning trials)',
        '[1/6] tune gbdt fold=0 trial=0: ok',
    )

    # The same grid, interrupted while its 4th unit (the last trial of fold 1) trains.
    calls = 0
    original = runner_module.train_and_score

    def interrupted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(runner_module, 'train_and_score', interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path)
    out = tmp_path / 'out'
    before = trial_files(out)
    assert len(before) == 3
    monkeypatch.setattr(runner_module, 'train_and_score', original)
    capsys.readouterr()
    run(config, tmp_path)
    progress = printed(capsys, ', 3 to run', '[4/6] tune gbdt fold=1 trial=1: ok')
    assert progress.count('done before, skipped') == 3
    after = trial_files(out)
    assert all(after[path] == mtime for path, mtime in before.items())
    # Resumed trials sample what the uninterrupted grid sampled.
    for path in after:
        resumed = json.loads(Path(path).read_text())
        fresh = json.loads(
            Path(path.replace(str(out), str(reference / 'out'))).read_text()
        )
        assert resumed['parameters'] == fresh['parameters']


def test_tuned_runs_use_the_best_trial_on_validation(tmp_path: Path) -> None:
    config = write_config(tmp_path, METHODS, tuning={'trials': 2})
    run(config, tmp_path)
    out = str(tmp_path / 'out')
    benchmark = load_config(config)
    for method, fold in (('gbdt', 0), ('gbdt', 1), ('mdico', 0), ('mdico', 1)):
        trials = [
            json.loads(Path(trial_path(out, method, fold, t)).read_text())
            for t in range(2)
        ]
        for trial in trials:
            # Trials are scored on the validation split only.
            assert trial['value'] == pytest.approx(objective(trial, 'R2'))
            assert (
                trial['parameters'].keys()
                == benchmark.method(method).search_space.keys()
            )
        best = best_trial(trials, 'R2')
        assert best is not None
        record = json.loads(Path(run_path(out, method, fold, 0)).read_text())
        assert record['parameters'] == best['parameters']
        assert record['config']['parameters'] == best['parameters']
    assert benchmark.tuning is not None and benchmark.tuning.metric == 'R2'
    report = (tmp_path / 'docs' / 'tiny.md').read_text()
    assert '## Tuning' in report and 'Parameters retrained per fold' in report
    assert 'The test fold is never used for tuning' in report


def test_best_trial_direction() -> None:
    records = [
        {'trial': 0, 'status': 'ok', 'value': 2.0},
        {'trial': 1, 'status': 'failed'},
        {'trial': 2, 'status': 'ok', 'value': 1.0},
        None,
    ]
    assert best_trial(records, 'R2') == records[0]
    assert best_trial(records, 'RMSE') == records[2]
    assert best_trial([None, records[1]], 'R2') is None


def test_trials_option_turns_tuning_on(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {'gbdt': METHODS['gbdt']}, model={'task': 'regression'}
    )
    run(config, tmp_path, '--folds', '0', '--trials', '1')
    record = json.loads(
        Path(trial_path(str(tmp_path / 'out'), 'gbdt', 0, 0)).read_text()
    )
    assert record['status'] == 'ok' and record['config']['tuning']['trials'] == 1
