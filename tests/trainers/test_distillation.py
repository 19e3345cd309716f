# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from torchgeo_colearn.datamodules.synthetic import SyntheticMultiSensorDataModule
from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.trainers.distillation import DistillationTask, logit_distillation
from torchgeo_colearn.trainers.fusion import FeatureFusionTask

from ..fakes import make_trainer
from .test_fusion import MODALITIES, TASK_TYPES, fit_and_score, make_batch, task_args


@pytest.fixture(scope='module')
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A FeatureFusionTask trained for one epoch, saved as a checkpoint."""
    root = tmp_path_factory.mktemp('teacher')
    checkpoint = ModelCheckpoint(dirpath=str(root), monitor='val_loss')
    trainer = make_trainer(root, [checkpoint], logger=False, enable_checkpointing=True)
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=64, modality_kinds=MODALITIES, batch_size=16, num_folds=4
    )
    trainer.fit(FeatureFusionTask(**task_args('multiclass')), datamodule)
    return checkpoint.best_model_path


class TestLogitDistillation:
    def test_regression_is_mse(self) -> None:
        student, teacher = torch.randn(8), torch.randn(8)
        loss = logit_distillation('regression', student, teacher, 4.0)
        torch.testing.assert_close(loss, F.mse_loss(student, teacher))

    def test_multiclass_zero_at_teacher(self) -> None:
        logits = torch.randn(8, 4)
        assert logit_distillation('multiclass', logits, logits, 4.0).abs() < 1e-6
        assert logit_distillation('multiclass', torch.randn(8, 4), logits, 4.0) > 0

    def test_multiclass_scaled_kl(self) -> None:
        student, teacher = torch.randn(8, 4), torch.randn(8, 4)
        expected = 4.0 * F.kl_div(
            F.log_softmax(student / 2, -1),
            F.softmax(teacher / 2, -1),
            reduction='batchmean',
        )
        torch.testing.assert_close(
            logit_distillation('multiclass', student, teacher, 2.0), expected
        )

    @pytest.mark.parametrize('task_type', ['binary', 'multilabel'])
    def test_binary_minimal_at_teacher(self, task_type: TaskType) -> None:
        teacher = torch.randn(8, 3)
        at_teacher = logit_distillation(task_type, teacher, teacher, 2.0)
        elsewhere = logit_distillation(task_type, teacher + 1, teacher, 2.0)
        assert elsewhere > at_teacher


@pytest.mark.parametrize('task_type', TASK_TYPES)
def test_online_fit_and_every_scenario(task_type: TaskType, tmp_path: Path) -> None:
    model = DistillationTask(**task_args(task_type))
    assert model.scenarios() == [('s1',), ('s2',), ('dem',)]
    fit_and_score(model, task_type, tmp_path)


def test_online_losses() -> None:
    model = DistillationTask(
        **task_args('multiclass'), logit_weight=0.5, feature_weight=2.0
    )
    batch = make_batch()
    inputs = model.modality_inputs(batch, require_all=True)
    losses, outputs = model.losses(inputs, model.encode(inputs), batch['label'])
    students = sum(losses[f'{m}_loss'] for m in ('s1', 's2', 'dem'))
    expected = (
        students
        + 0.5 * losses['logit_distillation']
        + 2.0 * losses['feature_distillation']
        + losses['teacher_loss']
    )
    torch.testing.assert_close(losses['loss'], expected)
    assert set(outputs) == {('s1',), ('s2',), ('dem',)}


class _TeacherMode(Callback):
    """Record whether the teacher is in training mode during training steps."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, *args: object
    ) -> None:
        assert isinstance(pl_module, DistillationTask)
        self.modes.append(pl_module.teacher.training)


def test_checkpoint_teacher_frozen(teacher_checkpoint: str, tmp_path: Path) -> None:
    model = DistillationTask(
        **task_args('multiclass'), teacher_checkpoint=teacher_checkpoint
    )
    trained = FeatureFusionTask.load_from_checkpoint(teacher_checkpoint)
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    for key, value in trained.model.state_dict().items():
        torch.testing.assert_close(before[key], value)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    mode = _TeacherMode()
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=64, modality_kinds=MODALITIES, batch_size=16, num_folds=4
    )
    trainer = make_trainer(tmp_path, [mode], logger=False)
    trainer.fit(model, datamodule)
    assert mode.modes and not any(mode.modes)
    for key, value in model.teacher.state_dict().items():
        torch.testing.assert_close(value, before[key])
    batch = make_batch()
    inputs = model.modality_inputs(batch)
    losses, _ = model.losses(inputs, model.encode(inputs), batch['label'])
    assert 'teacher_loss' not in losses


def test_checkpoint_must_fit_students(teacher_checkpoint: str) -> None:
    args = task_args('multiclass') | {'embed_dim': 8}
    with pytest.raises(ValueError, match='does not fit the students'):
        DistillationTask(**args, teacher_checkpoint=teacher_checkpoint)


def test_negative_weight_rejected() -> None:
    with pytest.raises(ValueError, match='feature_weight'):
        DistillationTask(**task_args('multiclass'), feature_weight=-1.0)


def test_checkpoint_reloads_without_the_teacher_file(
    teacher_checkpoint: str, tmp_path: Path
) -> None:
    copy = tmp_path / 'teacher.ckpt'
    copy.write_bytes(Path(teacher_checkpoint).read_bytes())
    model = DistillationTask(**task_args('multiclass'), teacher_checkpoint=str(copy))
    assert model.hparams['teacher_model']['fusion'] == 'mean'
    trainer = make_trainer(tmp_path, logger=False)
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=64, modality_kinds=MODALITIES, batch_size=16, num_folds=4
    )
    trainer.fit(model, datamodule)
    saved = tmp_path / 'student.ckpt'
    trainer.save_checkpoint(saved)
    copy.unlink()
    reloaded = DistillationTask.load_from_checkpoint(saved)
    assert reloaded.frozen_teacher
    for key, value in model.teacher.state_dict().items():
        torch.testing.assert_close(reloaded.teacher.state_dict()[key], value)
    batch = make_batch()
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(batch)['s1'], model(batch)['s1'])


def test_missing_teacher_file_is_named(tmp_path: Path) -> None:
    path = str(tmp_path / 'nowhere.ckpt')
    with pytest.raises(FileNotFoundError, match=r'nowhere\.ckpt.*FeatureFusionTask'):
        DistillationTask(**task_args('multiclass'), teacher_checkpoint=path)
