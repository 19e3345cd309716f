# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader

from torchgeo_colearn.callbacks.evaluation import (
    ScenarioEvaluation,
    ScenarioPredictor,
    ScenarioScores,
    add_noise,
    check_predictor,
    drop_time_steps,
    parse_scenarios,
    pca_2d,
    scores_to_floats,
    tsne_2d,
)
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset
from torchgeo_colearn.metrics import TaskType, build_metrics, metric_input

Scenario = tuple[str, ...]

#: Layout of the fake modalities: (T, C) time series or (C,) vectors.
SHAPES: dict[str, tuple[int, ...]] = {
    's1': (6, 3),
    's2': (5,),
    's3': (4, 2),
    's4': (3,),
}


class FakeTask(LightningModule):
    """A deterministic task implementing the ScenarioPredictor interface with plain torch.

    Each modality has a linear encoder (time series: masked mean over valid steps first) and a head;
    fused scenarios average the features of their modalities into a shared fusion head. It counts the
    encoder calls, so tests can check that the encoders run once per batch.
    """

    def __init__(
        self,
        task_type: TaskType = 'multiclass',
        modalities: Sequence[str] = ('s1', 's2'),
        fuse: bool = True,
        num_classes: int | None = 3,
        num_labels: int | None = None,
    ) -> None:
        super().__init__()
        torch.manual_seed(0)
        self._modalities = tuple(modalities)
        self._task_type = task_type
        self._num_classes = num_classes if task_type == 'multiclass' else None
        self._num_labels = num_labels if task_type == 'multilabel' else None
        self.fuse = fuse
        outputs = {'multiclass': num_classes, 'multilabel': num_labels}.get(
            task_type, 1
        )
        assert outputs is not None
        self.encoders = nn.ModuleDict(
            {m: nn.Linear(SHAPES[m][-1], 8) for m in self._modalities}
        )
        self.heads = nn.ModuleDict({m: nn.Linear(8, outputs) for m in self._modalities})
        self.fusion_head = nn.Linear(8, outputs)
        self.encoder_calls: Counter[str] = Counter()

    @property
    def modalities(self) -> tuple[str, ...]:
        return self._modalities

    @property
    def task_type(self) -> TaskType:
        return self._task_type

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    @property
    def num_labels(self) -> int | None:
        return self._num_labels

    def scenarios(self) -> list[Scenario]:
        sizes = range(1, len(self.modalities) + 1) if self.fuse else [1]
        return [s for k in sizes for s in itertools.combinations(self.modalities, k)]

    def encode(self, batch: Mapping[str, Any], modality: str) -> Tensor:
        self.encoder_calls[modality] += 1
        x = batch[f'image_{modality}']
        if x.ndim == 3:
            valid = batch.get(f'valid_{modality}')
            if valid is None:
                valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            weights = valid.unsqueeze(-1).float()
            x = (x * weights).sum(1) / weights.sum(1).clamp(min=1)
        return torch.tanh(self.encoders[modality](x))

    def to_metric_space(self, raw: Tensor) -> Tensor:
        match self.task_type:
            case 'binary':
                return torch.sigmoid(raw[:, 0])
            case 'multiclass':
                return torch.softmax(raw, -1)
            case 'multilabel':
                return torch.sigmoid(raw)
            case 'regression':
                return 10 * raw[:, 0] + 50

    def predict_scenarios(
        self, batch: Mapping[str, Any], scenarios: Sequence[Scenario]
    ) -> dict[Scenario, Tensor]:
        needed = [m for m in self.modalities if any(m in s for s in scenarios)]
        features = {m: self.encode(batch, m) for m in needed}
        predictions = {}
        for scenario in scenarios:
            if len(scenario) == 1:
                raw = self.heads[scenario[0]](features[scenario[0]])
            else:
                fused = torch.stack([features[m] for m in scenario]).mean(0)
                raw = self.fusion_head(fused)
            predictions[scenario] = self.to_metric_space(raw)
        return predictions

    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        features = {
            m: self.encode(batch, m) for m in self.modalities if f'image_{m}' in batch
        }
        return {
            m: {'shared': f[:, :4], 'specific': f[:, 4:6], 'unused': f[:, 6:]}
            for m, f in features.items()
        }

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        predictions = self.predict_scenarios(batch, self.scenarios())
        return torch.stack([p.float().mean() for p in predictions.values()]).sum()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pass

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pass

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return {}  # the prediction writer predicts the scenarios itself

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def make_dataset(
    task: TaskType = 'multiclass',
    modalities: Sequence[str] = ('s1', 's2'),
    num_samples: int = 40,
    num_classes: int = 3,
    num_labels: int = 4,
    seed: int = 0,
) -> TensorMultiModalDataset:
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, Tensor] = {
        f'image_{m}': torch.randn(num_samples, *SHAPES[m], generator=generator)
        for m in modalities
    }
    for m in modalities:
        if len(SHAPES[m]) == 2:
            valid = torch.rand(num_samples, SHAPES[m][0], generator=generator) > 0.2
            valid[:, 0] = True
            tensors[f'valid_{m}'] = valid
    match task:
        case 'binary':
            tensors['label'] = torch.randint(0, 2, (num_samples,), generator=generator)
        case 'multiclass':
            tensors['label'] = torch.randint(
                0, num_classes, (num_samples,), generator=generator
            )
        case 'multilabel':
            tensors['label'] = (
                torch.rand(num_samples, num_labels, generator=generator) > 0.5
            ).float()
        case 'regression':
            tensors['label'] = 50 + 10 * torch.randn(num_samples, generator=generator)
    return TensorMultiModalDataset(
        tensors, ids=[f'sample_{i}' for i in range(num_samples)]
    )


