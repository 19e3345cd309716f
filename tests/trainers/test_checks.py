# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from torchgeo_colearn import CoLearnTask
from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.trainers.checks import (
    BatchChecks,
    check_non_negative,
    explain_batch_norm,
)

from ..fakes import fake_task, loader, make_dataset, make_trainer


def test_check_non_negative_names_the_first_negative_option() -> None:
    check_non_negative(a=0.0, b=2.0)
    with pytest.raises(ValueError, match=r'^b must be >= 0, got -0\.5$'):
        check_non_negative(a=1.0, b=-0.5, c=-1.0)


# --------------------------------------------------------------------------------------------------
# Targets: every batch on the CPU, naming the key, the sample, its id and the value
# --------------------------------------------------------------------------------------------------


def batch_with(task: TaskType, label: Tensor) -> dict[str, Any]:
    batch = make_dataset(task).batch(range(len(label)))
    batch['label'] = label
    return batch


BAD_TARGETS: list[tuple[TaskType, Tensor, str]] = [
    (
        'multiclass',
        torch.tensor([0.0, 0.7, 1.7, 1.0]),
        r"sample 1 \(id 'sample_1'\) has label 0\.7, which is not a class index",
    ),
    (
        'multiclass',
        torch.tensor([0, 1, 3, 2]),
        r"sample 2 \(id 'sample_2'\) has label 3, outside the class indices 0\.\.2",
    ),
    (
        'multiclass',
        torch.tensor([0, -1, 1, 2]),
        r"sample 1 \(id 'sample_1'\) has label -1, outside the class indices",
    ),
    (
        'binary',
        torch.tensor([0, 1, 2, 1]),
        r"sample 2 \(id 'sample_2'\) has label 2, which is neither 0 nor 1",
    ),
    (
        'binary',
        torch.tensor([-1, 1, 0, 1]),
        r"sample 0 \(id 'sample_0'\) has label -1, which is neither 0 nor 1",
    ),
    (
        'multilabel',
        torch.tensor([[0, 1, 0, 1], [0, 1, 2, 0]]).float(),
        r"sample 1 \(id 'sample_1'\) has label 2, which is neither 0 nor 1",
    ),
    (
        'multilabel',
        torch.ones(4, 3),
        r'shape \(4, 3\), expected \(B, 4\) multi-hot labels .*num_labels=4',
    ),
    (
        'multilabel',
        torch.tensor([0, 3, 1, 2]),
        r'shape \(4,\), expected \(B, 4\) multi-hot labels .*\(class indices\?',
    ),
    (
        'regression',
        torch.tensor([50.0, math.nan, 40.0, 60.0]),
        r"sample 1 \(id 'sample_1'\) has label NaN, which is not a finite number",
    ),
    (
        'regression',
        torch.tensor([50.0, 45.0, -math.inf, 60.0]),
        r"sample 2 \(id 'sample_2'\) has label -inf, which is not a finite number",
    ),
    (
        'regression',
        torch.full((4, 1), 50.0),
        r'shape \(4, 1\), expected \(B,\) with one value .*squeeze',
    ),
]


@pytest.mark.parametrize('task,label,match', BAD_TARGETS)
def test_bad_targets_name_key_sample_and_value(
    task: TaskType, label: Tensor, match: str
) -> None:
    batch = batch_with(task, label)
    with pytest.raises(
        ValueError, match=r"LinearTask, train batch 5, key 'label': " + match
    ):
        fake_task(task).training_step(batch, 5)


def test_target_count_must_match_the_inputs() -> None:
    batch = batch_with('multiclass', torch.tensor([0, 1, 2, 1]))
    batch['label'] = batch['label'][:3]
    with pytest.raises(
        ValueError, match=r"key 'label': 3 targets for a batch of 4 samples"
    ):
        fake_task('multiclass').training_step(batch, 0)


def test_target_without_id_names_the_position() -> None:
    batch = batch_with('multiclass', torch.tensor([0, 1, 7, 1]))
    del batch['id']
    with pytest.raises(ValueError, match=r'sample 2 has label 7'):
        fake_task('multiclass').validation_step(batch, 0)


