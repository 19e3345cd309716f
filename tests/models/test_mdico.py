# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor

from torchgeo_colearn import CoLearnTask
from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.models.mdico import MDiCo
from torchgeo_colearn.presence import Inputs, Presence

from . import reference_mdico as reference

BATCH = 6
STEPS = 5


def tempcnn(channels: int, dropout: float, **kwargs: Any) -> dict[str, Any]:
    return {
        'name': 'tempcnn',
        'in_channels': channels,
        'seq_len': STEPS,
        'hidden_dim': 8,
        'dense_dim': 16,
        'kernel_size': 3,
        'dropout': dropout,
        **kwargs,
    }


def mlp(features: int, dropout: float) -> dict[str, Any]:
    return {
        'name': 'mlp',
        'in_features': features,
        'hidden_dims': [12, 10],
        'dropout': dropout,
    }


def encoders(setup: str, dropout: float) -> dict[str, dict[str, Any]]:
    """Encoder configs of a test setup."""
    match setup:
        case 'tempcnn_m2' | 'tempcnn_m3' | 'tempcnn_m4':
            count = int(setup[-1])
            return {f'm{i}': tempcnn(2 + i, dropout) for i in range(count)}
        case 'masked_layer_norm':
            masked = tempcnn(3, dropout, pooling='mean', layer_norm=True, seq_len=None)
            return {
                'a': masked,
                'b': {**masked, 'in_channels': [2, 2, 2]},
                'c': tempcnn(2, dropout, layer_norm=True),
            }
        case 'mlp':
            return {
                'a': mlp(4, dropout),
                'b': mlp(7, dropout),
                'c': tempcnn(3, dropout),
            }
        case 'timm':
            return {'a': {'name': 'timm', 'in_channels': 3}, 'b': tempcnn(2, dropout)}
    raise AssertionError(setup)


SETUPS = ['tempcnn_m2', 'tempcnn_m3', 'tempcnn_m4', 'masked_layer_norm', 'mlp', 'timm']


def make_batch(
    configs: Mapping[str, Mapping[str, Any]], task: TaskType
) -> tuple[dict[str, tuple[Tensor, Tensor | None]], Tensor]:
    """Random inputs (with validity masks for mean-pooled series) and targets."""
    generator = torch.Generator().manual_seed(1)
    inputs: dict[str, tuple[Tensor, Tensor | None]] = {}
    for modality, config in configs.items():
        valid = None
        match config['name']:
            case 'tempcnn':
                channels = config['in_channels']
                step = [channels] if isinstance(channels, int) else channels
                x = torch.randn(BATCH, STEPS, *step, generator=generator)
                if config.get('pooling') == 'mean':
                    valid = torch.rand(BATCH, STEPS, generator=generator) > 0.3
                    valid[:, 0] = True
            case 'mlp':
                x = torch.randn(BATCH, config['in_features'], generator=generator)
            case _:
                x = torch.randn(BATCH, config['in_channels'], 8, 8, generator=generator)
        inputs[modality] = (x, valid)
    match task:
        case 'multiclass':
            target = torch.randint(0, 3, (BATCH,), generator=generator)
        case 'binary':
            target = torch.randint(0, 2, (BATCH,), generator=generator)
        case 'multilabel':
            target = (torch.rand(BATCH, 3, generator=generator) > 0.5).float()
        case 'regression':
            target = 50 + 10 * torch.randn(BATCH, generator=generator)
    return inputs, target


def make_pair(
    setup: str, dropout: float, task: TaskType = 'multiclass', **kwargs: Any
) -> tuple[CoLearnTask, reference.MDiCo]:
    """A task with the package's model, and the reference model whose weights it loaded."""
    configs = encoders(setup, dropout)
    args: dict[str, Any] = {
        'encoders': configs,
        'task': task,
        'embed_dim': 4,
        'num_classes': 3 if task == 'multiclass' else None,
        'num_labels': 3 if task == 'multilabel' else None,
        **kwargs,
    }
    if task in ('binary', 'multiclass'):
        args['class_weights'] = [0.5, 2.0, 1.0][: 2 if task == 'binary' else 3]
    if task == 'regression':
        args.update(target_mean=50.0, target_std=10.0)
    torch.manual_seed(0)
    new = CoLearnTask(**args)
    ref = reference.MDiCo(new.hparams, new.output_dim)
    with torch.no_grad():  # move the batch-norm statistics off their initial values
        for name, buffer in ref.named_buffers():
            if 'running' in name:
                buffer.uniform_(0.5, 1.5)
    new.model.load_state_dict(ref.state_dict())
    return new, ref