def loader(dataset: TensorMultiModalDataset, batch_size: int = 16) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=batch_size)


def make_trainer(tmp_path: Path, callbacks: list[Any], logger: bool = True) -> Trainer:
    return Trainer(
        accelerator='cpu',
        devices=1,
        logger=TensorBoardLogger(str(tmp_path), name='logs') if logger else False,
        callbacks=callbacks,
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        max_epochs=1,
    )


def fake_task(task: TaskType, **kwargs: Any) -> FakeTask:
    return FakeTask(task, num_classes=3, num_labels=4, **kwargs)


def direct_scores(
    model: FakeTask, dataset: TensorMultiModalDataset, scenario: Scenario
) -> dict[str, float]:
    """Score one scenario on the whole dataset with build_metrics, outside any loop."""
    batch = dataset.batch(range(len(dataset)))
    with torch.no_grad():
        prediction = model.predict_scenarios(batch, [scenario])[scenario]
    metrics = build_metrics(model.task_type, model.num_classes, model.num_labels)
    target = batch['label']
    target = target.float() if model.task_type == 'regression' else target.long()
    metrics.update(metric_input(model.task_type, prediction), target)
    return {k: float(v) for k, v in metrics.compute().items()}


# --------------------------------------------------------------------------------------------------
# Scenario names and the interface
# --------------------------------------------------------------------------------------------------


def test_parse_scenarios_orders_modalities_as_trained() -> None:
    parsed = parse_scenarios(['s2', 's2+s1', 's1+s3+s2'], ('s1', 's2', 's3'))
    assert parsed == [('s2',), ('s1', 's2'), ('s1', 's2', 's3')]


@pytest.mark.parametrize('names', [['s9'], ['s1+s1'], ['s1', 's1'], ['']])
def test_parse_scenarios_rejects_bad_names(names: list[str]) -> None:
    with pytest.raises(ValueError, match='scenario'):
        parse_scenarios(names, ('s1', 's2'))


def test_check_predictor_names_missing_members() -> None:
    with pytest.raises(TypeError, match=r"missing \['modalities'"):
        check_predictor(nn.Linear(1, 1))
    model = fake_task('multiclass')
    assert check_predictor(model) is model
    assert isinstance(model, ScenarioPredictor)


