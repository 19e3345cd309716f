# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torchgeo.main
import yaml

from torchgeo_colearn.datasets.synthetic import DEFAULT_MODALITIES
from torchgeo_colearn.demo import demo_encoders
from torchgeo_colearn.main import main

CONFIG = os.path.join('experiments', 'synthetic.yaml')


def cli_args(tmp_path: Path) -> list[str]:
    return [
        '--config',
        CONFIG,
        '--trainer.accelerator',
        'cpu',
        '--trainer.fast_dev_run',
        '1',
        '--trainer.default_root_dir',
        str(tmp_path),
        '--data.init_args.num_samples',
        '200',
    ]


def test_colearn_fit_test(tmp_path: Path) -> None:
    main(['fit', *cli_args(tmp_path)])
    main(['test', *cli_args(tmp_path)])


def test_torchgeo_fit(tmp_path: Path) -> None:
    torchgeo.main.main(['fit', *cli_args(tmp_path)])


def test_short_class_names(tmp_path: Path) -> None:
    main(
        [
            'fit',
            *cli_args(tmp_path),
            '--model',
            'CoLearnTask',
            '--data',
            'SyntheticMultiSensorDataModule',
            '--data.init_args.num_samples',
            '200',
        ]
    )


def test_python_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, '-m', 'torchgeo_colearn', '--help'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert 'fit' in result.stdout and 'predict' in result.stdout


def test_experiment_matches_demo() -> None:
    with open(CONFIG) as f:
        config = yaml.safe_load(f)
    assert config['model']['init_args']['encoders'] == demo_encoders(DEFAULT_MODALITIES)


def test_bad_config_key(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(['fit', *cli_args(tmp_path), '--model.init_args.temperatur', '0.5'])


def test_help_lists_demo_and_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(['--help'])
    assert exit_info.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    assert '`colearn demo`' in text and '`colearn benchmark --config' in text
