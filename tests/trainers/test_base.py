# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset
from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.models import Encoder
from torchgeo_colearn.scenarios import scenario_name
from torchgeo_colearn.trainers import (
    CoLearnTask,
    DistillationTask,
    EnsembleTask,
    FeatureFusionTask,
    InputFusionTask,
    MultiModalTask,
    ShaSpecTask,
    SingleModalityTask,
    check_predictor,
)

from ..fakes import (
    direct_scores,
    fake_task,
    loader,
    make_dataset,
    make_trainer,
    tiny_tempcnn,
)

TASKS: list[TaskType] = ['binary', 'multiclass', 'multilabel', 'regression']


@pytest.mark.parametrize('task', TASKS)
def test_one_pass_scores_equal_each_scenario_alone(
    tmp_path: Path, task: TaskType
) -> None:
    modalities = ('s1', 's2', 's3')
    model = fake_task(task, modalities=modalities)
    dataset = make_dataset(task, modalities=modalities)
    (logged,) = make_trainer(tmp_path, logger=False).test(
        model, loader(dataset), verbose=False
    )
    results = model.scenario_results['test']
    assert list(results) == ['s1', 's2', 's3', 's1+s2', 's1+s3', 's2+s3', 's1+s2+s3']
    for scenario in model.scenarios():
        name = scenario_name(scenario)
        expected = direct_scores(model, dataset, scenario)
        assert {k: v for k, v in results[name].items() if k != 'count'} == (
            pytest.approx(expected, abs=1e-5)
        )
        assert results[name]['count'] == len(dataset)
        for metric, value in expected.items():
            assert logged[f'test/{name}/{metric}'] == pytest.approx(value, abs=1e-5)


def test_logged_names_training_and_validation(tmp_path: Path) -> None:
    model = fake_task('multiclass', fuse=False)
    dataset = make_dataset('multiclass')
    trainer = make_trainer(tmp_path, logger=False)
    trainer.fit(model, loader(dataset), loader(dataset))
    logged = set(trainer.callback_metrics)
    assert {
        'val_loss',
        'train_loss',
        'val/s1/AverageAccuracy',
        'val/s2/count',
    } <= logged
    assert {'train/s1/F1Score', 'train/s2/CohenKappa'} <= logged
    assert not any('+' in key for key in logged)
    assert set(model.scenario_results) == {'train', 'val'}


@pytest.mark.parametrize(
    ('logger', 'progress_bar', 'max_steps', 'expected'),
    [
        (False, False, -1, 2),
        (True, False, -1, 6),
        (False, True, -1, 6),
        # a fit that max_steps ends within the first epoch logs its last step
        (False, False, 2, 1),
    ],
)
def test_step_loss_logged_where_seen(
    tmp_path: Path, logger: bool, progress_bar: bool, max_steps: int, expected: int
) -> None:
    model = fake_task('multiclass')
    calls: list[str] = []
    log = model.log

    def counted(name: str, *args: Any, **kwargs: Any) -> None:
        calls.append(name)
        log(name, *args, **kwargs)

    model.log = counted  # type: ignore[method-assign]
    trainer = make_trainer(
        tmp_path,
        logger=logger,
        enable_progress_bar=progress_bar,
        max_epochs=2,
        max_steps=max_steps,
    )
    # 40 samples in batches of 16: 3 training steps per epoch
    trainer.fit(model, loader(make_dataset('multiclass')))
    # without logger or bar only each epoch's last step logs: the metric an epoch leaves is the same
    assert calls.count('train_loss') == expected
    assert 'train_loss' in trainer.callback_metrics