def test_constructor_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match='stages'):
        ScenarioEvaluation(stages=['train'])  # type: ignore[list-item]
    with pytest.raises(ValueError, match='noise_levels'):
        ScenarioEvaluation(noise_levels=[-1.0])
    with pytest.raises(ValueError, match='missing_fractions'):
        ScenarioEvaluation(missing_fractions=[1.0])
    with pytest.raises(ValueError, match='max_embedding_samples'):
        ScenarioEvaluation(max_embedding_samples=-1)
    with pytest.raises(ValueError, match='projection'):
        ScenarioEvaluation(projection='umap')  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Metric values against hand-computed cases
# --------------------------------------------------------------------------------------------------


def score(
    task: TaskType,
    batches: Sequence[tuple[Tensor, Tensor]],
    num_classes: int | None = None,
    num_labels: int | None = None,
) -> dict[str, float]:
    scores = ScenarioScores([('a',)], task, num_classes, num_labels)
    for prediction, target in batches:
        scores.update({('a',): prediction}, target)
    return scores_to_floats(scores.compute())['a']


def test_multiclass_metrics_by_hand() -> None:
    # predictions 0 0 1 2 2 1 for targets 0 0 1 1 2 2: confusion [[2,0,0],[0,1,1],[0,1,1]]
    predicted = torch.tensor([0, 0, 1, 2, 2, 1])
    probabilities = torch.nn.functional.one_hot(predicted, 3).float() * 0.8 + 0.2 / 3
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    values = score(
        'multiclass',
        [(probabilities[:4], target[:4]), (probabilities[4:], target[4:])],
        num_classes=3,
    )
    observed = 4 / 6
    expected_agreement = (2 * 2 + 2 * 2 + 2 * 2) / 36
    assert values['OverallAccuracy'] == pytest.approx(observed)
    assert values['AverageAccuracy'] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert values['F1Score'] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert values['CohenKappa'] == pytest.approx(
        (observed - expected_agreement) / (1 - expected_agreement)
    )


def test_binary_metrics_by_hand() -> None:
    # positive-class probabilities; predicted 1 1 0 0 0 against 1 0 0 0 1: TP 1, FP 1, TN 2, FN 1
    probability = torch.tensor([0.9, 0.6, 0.2, 0.4, 0.3])
    target = torch.tensor([1, 0, 0, 0, 1])
    values = score('binary', [(probability, target)])
    recall = {0: 2 / 3, 1: 1 / 2}
    precision = {0: 2 / 3, 1: 1 / 2}
    f1 = [2 * precision[c] * recall[c] / (precision[c] + recall[c]) for c in (0, 1)]
    observed = 3 / 5
    expected_agreement = (3 / 5) * (3 / 5) + (2 / 5) * (2 / 5)
    assert values['OverallAccuracy'] == pytest.approx(observed)
    assert values['AverageAccuracy'] == pytest.approx((recall[0] + recall[1]) / 2)
    assert values['F1Score'] == pytest.approx(sum(f1) / 2)
    assert values['CohenKappa'] == pytest.approx(
        (observed - expected_agreement) / (1 - expected_agreement)
    )


def test_multilabel_metrics_by_hand() -> None:
    probability = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6], [0.3, 0.4]])
    target = torch.tensor([[1, 0], [0, 1], [0, 1], [1, 0]])
    values = score('multilabel', [(probability, target.float())], num_labels=2)
    # label 0: predicted 1 1 0 0 vs 1 0 0 1 -> TP 1, FP 1, FN 1; label 1: 0 1 1 0 vs 0 1 1 0 -> TP 2
    assert values['MacroF1Score'] == pytest.approx((0.5 + 1.0) / 2)
    assert values['MicroF1Score'] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    # AP of label 0: ranking 0.9 (+), 0.8 (-), 0.3 (+), 0.1 (-) -> (1/1 + 2/3) / 2
    # AP of label 1: ranking 0.7 (+), 0.6 (+), 0.4, 0.2 -> 1
    assert values['AveragePrecision'] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)