def test_target_not_a_tensor() -> None:
    batch = batch_with('multiclass', torch.tensor([0, 1, 2, 1]))
    batch['label'] = [0, 1, 2, 1]
    with pytest.raises(TypeError, match=r"key 'label': expected a tensor, got list"):
        fake_task('multiclass').training_step(batch, 0)


def test_complex_target() -> None:
    batch = batch_with('regression', torch.zeros(4, dtype=torch.complex64))
    with pytest.raises(
        TypeError, match=r"key 'label': expected real values, got dtype"
    ):
        fake_task('regression').training_step(batch, 0)


def test_tensor_ids_are_named() -> None:
    batch = batch_with('binary', torch.tensor([0, 1, 1, 5]))
    batch['id'] = torch.tensor([10, 11, 12, 13])
    with pytest.raises(ValueError, match=r'sample 3 \(id 13\) has label 5'):
        fake_task('binary').training_step(batch, 0)


def test_missing_label_names_the_keys() -> None:
    batch = batch_with('multiclass', torch.tensor([0, 1, 2, 1]))
    del batch['label']
    with pytest.raises(KeyError, match=r"test batches need a 'label' key, got keys"):
        fake_task('multiclass').test_step(batch, 0)


@pytest.mark.parametrize(
    'task,label',
    [
        ('binary', torch.tensor([0.0, 1.0, 1.0, 0.0])),
        ('binary', torch.tensor([True, False, True, True])),
        ('multiclass', torch.tensor([0.0, 2.0, 1.0, 1.0])),
        ('multilabel', torch.tensor([[True, False, True, False]] * 4)),
        ('regression', torch.tensor([50, 45, 40, 60])),
    ],
)
def test_valid_targets_of_other_dtypes_pass(task: TaskType, label: Tensor) -> None:
    loss = fake_task(task).training_step(batch_with(task, label), 0)
    assert torch.isfinite(loss)


def test_float_labels_stop_a_fit_at_the_first_batch(tmp_path: Path) -> None:
    dataset = make_dataset('multiclass')
    dataset.tensors['label'] = dataset.tensors['label'].float() + 0.5
    with pytest.raises(
        ValueError,
        match=r"train batch 0, key 'label': sample 0 \(id 'sample_0'\) has label \d\.5, which is not a class",
    ):
        make_trainer(tmp_path, logger=False).fit(
            fake_task('multiclass'), loader(dataset)
        )


def test_validation_targets_are_checked(tmp_path: Path) -> None:
    dataset = make_dataset('multiclass')
    dataset.tensors['label'][20] = 3
    with pytest.raises(
        ValueError,
        match=r"val batch 1, key 'label': sample 4 \(id 'sample_20'\) has label 3",
    ):
        make_trainer(tmp_path, logger=False).validate(
            fake_task('multiclass'), loader(dataset), verbose=False
        )


# --------------------------------------------------------------------------------------------------
# Deferred checks (accelerators), run on the CPU
# --------------------------------------------------------------------------------------------------


def test_deferred_target_check_raises_at_epoch_end(tmp_path: Path) -> None:
    model = fake_task('regression')
    model.batch_checks.defer_on_cpu = True
    dataset = make_dataset('regression')
    dataset.tensors['label'][17] = math.nan
    dataset.tensors['label'][35] = math.nan
    with pytest.raises(
        ValueError,
        match=r"LinearTask, train batch 1 of this epoch, key 'label': a label which is not a "
        r"finite number \(checked at the end of the epoch on 'cpu'",
    ):
        make_trainer(tmp_path, logger=False).fit(model, loader(dataset))
    # the failed verdicts were consumed
    model.batch_checks.raise_deferred()


