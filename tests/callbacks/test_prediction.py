# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from lightning.pytorch import Trainer

from torchgeo_colearn.callbacks.prediction import (
    ScenarioPredictionWriter,
    batch_ids,
    prediction_columns,
    prediction_values,
)
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset
from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.scenarios import scenario_modalities

from ..fakes import LinearTask, fake_task, loader, make_dataset, make_trainer


def predict(
    tmp_path: Path,
    model: LinearTask,
    dataset: TensorMultiModalDataset,
    writer: ScenarioPredictionWriter,
    logger: bool = False,
) -> Trainer:
    trainer = make_trainer(tmp_path, [writer], logger=logger)
    trainer.predict(model, loader(dataset), return_predictions=False)
    return trainer


def expected(model: LinearTask, dataset: TensorMultiModalDataset, name: str) -> Any:
    batch = dataset.batch(range(len(dataset)))
    scenario = scenario_modalities(name)
    model.eval()
    with torch.no_grad():
        return model.predict_scenarios(batch, [scenario])[scenario].numpy()


def test_multiclass_rows_with_ids(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    writer = ScenarioPredictionWriter(
        scenarios=['s1', 's2+s1'], output=str(tmp_path / 'out' / 'preds.csv')
    )
    predict(tmp_path, model, dataset, writer)
    frame = pd.read_csv(tmp_path / 'out' / 'preds.csv')
    assert list(frame.columns) == [
        'index',
        'id',
        's1_prob_0',
        's1_prob_1',
        's1_prob_2',
        's1_pred',
        's1+s2_prob_0',
        's1+s2_prob_1',
        's1+s2_prob_2',
        's1+s2_pred',
    ]
    assert len(frame) == 40
    assert list(frame['id']) == [f'sample_{i}' for i in range(40)]
    assert list(frame['index']) == list(range(40))
    for name in ('s1', 's1+s2'):
        probabilities = expected(model, dataset, name)
        columns = [f'{name}_prob_{c}' for c in range(3)]
        assert frame[columns].to_numpy() == pytest.approx(probabilities, abs=1e-6)
        assert list(frame[f'{name}_pred']) == probabilities.argmax(1).tolist()


@pytest.mark.parametrize(
    ('task', 'columns'),
    [
        ('binary', ['s2_prob', 's2_pred']),
        ('regression', ['s2']),
        (
            'multilabel',
            [f's2_prob_l{i}' for i in range(4)] + [f's2_pred_l{i}' for i in range(4)],
        ),
    ],
)
def test_columns_per_task(tmp_path: Path, task: TaskType, columns: list[str]) -> None:
    model = fake_task(task)
    dataset = make_dataset(task)
    class_names = [f'l{i}' for i in range(4)] if task == 'multilabel' else None
    writer = ScenarioPredictionWriter(
        scenarios=['s2'], output=str(tmp_path / 'p.csv'), class_names=class_names
    )
    predict(tmp_path, model, dataset, writer)
    frame = pd.read_csv(tmp_path / 'p.csv')
    assert list(frame.columns) == ['index', 'id', *columns]
    values = expected(model, dataset, 's2')
    if task == 'multilabel':
        assert frame[columns[:4]].to_numpy() == pytest.approx(values, abs=1e-6)
        assert (frame[columns[4:]].to_numpy() == (values >= 0.5)).all()
    else:
        assert frame[columns[0]].to_numpy() == pytest.approx(values, abs=1e-5)
    if task == 'binary':
        assert (frame['s2_pred'].to_numpy() == (values >= 0.5)).all()


def test_defaults_write_every_scenario_to_log_dir(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    no_ids = TensorMultiModalDataset(dataset.tensors)
    writer = ScenarioPredictionWriter(class_names=['a', 'b', 'c'])
    trainer = predict(tmp_path, model, no_ids, writer, logger=True)
    assert writer.path == str(Path(trainer.log_dir or '') / 'predictions.csv')
    frame = pd.read_csv(writer.path)
    assert list(frame['id']) == list(range(40))
    assert {'s1_pred', 's2_pred', 's1+s2_pred', 's1+s2_prob_c'} <= set(frame.columns)
    assert set(frame['s1_pred']) <= {'a', 'b', 'c'}


def test_missing_modality_is_reported(tmp_path: Path) -> None:
    dataset = make_dataset('multiclass')
    only_s1 = TensorMultiModalDataset(
        {k: v for k, v in dataset.tensors.items() if not k.endswith('s2')}
    )
    writer = ScenarioPredictionWriter(scenarios=['s2'], output=str(tmp_path / 'p.csv'))
    with pytest.raises(KeyError, match=r"\['s2'\].*scenarios="):
        predict(tmp_path, fake_task('multiclass'), only_s1, writer)
    with pytest.raises(ValueError, match='scenario'):
        predict(
            tmp_path,
            fake_task('multiclass'),
            dataset,
            ScenarioPredictionWriter(scenarios=['s5']),
        )


def test_prediction_columns_and_values() -> None:
    assert prediction_columns(('a', 'b'), 'binary', 1) == ['a+b_prob', 'a+b_pred']
    assert prediction_columns(('a',), 'multiclass', 2, ['x', 'y']) == [
        'a_prob_x',
        'a_prob_y',
        'a_pred',
    ]
    with pytest.raises(ValueError, match='class_names has 1'):
        prediction_columns(('a',), 'multiclass', 2, ['x'])
    assert prediction_values(torch.tensor([0.2, 0.7]), 'binary') == [
        [pytest.approx(0.2), 0],
        [pytest.approx(0.7), 1],
    ]
    assert prediction_values(
        torch.tensor([[0.1, 0.9], [0.8, 0.2]]), 'multiclass', ['x', 'y']
    ) == [
        [pytest.approx(0.1), pytest.approx(0.9), 'y'],
        [pytest.approx(0.8), pytest.approx(0.2), 'x'],
    ]
    assert prediction_values(torch.tensor([[0.6, 0.4]]), 'multilabel') == [
        [pytest.approx(0.6), pytest.approx(0.4), 1, 0]
    ]
    assert prediction_values(torch.tensor([3.5]), 'regression') == [[3.5]]


def test_batch_ids() -> None:
    assert batch_ids({'id': ['a', 'b']}, 0, 2) == ['a', 'b']
    assert batch_ids({'id': torch.tensor([7, 8])}, 0, 2) == ['7', '8']
    assert batch_ids({}, 5, 2) == ['5', '6']
    with pytest.raises(ValueError, match='"id" has 1 entries for 2'):
        batch_ids({'id': ['a']}, 0, 2)


def test_cli_test_prints_table_and_predict_writes_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchgeo_colearn.main import main

    extra = tmp_path / 'callbacks.yaml'
    extra.write_text(
        'trainer:\n'
        '  callbacks:\n'
        '    - class_path: torchgeo_colearn.callbacks.RepresentationFigures\n'
        '      init_args: {max_samples: 8, projection: pca}\n'
        '    - class_path: torchgeo_colearn.callbacks.RobustnessEvaluation\n'
        '      init_args: {noise_levels: [0.5]}\n'
        '    - class_path: torchgeo_colearn.callbacks.ScenarioPredictionWriter\n'
        f'      init_args: {{scenarios: [s1, s1+dem], output: {tmp_path / "preds.csv"}}}\n'
    )
    args = [
        '--config',
        'experiments/synthetic.yaml',
        '--config',
        str(extra),
        '--trainer.accelerator',
        'cpu',
        '--trainer.max_epochs',
        '1',
        '--trainer.default_root_dir',
        str(tmp_path),
        '--data.init_args.num_samples',
        '100',
    ]
    main(['fit', *args])
    checkpoint = str(next(tmp_path.glob('lightning_logs/version_0/checkpoints/*.ckpt')))
    capsys.readouterr()
    main(['test', *args, '--ckpt_path', checkpoint])
    printed = capsys.readouterr().out
    assert 'scores per inference scenario' in printed and 's1+s2+dem' in printed
    log_dir = tmp_path / 'lightning_logs' / 'version_1'
    for name in (
        'test_scenarios.md',
        'test_representations.png',
        'test_robustness.csv',
    ):
        assert (log_dir / name).exists()
    main(['predict', *args, '--ckpt_path', checkpoint])
    frame = pd.read_csv(tmp_path / 'preds.csv')
    assert len(frame) == 20
    assert frame['id'].str.startswith('synthetic_').all()
    assert list(frame.columns[-2:]) == ['s1+dem_prob_3', 's1+dem_pred']