def test_regression_metrics_by_hand() -> None:
    prediction = torch.tensor([2.0, 4.0, 7.0, 9.0])
    target = torch.tensor([1.0, 5.0, 7.0, 11.0])
    values = score(
        'regression', [(prediction[:2], target[:2]), (prediction[2:], target[2:])]
    )
    errors = torch.tensor([1.0, -1.0, 0.0, -2.0])
    ss_res = float(errors.square().sum())
    ss_tot = float((target - target.mean()).square().sum())
    assert values['R2'] == pytest.approx(1 - ss_res / ss_tot)
    assert values['RMSE'] == pytest.approx(math.sqrt(ss_res / 4))
    assert values['MAE'] == pytest.approx(1.0)


def test_scores_reject_mismatched_predictions() -> None:
    scores = ScenarioScores([('a',), ('b',)], 'regression')
    with pytest.raises(KeyError, match="'b'"):
        scores.update({('a',): torch.zeros(2)}, torch.zeros(2))
    with pytest.raises(ValueError, match='shape'):
        scores.update({('a',): torch.zeros(3), ('b',): torch.zeros(2)}, torch.zeros(2))


# --------------------------------------------------------------------------------------------------
# One pass over the data
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('task', ['binary', 'multiclass', 'multilabel', 'regression'])
def test_one_pass_equals_each_scenario_alone(tmp_path: Path, task: TaskType) -> None:
    model = fake_task(task, modalities=('s1', 's2', 's3'))
    dataset = make_dataset(task, modalities=('s1', 's2', 's3'))
    together = ScenarioEvaluation(stages=['test'], print_table=False, figures=False)
    make_trainer(tmp_path / 'all', [together], logger=False).test(
        model, loader(dataset), verbose=False
    )
    assert list(together.results['test']) == [
        's1',
        's2',
        's3',
        's1+s2',
        's1+s3',
        's2+s3',
        's1+s2+s3',
    ]
    for scenario in model.scenarios():
        name = '+'.join(scenario)
        alone = ScenarioEvaluation(
            scenarios=[name], stages=['test'], print_table=False, figures=False
        )
        make_trainer(tmp_path / name, [alone], logger=False).test(
            model, loader(dataset), verbose=False
        )
        assert alone.results['test'][name] == together.results['test'][name]
        expected = direct_scores(model, dataset, scenario)
        assert together.results['test'][name] == pytest.approx(expected, abs=1e-6)


def test_encoders_run_once_per_batch(tmp_path: Path) -> None:
    model = fake_task('multiclass', modalities=('s1', 's2', 's3', 's4'))
    dataset = make_dataset('multiclass', modalities=('s1', 's2', 's3', 's4'))
    callback = ScenarioEvaluation(
        stages=['test'], print_table=False, figures=False, max_embedding_samples=0
    )
    make_trainer(tmp_path, [callback], logger=False).test(
        model, loader(dataset, batch_size=10), verbose=False
    )
    assert len(callback.results['test']) == 15
    assert model.encoder_calls == dict.fromkeys(model.modalities, 4)