def test_sanity_check_leaves_no_scores(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    seen: list[bool] = []

    class Probe(Callback):
        def on_sanity_check_end(
            self, trainer: Trainer, pl_module: LightningModule
        ) -> None:
            seen.append('val/s1/F1Score' in trainer.callback_metrics)

    trainer = make_trainer(tmp_path, [Probe()], logger=False, num_sanity_val_steps=2)
    trainer.fit(model, loader(dataset), loader(dataset))
    assert seen == [False]
    assert 'val/s1/F1Score' in trainer.callback_metrics


def test_predict_step_returns_every_available_scenario() -> None:
    model = fake_task('regression', modalities=('s1', 's2', 's3'))
    batch = make_dataset('regression', modalities=('s1', 's2', 's3')).batch(range(4))
    model.eval()
    with torch.no_grad():
        out = model.predict_step(batch, 0)
        assert sorted(out) == sorted(scenario_name(s) for s in model.scenarios())
        del batch['image_s3'], batch['valid_s3']
        partial = model.predict_step(batch, 0)
    assert sorted(partial) == ['s1', 's1+s2', 's2']
    assert torch.allclose(partial['s1+s2'], out['s1+s2'])


def test_check_predictor_names_missing_members() -> None:
    class Plain(LightningModule):
        pass

    with pytest.raises(TypeError, match=r"ScenarioPredictor.*'scenarios'"):
        check_predictor(Plain())
    assert check_predictor(fake_task()) is not None


# --------------------------------------------------------------------------------------------------
# Every method: each modality's encoders run once per validation and test batch
# --------------------------------------------------------------------------------------------------

ENCODERS = {
    's1': tiny_tempcnn(3, 6),
    's2': {'name': 'mlp', 'in_features': 5, 'hidden_dims': [8]},
    's3': tiny_tempcnn(2, 6),
}

METHODS: list[tuple[type[MultiModalTask], dict[str, Any]]] = [
    (CoLearnTask, {}),
    (SingleModalityTask, {}),
    (FeatureFusionTask, {}),
    (InputFusionTask, {'encoders': {m: ENCODERS[m] for m in ('s1', 's3')}}),
    (EnsembleTask, {}),
    (DistillationTask, {}),
    (ShaSpecTask, {}),
]


def method_dataset(
    modalities: tuple[str, ...], size: int = 24
) -> TensorMultiModalDataset:
    generator = torch.Generator().manual_seed(0)
    shapes = {'s1': (6, 3), 's2': (5,), 's3': (6, 2)}
    tensors = {
        f'image_{m}': torch.randn(size, *shapes[m], generator=generator)
        for m in modalities
    }
    tensors['label'] = torch.randint(0, 3, (size,), generator=generator)
    return TensorMultiModalDataset(tensors)


@contextmanager
def count_calls(
    modules: Mapping[str, nn.Module], counter: Counter[str]
) -> Iterator[None]:
    handles = [
        module.register_forward_hook(lambda *_, name=name: counter.update([name]))
        for name, module in modules.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


#: The task arguments shared by the per-method tests (each method adds its own options).
TINY_MULTICLASS: dict[str, Any] = {
    'encoders': ENCODERS,
    'task': 'multiclass',
    'num_classes': 3,
    'embed_dim': 8,
}


@pytest.mark.parametrize(
    ('method', 'options'), METHODS, ids=lambda v: getattr(v, '__name__', '')
)
def test_encoders_run_once_per_evaluation_batch(
    tmp_path: Path, method: type[MultiModalTask], options: dict[str, Any]
) -> None:
    model = method(**{**TINY_MULTICLASS, **options})
    dataset = method_dataset(model.modalities)
    # every encoder of the method's own networks (a distillation teacher is part of its loss)
    encoders = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, Encoder) and not name.startswith('teacher')
    }
    fused = {'model.fused_encoder'} if method is InputFusionTask else set()
    one_pass: Counter[str] = Counter()
    model.eval()
    with count_calls(encoders, one_pass), torch.no_grad():
        model.encode(model.modality_inputs(dataset.batch(range(8))))
    # one call per modality, or per modality for a trunk the modalities share (ShaSpec)
    assert set(one_pass) | fused == set(encoders)
    assert all(calls in (1, len(model.modalities)) for calls in one_pass.values())
    # input fusion encodes each scenario's concatenated input: once per scenario, never more
    expected = one_pass + Counter(dict.fromkeys(fused, len(model.scenarios())))
    trainer = make_trainer(tmp_path, logger=False, limit_train_batches=1)
    for run in (trainer.validate, trainer.test):
        counter: Counter[str] = Counter()
        with count_calls(encoders, counter):
            (logged,) = run(model, loader(dataset, batch_size=8), verbose=False)
        assert counter == {name: 3 * calls for name, calls in expected.items()}
    assert {f'test/{scenario_name(s)}/count' for s in model.scenarios()} <= set(logged)


# --------------------------------------------------------------------------------------------------
# No device-to-host synchronisation in the steps
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