def test_deferred_input_check_raises_at_epoch_end(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    model.batch_checks.defer_on_cpu = True
    dataset = make_dataset('multiclass')
    dataset.tensors['image_s2'][33, 1] = math.inf
    with pytest.raises(
        ValueError, match=r'image_s2 held NaN or inf in batch 2 of this epoch'
    ):
        make_trainer(tmp_path, logger=False).test(model, loader(dataset), verbose=False)


def test_deferred_prediction_check_raises_at_epoch_end(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    model.batch_checks.defer_on_cpu = True
    dataset = make_dataset('multiclass')
    dataset.tensors['image_s1'][3, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r'image_s1 held NaN or inf in batch 0'):
        make_trainer(tmp_path, logger=False).predict(model, loader(dataset))


def test_deferred_checks_pass_on_valid_batches() -> None:
    checks = BatchChecks()
    checks.defer_on_cpu = True
    checks.check_input('image_s1', torch.zeros(4, 3), {}, defer=True)
    checks.raise_deferred()
    # without defer (direct calls of the model) the check is immediate
    with pytest.raises(ValueError, match=r'image_s1 holds NaN \(sample 1\)'):
        checks.check_input('image_s1', torch.tensor([0.0, math.nan]), {}, defer=False)


# --------------------------------------------------------------------------------------------------
# Inputs: inf and -inf are missing values, as NaN
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('value,name', [(math.inf, 'inf'), (-math.inf, '-inf')])
def test_infinite_input(value: float, name: str) -> None:
    batch = batch_with('multiclass', torch.tensor([0, 1, 2, 1]))
    batch['image_s1'][3, 2, 1] = value
    with pytest.raises(
        ValueError,
        match=rf"image_s1 holds {name} \(sample 3 \(id 'sample_3'\)\); .*fill_nan",
    ):
        fake_task('multiclass').training_step(batch, 0)
    with pytest.raises(ValueError, match=rf'image_s1 holds {name}'):
        fake_task('multiclass').eval()(batch)


def test_integer_inputs_pass_the_missing_value_check() -> None:
    BatchChecks().check_input('image_s1', torch.ones(2, 3, dtype=torch.long), {}, False)


# --------------------------------------------------------------------------------------------------
# A training batch of one sample
# --------------------------------------------------------------------------------------------------

ENCODERS: dict[str, dict[str, Any]] = {
    's1': {'name': 'tempcnn', 'in_channels': 3, 'seq_len': 6, 'hidden_dim': 4},
    'dem': {'name': 'mlp', 'in_features': 5, 'hidden_dims': [4]},
}


def one_sample() -> dict[str, Tensor]:
    return {
        'image_s1': torch.randn(1, 6, 3),
        'image_dem': torch.randn(1, 5),
        'label': torch.tensor([1]),
    }


def test_training_batch_of_one_names_cause_and_fix() -> None:
    task = CoLearnTask(encoders=ENCODERS, num_classes=3, embed_dim=4)
    with pytest.raises(
        ValueError, match=r'single sample.*BatchNorm.*drop_last=True.*larger batch_size'
    ):
        task.training_step(one_sample(), 0)
    task.eval()
    task.validation_step(one_sample(), 0)


def test_other_value_errors_pass_unchanged() -> None:
    with pytest.raises(ValueError, match=r'^unrelated$'), explain_batch_norm(1):
        raise ValueError('unrelated')


# --------------------------------------------------------------------------------------------------
# scheduler='plateau' needs validation every epoch
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'validation,trainer_args,match',
    [
        (False, {}, r'runs no validation \(no validation dataloader'),
        (True, {'limit_val_batches': 0}, r'runs no validation'),
        (True, {'check_val_every_n_epoch': 2}, r'check_val_every_n_epoch=2'),
    ],
)
def test_plateau_without_validation_fails_at_the_start(
    tmp_path: Path, validation: bool, trainer_args: dict[str, Any], match: str
) -> None:
    model = fake_task('multiclass', scheduler='plateau')
    dataset = make_dataset('multiclass')
    trainer = make_trainer(tmp_path, logger=False, **trainer_args)
    with pytest.raises(
        ValueError, match=rf"scheduler='plateau'.*{match}.*scheduler none"
    ):
        trainer.fit(model, loader(dataset), loader(dataset) if validation else None)
    assert trainer.global_step == 0


def test_other_schedulers_train_without_validation(tmp_path: Path) -> None:
    model = fake_task('multiclass', scheduler='cosine')
    trainer = make_trainer(tmp_path, logger=False)
    trainer.fit(model, loader(make_dataset('multiclass')))
    assert trainer.global_step > 0