def loaded_copy(model: MDiCo, state: Mapping[str, Tensor]) -> MDiCo:
    """A copy of *model* loaded with a state dict of either layout."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone


def check_equivalent(
    new: CoLearnTask,
    ref: reference.MDiCo,
    inputs: dict[str, tuple[Tensor, Tensor | None]],
    target: Tensor,
    dtype: torch.dtype = torch.float64,
) -> None:
    """Outputs, every loss term, statistics and gradients agree.

    In float64 the sums in another order agree to ~1e-15; in float32 the backward pass through
    training-mode batch norms of a few samples amplifies their rounding up to ~1e-4 of the largest
    gradient, so the gradients are compared in float64 (the task loss itself runs in float32).
    """
    new.model.to(dtype)
    ref.to(dtype)
    inputs = {m: (x.to(dtype), valid) for m, (x, valid) in inputs.items()}
    complete = Inputs(inputs, Presence(target.shape[0]))
    losses, scenario_outputs = new.losses(complete, new.encode(complete), target)
    outputs = {scenario[0]: value for scenario, value in scenario_outputs.items()}
    ref_losses, ref_outputs = reference.training_losses(
        ref, new.criterion, new.hparams, inputs, target
    )
    assert set(losses) == set(ref_losses)
    for name, value in ref_losses.items():
        assert torch.allclose(losses[name], value, rtol=1e-5, atol=1e-6), name
    assert set(outputs) == set(ref_outputs)
    for modality, value in ref_outputs.items():
        assert torch.allclose(outputs[modality], value, rtol=1e-5, atol=1e-5)
    if dtype != torch.float64:
        return
    losses['loss'].backward()
    ref_losses['loss'].backward()
    # the reference's gradients (in place of its weights) and statistics, in the package's layout
    grads = {
        name: torch.zeros_like(p) if p.grad is None else p.grad
        for name, p in ref.named_parameters()
    }
    expected = loaded_copy(new.model, {**ref.state_dict(), **grads})
    want = dict(expected.named_parameters())
    scale = max(g.abs().max().item() for g in grads.values())
    for name, p in new.model.named_parameters():
        got = torch.zeros_like(p) if p.grad is None else p.grad
        assert torch.allclose(got, want[name], rtol=1e-6, atol=1e-8 * scale), name
    want_buffers = dict(expected.named_buffers())
    for name, buffer in new.model.named_buffers():
        assert torch.allclose(buffer, want_buffers[name], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize('setup', SETUPS)
@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_equivalent_to_unfused(setup: str, mode: str, tiny_timm: None) -> None:
    # eval: dropout is inactive; train: batch statistics, and no dropout for determinism
    new, ref = make_pair(setup, dropout=0.2 if mode == 'eval' else 0.0)
    new.train(mode == 'train')
    ref.train(mode == 'train')
    inputs, target = make_batch(encoders(setup, 0.0), 'multiclass')
    check_equivalent(new, ref, inputs, target)


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_equivalent_in_float32(mode: str) -> None:
    new, ref = make_pair('masked_layer_norm', dropout=0.2 if mode == 'eval' else 0.0)
    new.train(mode == 'train')
    ref.train(mode == 'train')
    inputs, target = make_batch(encoders('masked_layer_norm', 0.0), 'multiclass')
    check_equivalent(new, ref, inputs, target, torch.float32)


@pytest.mark.parametrize('task', ['binary', 'multilabel', 'regression'])
def test_equivalent_task_types(task: TaskType) -> None:
    new, ref = make_pair('tempcnn_m3', dropout=0.0, task=task)
    check_equivalent(new, ref, *make_batch(encoders('tempcnn_m3', 0.0), task))


@pytest.mark.parametrize(
    'options',
    [
        {'discriminator_input': 'shared', 'contrastive_reduction': 'sum_ordered'},
        {'head_hidden_dim': 5, 'aux_weight': 0.0},
        {'discriminator_weight': 0.0, 'main_weight': 2.0},
    ],
)
def test_equivalent_options(options: dict[str, Any]) -> None:
    new, ref = make_pair('tempcnn_m3', dropout=0.0, **options)
    check_equivalent(new, ref, *make_batch(encoders('tempcnn_m3', 0.0), 'multiclass'))


@pytest.mark.parametrize('setup', ['mlp', 'timm'])
def test_shared_init(setup: str, tiny_timm: None) -> None:
    configs = encoders(setup, 0.0)
    copied = MDiCo(configs, embed_dim=4, output_dim=2, shared_init='copy')
    independent = MDiCo(configs, embed_dim=4, output_dim=2, shared_init='independent')
    for model, same in ((copied, True), (independent, False)):
        for modality in configs:
            if modality in model.paired:
                pairs = [p.chunk(2) for p in model.paired[modality].parameters()]
            else:
                pairs = list(
                    zip(
                        model.specific[modality].parameters(),
                        model.shared[modality].parameters(),
                    )
                )
            assert all(torch.equal(p, q) for p, q in pairs) == same, modality
    fused = set(configs) - {'a'} if setup == 'timm' else set(configs)
    assert set(copied.paired) == fused


def test_representation_shapes() -> None:
    model = MDiCo(encoders('mlp', 0.0), 4, 1).eval()
    rep = model.encode('a', torch.randn(5, 4))
    assert rep.specific.shape == rep.unused.shape == rep.shared.shape == (5, 4)
    assert (rep.shared >= 0).all()  # ReLU projection
    encoding = model.encode_and_predict('a', torch.randn(5, 4))
    assert encoding.output.shape == (5,)


def test_unfused_checkpoint_predicts_the_same() -> None:
    # a task checkpoint of the unfused model (keys model.specific.<m>.*, model.shared.<m>.*)
    new, ref = make_pair('tempcnn_m3', dropout=0.2)
    state = {f'model.{k}': v for k, v in ref.state_dict().items()}
    state.update(
        {k: v for k, v in new.state_dict().items() if not k.startswith('model.')}
    )
    task = CoLearnTask(**new.hparams)
    task.load_state_dict(state)
    task.eval()
    ref.eval()
    inputs, _ = make_batch(encoders('tempcnn_m3', 0.2), 'multiclass')
    batch = {f'image_{m}': x for m, (x, _) in inputs.items()}
    predictions = task(batch)
    for modality, (x, valid) in inputs.items():
        raw = ref.predict(modality, ref.encode(modality, x, valid))
        assert torch.allclose(predictions[modality], raw.softmax(-1), atol=1e-5)


def test_unfused_checkpoint_with_missing_key() -> None:
    new, ref = make_pair('tempcnn_m2', dropout=0.0)
    state = ref.state_dict()
    del state['shared.m1.output.bias']
    with pytest.raises(
        RuntimeError, match=r'Missing key\(s\).*paired\.m1\.output\.bias'
    ):
        new.model.load_state_dict(state)
