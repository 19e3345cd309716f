# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchgeo.main
import yaml

from torchgeo_colearn import CoLearnTask
from torchgeo_colearn.datasets.synthetic import DEFAULT_MODALITIES
from torchgeo_colearn.demo import demo_encoders
from torchgeo_colearn.main import ADVERT_PREFIX, configured_class, main, quiet_lightning

from .fakes import fake_checkpoint, synthetic_args

CONFIG = os.path.join('experiments', 'synthetic.yaml')


def cli_args(tmp_path: Path) -> list[str]:
    return synthetic_args(tmp_path, fast_dev_run=1)


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


# --------------------------------------------------------------------------------------------------
# Resume, checkpoint files, output
# --------------------------------------------------------------------------------------------------


def fit_args(root: Path, epochs: int) -> list[str]:
    """Fit the synthetic experiment for a few epochs, keeping last.ckpt in *root*."""
    callbacks = root / 'callbacks.yaml'
    root.mkdir(parents=True, exist_ok=True)
    callbacks.write_text(
        yaml.safe_dump(
            {
                'trainer': {
                    'callbacks': [
                        {
                            'class_path': 'lightning.pytorch.callbacks.ModelCheckpoint',
                            'init_args': {'dirpath': str(root), 'save_last': True},
                        }
                    ]
                }
            }
        )
    )
    return [
        'fit',
        '--config',
        CONFIG,
        '--config',
        str(callbacks),
        '--trainer.accelerator',
        'cpu',
        '--trainer.max_epochs',
        str(epochs),
        '--trainer.default_root_dir',
        str(root),
        '--trainer.logger',
        'false',
        '--data.init_args.num_samples',
        '150',
        '--data.init_args.batch_size',
        '16',
    ]


def test_colearn_fit_resume_reproduces(tmp_path: Path) -> None:
    whole = main(fit_args(tmp_path / 'whole', 4))
    main(fit_args(tmp_path / 'parts', 2))
    last = tmp_path / 'parts' / 'last.ckpt'
    resumed = main([*fit_args(tmp_path / 'parts', 4), '--ckpt_path', str(last)])
    assert whole is not None and resumed is not None
    assert resumed.trainer.current_epoch == whole.trainer.current_epoch == 4
    loss = resumed.trainer.callback_metrics['val_loss']
    assert torch.equal(loss, whole.trainer.callback_metrics['val_loss'])
    expected = whole.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key


@pytest.mark.parametrize(
    'subcommand,kind,match',
    [
        (
            'fit',
            'empty',
            r'empty\.ckpt: the file is empty \(expected a Lightning checkpoint of ',
        ),
        (
            'test',
            'truncated',
            r'truncated\.ckpt: not a PyTorch checkpoint, or a truncated one',
        ),
        (
            'predict',
            'other',
            r'other\.ckpt: a checkpoint of tests\.fakes\.LinearTask, expected one of CoLearnTask',
        ),
    ],
)
def test_bad_ckpt_path(tmp_path: Path, subcommand: str, kind: str, match: str) -> None:
    other = fake_checkpoint(tmp_path, 'other.ckpt')
    path = tmp_path / f'{kind}.ckpt'
    match kind:
        case 'empty':
            path.touch()
        case 'truncated':
            path.write_bytes(other.read_bytes()[:1000])
    with pytest.raises(ValueError, match=match):
        main([subcommand, *cli_args(tmp_path), '--ckpt_path', str(path)])


def test_missing_ckpt_path(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r'nowhere\.ckpt: no such checkpoint file'
    ):
        main(
            ['test', *cli_args(tmp_path), '--ckpt_path', str(tmp_path / 'nowhere.ckpt')]
        )


def test_fit_prints_epoch_lines_and_no_advert(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    trainer = {'max_epochs': 2, 'limit_train_batches': 2, 'limit_val_batches': 1}
    main(['fit', *synthetic_args(tmp_path, **trainer)])
    out, err = capfd.readouterr()
    assert re.search(
        r'^epoch 0/1: train_loss \d+\.\d+, val_loss \d+\.\d+ \(', out, re.MULTILINE
    )
    assert re.search(r'^epoch 1/1: ', out, re.MULTILINE)
    assert 'Tip:' not in out + err
    deprecations = [
        str(w.message)
        for w in recwarn
        if issubclass(w.category, DeprecationWarning | FutureWarning)
    ]
    assert deprecations == []


def test_progress_lines_can_be_switched_off(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    main(['fit', *cli_args(tmp_path), '--progress.mode', 'never'])
    assert 'epoch 0' not in capfd.readouterr().out


def test_quiet_lightning_keeps_other_records(caplog: pytest.LogCaptureFixture) -> None:
    quiet_lightning()
    log = logging.getLogger('lightning.pytorch.utilities.rank_zero')
    with caplog.at_level(logging.INFO, logger=log.name):
        log.info(f'{ADVERT_PREFIX} install something')
        log.info('GPU available: False')
    assert [r.getMessage() for r in caplog.records] == ['GPU available: False']


def test_configured_class() -> None:
    config = SimpleNamespace(class_path='torchgeo_colearn.CoLearnTask')
    assert configured_class(config) is CoLearnTask
    for path in ('torchgeo_colearn.Nothing', 'nowhere.Task', 'CoLearnTask', None):
        assert configured_class(SimpleNamespace(class_path=path)) is None
    assert (
        configured_class(SimpleNamespace(class_path='torchgeo_colearn.__version__'))
        is None
    )
