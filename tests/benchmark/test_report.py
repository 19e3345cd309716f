# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import shutil
from pathlib import Path

import pytest
import yaml

from torchgeo_colearn.benchmark import ConfigError, load_config
from torchgeo_colearn.datamodules import FuelMoistureDataModule

from .common import GBDT, MDICO, run, write_config


def test_report_states_split_and_sizes(tmp_path: Path) -> None:
    path = Path(write_config(tmp_path, {'gbdt': GBDT}, model={'task': 'regression'}))
    config = yaml.safe_load(path.read_text())
    config['data'] = {
        'class_path': 'torchgeo_colearn.datamodules.FuelMoistureDataModule',
        'init_args': {
            'root': 'tests/data/presto/fuel_moisture',
            'split': 'kfold',
            'num_folds': 4,
            'group_by': 'site',
        },
    }
    path.write_text(yaml.safe_dump(config))
    run(str(path), tmp_path)
    report = (tmp_path / 'docs' / 'tiny.md').read_text()
    assert 'Split: 4-fold cross-validation grouped by `site`' in report
    datamodule = FuelMoistureDataModule(
        root='tests/data/presto/fuel_moisture', split='kfold', num_folds=4
    )
    datamodule.setup('fit')
    sizes = datamodule.split_summary()
    row = ' | '.join(
        str(sizes[part][kind])
        for kind in ('groups', 'samples')
        for part in ('train', 'val', 'test')
    )
    assert f'| 0 | {row} |' in report


def test_report_only_aggregates_without_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {'gbdt': GBDT}, model={'task': 'regression'})
    run(config, tmp_path, '--folds', '0')
    report = tmp_path / 'docs' / 'tiny.md'
    report.unlink()
    capsys.readouterr()
    summary = run(config, tmp_path, '--report-only')
    assert 'units' not in capsys.readouterr().out
    assert (summary['n'] == 1).all()
    assert '(n=1)' in report.read_text()  # fold 1 is missing
    assert '| gbdt | 1 | 0 | 1 |' in report.read_text()


def test_unknown_method_filter(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match='--methods: unknown'):
        run(write_config(tmp_path, {'mdico': MDICO}), tmp_path, '--methods', 'nope')


def test_cropharvest_config_on_fake_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load(
        Path('experiments/benchmarks/cropharvest_binary.yaml').read_text()
    )
    # a copy, so that the datamodule's cache is not written into tests/data
    root = tmp_path / 'cropharvest'
    shutil.copytree('tests/data/cropharvest', root)
    config['data']['init_args'].update(root=str(root), num_folds=4, batch_size=16)
    for encoder in config['model']['encoders'].values():
        encoder.update(hidden_dim=4, dense_dim=8)
    config['model']['embed_dim'] = 4
    config['folds'] = [0]
    config['trainer'].update(max_epochs=1)
    path = tmp_path / 'cropharvest_binary.yaml'
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    summary = run(str(path), tmp_path, '--methods', 'mdico', 'distillation', 'gbdt')
    assert set(summary['method']) == {'mdico', 'feature_fusion', 'distillation', 'gbdt'}
    assert set(summary['metric']) == {
        'OverallAccuracy',
        'AverageAccuracy',
        'F1Score',
        'CohenKappa',
    }


def test_misspelled_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'methods\.gbdt\.init_args.*max_depht'):
        load_config(
            write_config(
                tmp_path,
                {'gbdt': {**GBDT, 'init_args': {'max_depht': 3}}},
                model={'task': 'regression'},
            )
        )