def watch_steps(
    model: MultiModalTask, monkeypatch: pytest.MonkeyPatch, counter: Counter[str]
) -> None:
    """Count the sync points inside the training, validation and test steps only."""
    # On the CPU the value checks read back at once by design; on accelerators they are deferred:
    # run the deferred path, whose single read-back happens at the end of the epoch.
    model.batch_checks.defer_on_cpu = True
    for hook in ('training_step', 'validation_step', 'test_step'):
        original = getattr(model, hook)

        def watched(*args: Any, original: Callable[..., Any] = original) -> Any:
            with count_sync_points(monkeypatch, counter):
                return original(*args)

        monkeypatch.setattr(model, hook, watched)


@pytest.mark.parametrize('task', TASKS)
def test_steps_never_read_back_to_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: TaskType
) -> None:
    model = fake_task(task)
    dataset = make_dataset(task)
    counter: Counter[str] = Counter()
    watch_steps(model, monkeypatch, counter)
    trainer = make_trainer(tmp_path, logger=False)
    trainer.fit(model, loader(dataset), loader(dataset))
    trainer.test(model, loader(dataset), verbose=False)
    assert model.scenario_results['test']
    assert counter == {}


def test_sync_counter_catches_a_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fake_task('multiclass')
    original = model.encode

    def syncing(inputs: Any) -> Any:
        if inputs['s1'][0].sum() > 0:  # a hidden Tensor.__bool__
            pass
        return original(inputs)

    monkeypatch.setattr(model, 'encode', syncing)
    counter: Counter[str] = Counter()
    watch_steps(model, monkeypatch, counter)
    make_trainer(tmp_path, logger=False).test(
        model, loader(make_dataset()), verbose=False
    )
    assert counter['__bool__'] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_no_cuda_sync_in_the_test_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fake_task('multiclass')
    dataset = make_dataset('multiclass')
    original = model.test_step

    def strict(*args: Any) -> None:
        torch.cuda.set_sync_debug_mode('error')
        try:
            original(*args)
        finally:
            torch.cuda.set_sync_debug_mode('default')

    monkeypatch.setattr(model, 'test_step', strict)
    trainer = make_trainer(tmp_path, logger=False, accelerator='gpu')
    trainer.test(model, loader(dataset), verbose=False)
    expected = direct_scores(model.cpu(), dataset, ('s1', 's2'))
    scores = model.scenario_results['test']['s1+s2']
    assert {k: v for k, v in scores.items() if k != 'count'} == pytest.approx(
        expected, abs=1e-5
    )


class CountEncoderCalls(Callback):
    """Count the calls of every encoder module per validation and test batch (forward hooks)."""

    #: Stage mapped to the encoder calls of each batch.
    calls: ClassVar[dict[str, list[Counter[str]]]] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        type(self).calls = {'val': [], 'test': []}
        self.current: Counter[str] | None = None
        for name, module in pl_module.named_modules():
            if isinstance(module, Encoder):
                module.register_forward_hook(
                    lambda *_, name=name: (
                        self.current.update([name])
                        if self.current is not None
                        else None
                    )
                )

    def _start(self, stage: str) -> None:
        self.current = Counter()
        type(self).calls[stage].append(self.current)

    def on_validation_batch_start(self, *args: Any) -> None:
        self._start('val')

    def on_test_batch_start(self, *args: Any) -> None:
        self._start('test')

    def on_train_batch_start(self, *args: Any) -> None:
        self.current = None


def test_colearn_fit_and_test_encode_once_per_batch(tmp_path: Path) -> None:
    from torchgeo_colearn.main import main

    args = [
        '--config',
        'experiments/synthetic.yaml',
        '--trainer.accelerator=cpu',
        '--trainer.max_epochs=1',
        f'--trainer.default_root_dir={tmp_path}',
        '--data.init_args.num_samples=100',
        '--trainer.callbacks+=tests.trainers.test_base.CountEncoderCalls',
    ]
    main(['fit', *args])
    fit_calls = CountEncoderCalls.calls['val']
    checkpoint = next(tmp_path.glob('lightning_logs/version_0/checkpoints/*.ckpt'))
    main(['test', *args, f'--ckpt_path={checkpoint}'])
    test_calls = CountEncoderCalls.calls['test']
    # the synthetic config: s1, s2, dem, each with its specific and shared encoders run as one module
    for batches in (fit_calls, test_calls):
        assert batches
        for counter in batches:
            assert set(counter) == {f'model.paired.{m}' for m in ('s1', 's2', 'dem')}
            assert set(counter.values()) == {1}


