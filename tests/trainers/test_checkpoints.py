# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from torchgeo_colearn import CoLearnTask, SyntheticMultiSensorDataModule
from torchgeo_colearn.trainers import SingleModalityTask
from torchgeo_colearn.trainers.checkpoints import (
    CHECKPOINT_KEY,
    check_checkpoint,
    is_checkpoint_file,
    random_state,
    set_random_state,
)

from ..fakes import (
    TINY_ENCODERS,
    LinearTask,
    fake_checkpoint,
    fake_task,
    loader,
    make_dataset,
    make_trainer,
)

# --------------------------------------------------------------------------------------------------
# Resume reproduces the uninterrupted fit
# --------------------------------------------------------------------------------------------------


def fit_synthetic(
    root: Path, epochs: int, ckpt_path: Path | None = None
) -> tuple[CoLearnTask, float]:
    seed_everything(0)
    datamodule = SyntheticMultiSensorDataModule(num_samples=150, batch_size=16)
    task = CoLearnTask(encoders=TINY_ENCODERS, num_classes=4, embed_dim=8)
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[ModelCheckpoint(dirpath=root, save_last=True)],
    )
    trainer.fit(task, datamodule, ckpt_path=ckpt_path)
    return task, float(trainer.callback_metrics['val_loss'])


def test_fit_4_equals_fit_2_and_resume_to_4(tmp_path: Path) -> None:
    whole, whole_loss = fit_synthetic(tmp_path / 'whole', 4)
    fit_synthetic(tmp_path / 'parts', 2)
    resumed, resumed_loss = fit_synthetic(
        tmp_path / 'parts', 4, tmp_path / 'parts' / 'last.ckpt'
    )
    assert resumed_loss == whole_loss
    expected = whole.state_dict()
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_random_states_round_trip() -> None:
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    state = random_state()
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.randn(2), random.random()
    set_random_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], again[0])
    assert np.array_equal(drawn[1], again[1])
    assert drawn[2] == again[2]


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    path = fake_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint[CHECKPOINT_KEY]['task'] == 'tests.fakes.LinearTask'
    assert set(checkpoint[CHECKPOINT_KEY]['random_state']) == {
        'torch',
        'cuda',
        'numpy',
        'python',
    }


def test_loading_for_test_leaves_the_random_state(tmp_path: Path) -> None:
    path = fake_checkpoint(tmp_path)
    states = []
    for ckpt_path in (None, path):
        model = fake_task('multiclass')
        torch.manual_seed(5)
        make_trainer(tmp_path, logger=False).test(
            model,
            loader(make_dataset('multiclass')),
            ckpt_path=ckpt_path,
            verbose=False,
        )
        states.append(torch.get_rng_state())
    # the checkpoint's states are restored only when a fit resumes
    assert torch.equal(states[0], states[1])


# --------------------------------------------------------------------------------------------------
# Bad checkpoint files name the path and what was expected
# --------------------------------------------------------------------------------------------------


def bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f'{kind}.ckpt'
    match kind:
        case 'empty':
            path.touch()
        case 'truncated':
            data = fake_checkpoint(tmp_path).read_bytes()
            path.write_bytes(data[: len(data) // 2])
        case 'text':
            path.write_text('not a checkpoint\n')
        case 'zip':
            with zipfile.ZipFile(path, 'w') as archive:
                archive.writestr('data.txt', 'not a checkpoint')
        case 'state_dict':
            torch.save({'weight': torch.zeros(2)}, path)
        case 'other_package':
            torch.save(
                {
                    'state_dict': {},
                    'pytorch-lightning_version': '2.6.0',
                    'hyper_parameters': {'backbone': 'resnet18'},
                },
                path,
            )
    return path


BAD_FILES = [
    ('empty', r'the file is empty \(expected a Lightning checkpoint of LinearTask\)'),
    ('truncated', r'not a PyTorch checkpoint, or a truncated one'),
    ('text', r'not a PyTorch checkpoint, or a truncated one'),
    (
        'zip',
        r'the checkpoint cannot be read \(.*\); expected a Lightning checkpoint of LinearTask',
    ),
    (
        'state_dict',
        r"not a Lightning checkpoint \(it holds a dict with keys \['weight'\]\)",
    ),
    (
        'other_package',
        r"a Lightning checkpoint of another model \(hyperparameters \['backbone'\]\)",
    ),
]


@pytest.mark.parametrize('kind,match', BAD_FILES)
def test_load_from_checkpoint_bad_file(tmp_path: Path, kind: str, match: str) -> None:
    path = bad_file(tmp_path, kind)
    with pytest.raises(ValueError, match=rf'{kind}\.ckpt: {match}'):
        LinearTask.load_from_checkpoint(path)


def test_load_from_checkpoint_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r'nowhere\.ckpt: no such checkpoint file .*CoLearnTask'
    ):
        CoLearnTask.load_from_checkpoint(tmp_path / 'nowhere.ckpt')


def test_load_from_checkpoint_of_another_task_class(tmp_path: Path) -> None:
    path = fake_checkpoint(tmp_path)
    with pytest.raises(
        ValueError,
        match=r'fake\.ckpt: a checkpoint of tests\.fakes\.LinearTask, expected one of '
        r'SingleModalityTask; load it with LinearTask\.load_from_checkpoint',
    ):
        SingleModalityTask.load_from_checkpoint(path)


def test_resuming_another_task_class_names_the_checkpoint(tmp_path: Path) -> None:
    path = fake_checkpoint(tmp_path)
    trainer = make_trainer(tmp_path, logger=False, max_epochs=2)
    with pytest.raises(
        ValueError,
        match=r'fake\.ckpt: a checkpoint of tests\.fakes\.LinearTask, expected one of Single',
    ):
        trainer.fit(
            SingleModalityTask(encoders=TINY_ENCODERS, num_classes=4),
            loader(make_dataset('multiclass')),
            ckpt_path=path,
        )


def test_good_checkpoint_loads_and_subclasses_accept_it(tmp_path: Path) -> None:
    path = fake_checkpoint(tmp_path)
    original = torch.load(path, weights_only=True)['state_dict']

    class Derived(LinearTask):
        pass

    for cls in (LinearTask, Derived):
        check_checkpoint(path, cls)
        loaded = cls.load_from_checkpoint(path)
        state: dict[str, Tensor] = loaded.state_dict()
        assert all(torch.equal(state[k], v) for k, v in original.items())


@pytest.mark.parametrize(
    'path,expected',
    [
        ('last', False),
        ('best', False),
        ('registry:model:v1', False),
        ('s3://bucket/a.ckpt', False),
        (None, False),
        ('runs/a.ckpt', True),
        (Path('a.ckpt'), True),
    ],
)
def test_is_checkpoint_file(path: object, expected: bool) -> None:
    assert is_checkpoint_file(path) is expected