def test_logged_names_and_validation(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    callback = ScenarioEvaluation(print_table=False, figures=False)
    trainer = make_trainer(tmp_path, [callback], logger=False)
    trainer.fit(model, loader(dataset), loader(dataset))
    assert 'val/s1+s2/AverageAccuracy' in trainer.callback_metrics
    assert set(callback.results) == {'val'}
    results = trainer.test(model, loader(dataset), verbose=False)[0]
    assert results['test/s1/CohenKappa'] == pytest.approx(
        callback.results['test']['s1']['CohenKappa']
    )
    assert {k.split('/')[1] for k in results} == {'s1', 's2', 's1+s2'}


def test_sanity_check_is_not_scored(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    callback = ScenarioEvaluation(stages=['val'], print_table=False, figures=False)
    after_sanity_check: list[dict[Any, Any]] = []

    class Probe(Callback):
        def on_sanity_check_end(
            self, trainer: Trainer, pl_module: LightningModule
        ) -> None:
            after_sanity_check.append(dict(callback.results))

    trainer = make_trainer(tmp_path, [callback, Probe()], logger=False)
    trainer.num_sanity_val_steps = 2
    trainer.fit(model, loader(dataset), loader(dataset))
    assert after_sanity_check == [{}]
    assert set(callback.results) == {'val'}


def test_missing_label_or_modality_is_reported(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    no_label = TensorMultiModalDataset(
        {k: v for k, v in dataset.tensors.items() if k != 'label'}
    )
    callback = ScenarioEvaluation(stages=['test'], print_table=False, figures=False)
    with pytest.raises(KeyError, match='label'):
        make_trainer(tmp_path, [callback], logger=False).test(
            model, loader(no_label), verbose=False
        )
    only_s1 = TensorMultiModalDataset(
        {k: v for k, v in dataset.tensors.items() if not k.endswith('s2')}
    )
    with pytest.raises(KeyError, match=r"'s2'.*scenarios="):
        make_trainer(tmp_path, [callback], logger=False).test(
            model, loader(only_s1), verbose=False
        )
    alone = ScenarioEvaluation(
        scenarios=['s1'], stages=['test'], print_table=False, figures=False
    )
    make_trainer(tmp_path, [alone], logger=False).test(
        model, loader(only_s1), verbose=False
    )
    assert list(alone.results['test']) == ['s1']


def test_task_without_interface_is_rejected(tmp_path: Path) -> None:
    class Plain(LightningModule):
        def test_step(self, batch: Any, batch_idx: int) -> None:
            pass

    callback = ScenarioEvaluation(stages=['test'])
    with pytest.raises(TypeError, match='ScenarioPredictor'):
        make_trainer(tmp_path, [callback], logger=False).test(
            Plain(), loader(make_dataset()), verbose=False
        )
    switched_off = ScenarioEvaluation(stages=[])
    make_trainer(tmp_path, [switched_off], logger=False).test(
        Plain(), loader(make_dataset()), verbose=False
    )
    assert switched_off.results == {}


# --------------------------------------------------------------------------------------------------
# No device-to-host synchronisation in the loop
# --------------------------------------------------------------------------------------------------

#: Tensor methods and torch functions that read device values back to the host (or need to).
SYNC_POINTS: list[tuple[Any, str]] = [
    (torch.Tensor, 'item'),
    (torch.Tensor, 'tolist'),
    (torch.Tensor, 'cpu'),
    (torch.Tensor, 'numpy'),
    (torch.Tensor, '__bool__'),
    (torch.Tensor, '__int__'),
    (torch.Tensor, '__float__'),
    (torch.Tensor, 'nonzero'),
    (torch.Tensor, 'unique'),
    (torch, 'nonzero'),
    (torch, 'unique'),
    (torch, 'bincount'),
    (torch, 'masked_select'),
]


@contextmanager
def count_sync_points(
    monkeypatch: pytest.MonkeyPatch, counter: Counter[str]
) -> Iterator[None]:
    """Count calls to the host-reading functions while active (tensors of any device)."""
    active = [False]

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if active[0]:
                counter[name] += 1
            return original(*args, **kwargs)

        return wrapper

    with monkeypatch.context() as patch:
        for owner, name in SYNC_POINTS:
            patch.setattr(owner, name, counting(name, getattr(owner, name)))
        active[0] = True
        yield
        active[0] = False


def watch_batch_hooks(
    callback: ScenarioEvaluation, monkeypatch: pytest.MonkeyPatch, counter: Counter[str]
) -> None:
    """Count the sync points hit inside the callback's batch hooks only."""
    for hook in ('on_validation_batch_end', 'on_test_batch_end'):
        original = getattr(callback, hook)

        def watched(*args: Any, original: Callable[..., Any] = original) -> None:
            with count_sync_points(monkeypatch, counter):
                original(*args)

        monkeypatch.setattr(callback, hook, watched)


@pytest.mark.parametrize('task', ['binary', 'multiclass', 'multilabel', 'regression'])
def test_batch_hooks_never_read_back_to_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: TaskType
) -> None:
    model = fake_task(task)
    dataset = make_dataset(task)
    callback = ScenarioEvaluation(
        figures=False,
        print_table=False,
        noise_levels=[0.5],
        missing_fractions=[0.5],
        max_embedding_samples=20,
    )
    counter: Counter[str] = Counter()
    watch_batch_hooks(callback, monkeypatch, counter)
    trainer = make_trainer(tmp_path, [callback], logger=False)
    trainer.fit(model, loader(dataset), loader(dataset))
    trainer.test(model, loader(dataset), verbose=False)
    assert callback.results['test']
    assert counter == {}


def test_sync_counter_catches_a_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Syncing(FakeTask):
        def predict_scenarios(
            self, batch: Mapping[str, Any], scenarios: Sequence[Scenario]
        ) -> dict[Scenario, Tensor]:
            if batch['label'].sum() > 0:  # a hidden Tensor.__bool__
                pass
            return super().predict_scenarios(batch, scenarios)

    callback = ScenarioEvaluation(stages=['test'], print_table=False, figures=False)
    counter: Counter[str] = Counter()
    watch_batch_hooks(callback, monkeypatch, counter)
    make_trainer(tmp_path, [callback], logger=False).test(
        Syncing(), loader(make_dataset()), verbose=False
    )
    assert counter['__bool__'] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_no_cuda_sync_in_batch_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    callback = ScenarioEvaluation(
        stages=['test'],
        print_table=False,
        figures=False,
        noise_levels=[0.5],
        missing_fractions=[0.5],
        max_embedding_samples=0,
    )
    original = callback.on_test_batch_end

    def strict(*args: Any) -> None:
        torch.cuda.set_sync_debug_mode('error')
        try:
            original(*args)
        finally:
            torch.cuda.set_sync_debug_mode('default')

    monkeypatch.setattr(callback, 'on_test_batch_end', strict)
    trainer = Trainer(
        accelerator='gpu',
        devices=1,
        logger=False,
        callbacks=[callback],
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(model, loader(dataset), verbose=False)
    assert callback.results['test']['s1+s2'] == pytest.approx(
        direct_scores(model.cpu(), dataset, ('s1', 's2')), abs=1e-5
    )


# --------------------------------------------------------------------------------------------------
# Files, figures, TensorBoard
# --------------------------------------------------------------------------------------------------


def test_test_end_writes_tables_figures_and_tensorboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    callback = ScenarioEvaluation(
        noise_levels=[0.5, 2.0],
        missing_fractions=[0.5],
        max_embedding_samples=24,
        projection='pca',
    )
    trainer = make_trainer(tmp_path, [callback])
    trainer.test(model, loader(dataset), verbose=False)
    log_dir = Path(trainer.log_dir or '')
    names = {
        'test_scenarios.csv',
        'test_scenarios.json',
        'test_scenarios.md',
        'test_scenarios.png',
        'test_representations.png',
        'test_robustness.csv',
        'test_robustness_noise.png',
        'test_robustness_missing.png',
        'projector_config.pbtxt',
    }
    assert names <= set(os.listdir(log_dir))
    table = pd.read_csv(log_dir / 'test_scenarios.csv', index_col='scenario')
    assert list(table.index) == ['s1', 's2', 's1+s2']
    assert table.loc['s1+s2', 'F1Score'] == pytest.approx(
        callback.results['test']['s1+s2']['F1Score']
    )
    document = json.loads((log_dir / 'test_scenarios.json').read_text())
    assert document['task'] == 'multiclass'
    assert document['scenarios'] == callback.results['test']
    markdown = (log_dir / 'test_scenarios.md').read_text().splitlines()
    assert markdown[0].startswith('| scenario | AverageAccuracy')
    assert len(markdown) == 2 + 3
    printed = capsys.readouterr().out
    assert 's1+s2' in printed and 'OverallAccuracy' in printed

    robustness = pd.read_csv(log_dir / 'test_robustness.csv')
    noise = robustness[robustness['perturbation'] == 'noise']
    assert sorted(set(noise['level'])) == [0.0, 0.5, 2.0]
    assert len(noise) == 3 * 3
    clean = noise[(noise['level'] == 0) & (noise['scenario'] == 's2')]
    assert float(clean['OverallAccuracy'].iloc[0]) == pytest.approx(
        callback.results['test']['s2']['OverallAccuracy']
    )
    # only scenarios with a time series (s1) have a missing-step curve
    missing = robustness[robustness['perturbation'] == 'missing']
    assert set(missing['scenario']) == {'s1', 's1+s2'}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={'images': 0}).Reload()
    assert {
        'test/scenarios',
        'test/representations',
        'test/robustness_noise',
        'test/robustness_missing',
    } <= set(events.Tags()['images'])
    assert 'test/s1+s2/OverallAccuracy' in events.Tags()['scalars']
    projector = (log_dir / 'projector_config.pbtxt').read_text()
    for part in ('shared', 'specific', 'unused'):
        assert f'tensor_name: "{part}' in projector
    metadata = next(log_dir.glob('*/shared/metadata.tsv')).read_text().splitlines()
    assert metadata[0] == 'modality\tlabel\tsample'
    assert len(metadata) == 1 + 2 * 24


def test_output_dir_and_no_logger(tmp_path: Path) -> None:
    model = fake_task('regression')
    callback = ScenarioEvaluation(
        output_dir=str(tmp_path / 'results'), projection='pca', print_table=False
    )
    make_trainer(tmp_path, [callback], logger=False).test(
        model, loader(make_dataset('regression')), verbose=False
    )
    written = set(os.listdir(tmp_path / 'results'))
    assert {
        'test_scenarios.csv',
        'test_scenarios.png',
        'test_representations.png',
    } <= written
    assert 'test_robustness.csv' not in written


def test_representations_are_bounded(tmp_path: Path) -> None:
    model = fake_task('multilabel')
    callback = ScenarioEvaluation(
        stages=['test'], figures=False, print_table=False, max_embedding_samples=21
    )
    seen: list[int] = []
    original = callback._gather_representations

    def spy() -> Any:
        gathered = original()
        assert gathered is not None
        parts, labels = gathered
        seen.extend([labels.shape[0], parts['shared']['s1'].shape[0]])
        return gathered

    callback._gather_representations = spy  # type: ignore[method-assign]
    make_trainer(tmp_path, [callback]).test(
        model, loader(make_dataset('multilabel'), batch_size=8), verbose=False
    )
    assert seen == [21, 21]


# --------------------------------------------------------------------------------------------------
# Perturbations and projections
# --------------------------------------------------------------------------------------------------


def test_drop_time_steps_counts_and_masks() -> None:
    batch = make_dataset('multiclass', num_samples=50).batch(range(50))
    valid = batch['valid_s1']
    dropped = drop_time_steps(batch, 0.5, torch.Generator().manual_seed(1))
    keep = dropped['valid_s1']
    n_valid = valid.sum(1)
    expected = n_valid - torch.minimum((0.5 * n_valid).round().long(), n_valid - 1)
    assert torch.equal(keep.sum(1), expected)
    assert not (keep & ~valid).any()
    assert torch.equal(
        dropped['image_s1'][~keep], torch.zeros_like(dropped['image_s1'][~keep])
    )
    assert torch.equal(dropped['image_s1'][keep], batch['image_s1'][keep])
    assert dropped['image_s2'] is batch['image_s2']
    assert batch['valid_s1'] is valid  # the input batch is left alone


def test_drop_time_steps_keeps_one_step_and_creates_mask() -> None:
    x = torch.ones(4, 5, 2, 3, 3)
    dropped = drop_time_steps({'image_a': x}, 0.99)
    assert dropped['valid_a'].shape == (4, 5)
    assert dropped['valid_a'].sum(1).tolist() == [1, 1, 1, 1]


def test_add_noise_scales_with_level() -> None:
    batch = {'image_a': torch.zeros(2000, 3), 'label': torch.zeros(2000)}
    assert torch.equal(add_noise(batch, 0.0)['image_a'], batch['image_a'])
    noisy = add_noise(batch, 2.0, torch.Generator().manual_seed(0))
    assert float(noisy['image_a'].std()) == pytest.approx(2.0, rel=0.05)
    assert noisy['label'] is batch['label']


def test_pca_2d_finds_the_main_axis() -> None:
    generator = torch.Generator().manual_seed(0)
    t = torch.randn(100, generator=generator)
    x = torch.stack([3 * t, -3 * t, 0.1 * torch.randn(100, generator=generator)], 1)
    coords = pca_2d(x)
    assert coords.shape == (100, 2)
    assert coords[:, 0].var() > 50 * coords[:, 1].var()
    centred = x - x.mean(0)
    assert torch.allclose(coords[:, 0].abs(), centred[:, :2].norm(dim=1), atol=0.1)
    assert pca_2d(torch.randn(5, 1)).shape == (5, 2)


def test_tsne_2d_separates_clusters() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 10, generator=generator) * 10
    labels = torch.arange(60) % 3
    x = centres[labels] + torch.randn(60, 10, generator=generator)
    coords = tsne_2d(x, perplexity=10, iterations=250)
    assert coords.shape == (60, 2) and torch.isfinite(coords).all()
    distances = torch.cdist(coords, coords).fill_diagonal_(math.inf)
    assert torch.equal(labels[distances.argmin(1)], labels)
    assert torch.equal(coords, tsne_2d(x, perplexity=10, iterations=250))


# --------------------------------------------------------------------------------------------------
# With CoLearnTask on the synthetic datamodule
# --------------------------------------------------------------------------------------------------


def test_colearn_task_on_synthetic_data(tmp_path: Path) -> None:
    from torchgeo_colearn.datamodules.synthetic import SyntheticMultiSensorDataModule
    from torchgeo_colearn.trainers.colearn import CoLearnTask

    datamodule = SyntheticMultiSensorDataModule(num_samples=100, batch_size=16)
    task = CoLearnTask(
        encoders={
            's1': {
                'name': 'tempcnn',
                'in_channels': 3,
                'seq_len': 12,
                'hidden_dim': 8,
                'dense_dim': 16,
            },
            's2': {
                'name': 'tempcnn',
                'in_channels': 3,
                'seq_len': 12,
                'hidden_dim': 8,
                'dense_dim': 16,
            },
            'dem': {'name': 'mlp', 'in_features': 16},
        },
        num_classes=4,
        embed_dim=8,
    )
    callback = ScenarioEvaluation(
        noise_levels=[1.0],
        missing_fractions=[0.5],
        max_embedding_samples=16,
        figures=False,
        print_table=False,
    )
    trainer = make_trainer(tmp_path, [callback])
    trainer.fit(task, datamodule)
    results = trainer.test(task, datamodule, verbose=False)[0]
    scores = callback.results['test']
    assert list(scores) == ['s1', 's2', 'dem', 's1+s2', 's1+dem', 's2+dem', 's1+s2+dem']
    # the single-modality scenarios agree with the task's own per-modality metrics
    for modality in ('s1', 's2', 'dem'):
        for metric, value in scores[modality].items():
            assert results[f'test_{modality}_{metric}'] == pytest.approx(
                value, abs=1e-6
            )
    log_dir = Path(trainer.log_dir or '')
    written = set(os.listdir(log_dir))
    assert {
        'test_scenarios.md',
        'test_robustness.csv',
        'projector_config.pbtxt',
    } <= written
    missing = pd.read_csv(log_dir / 'test_robustness.csv').query(
        "perturbation == 'missing'"
    )
    assert 'dem' not in set(missing['scenario'])