@pytest.mark.parametrize(
    ('options', 'error', 'match'),
    [
        ({'class_weights': 'inverse'}, ValueError, "'balanced', a list or None"),
        ({'class_weights': [1.0, 2.0]}, ValueError, 'must have 3 values'),
        ({'task': 'ranking'}, ValueError, "task must be one of .*'ranking'"),
        ({'num_classes': None}, ValueError, 'needs num_classes >= 2'),
        ({'task': 'multilabel'}, ValueError, 'needs num_labels >= 1'),
        (
            {'encoders': {'s-1': ENCODERS['s1'], 's2': ENCODERS['s2']}},
            ValueError,
            'identifiers',
        ),
        ({'encoders': {'s1': ENCODERS['s1']}}, ValueError, 'at least 2 modalities'),
    ],
)
def test_bad_options_name_the_option(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    arguments: dict[str, Any] = {
        'encoders': ENCODERS,
        'task': 'multiclass',
        'num_classes': 3,
    } | options
    with pytest.raises(error, match=match):
        CoLearnTask(**arguments)


@pytest.mark.parametrize('optimizer', ['adam', 'adamw', 'sgd'])
@pytest.mark.parametrize('scheduler', ['plateau', 'cosine', 'none'])
def test_optimizers_and_schedules(optimizer: Any, scheduler: Any) -> None:
    model = SingleModalityTask(
        encoders=ENCODERS,
        num_classes=3,
        optimizer=optimizer,
        scheduler=scheduler,
        lr=0.01,
    )
    config = model.configure_optimizers()
    assert config['optimizer'].param_groups[0]['lr'] == 0.01
    assert ('lr_scheduler' in config) == (scheduler != 'none')


@pytest.mark.parametrize(
    ('option', 'value'), [('optimizer', 'lion'), ('scheduler', 'step')]
)
def test_unknown_optimizer_or_schedule(option: str, value: str) -> None:
    options: dict[str, Any] = {option: value}
    model = SingleModalityTask(encoders=ENCODERS, num_classes=3, **options)
    with pytest.raises(ValueError, match=f'{option} must be'):
        model.configure_optimizers()


def test_input_fusion_representations_per_modality() -> None:
    model = InputFusionTask(
        encoders={m: ENCODERS[m] for m in ('s1', 's3')}, num_classes=3, embed_dim=8
    ).eval()
    batch = method_dataset(('s1', 's3')).batch(range(4))
    reps = model.representations(batch)
    assert set(reps) == {'s1', 's3'}
    assert all(r['features'].shape == (4, 16) for r in reps.values())
    assert not torch.allclose(reps['s1']['features'], reps['s3']['features'])


# --------------------------------------------------------------------------------------------------
# Every method: mixed precision
# --------------------------------------------------------------------------------------------------


class StepLosses(Callback):
    """Record the loss of every training step and the dtype of the encoders' outputs."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.dtypes: set[torch.dtype] = set()

    def on_before_backward(
        self, trainer: Trainer, module: LightningModule, loss: Tensor
    ) -> None:
        self.losses.append(float(loss))

    def on_fit_start(self, trainer: Trainer, module: LightningModule) -> None:
        for encoder in module.modules():
            if isinstance(encoder, Encoder):
                encoder.register_forward_hook(
                    lambda _, __, out: self.dtypes.add(out.dtype)
                )


@pytest.mark.parametrize(
    ('method', 'options'), METHODS, ids=lambda v: getattr(v, '__name__', '')
)
def test_bf16_mixed_precision_trains_without_nan(
    tmp_path: Path, method: type[MultiModalTask], options: dict[str, Any]
) -> None:
    # a large rate: a few steps move the weights far enough to show an overflow
    model = method(**{**TINY_MULTICLASS, 'lr': 0.05, **options})
    dataset = method_dataset(model.modalities, size=48)
    steps = StepLosses()
    trainer = make_trainer(
        tmp_path, [steps], logger=False, precision='bf16-mixed', max_epochs=2
    )
    trainer.fit(model, loader(dataset), loader(dataset))
    # the encoders ran in bfloat16 (input fusion's stems only reshape the float32 inputs); the
    # losses (computed in float32) stayed finite
    assert torch.bfloat16 in steps.dtypes
    assert len(steps.losses) == 6
    assert all(math.isfinite(loss) for loss in steps.losses), steps.losses
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert all(math.isfinite(v) for k, v in logged.items() if 'loss' in k), logged
    assert logged['val_loss'] > 0
