# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torch import Tensor

from torchgeo_colearn import CoLearnTask, SyntheticMultiSensorDataModule
from torchgeo_colearn.datasets import TensorMultiModalDataset
from torchgeo_colearn.losses import nt_xent
from torchgeo_colearn.metrics import TaskType

from ..fakes import TINY_ENCODERS


def make_task(**kwargs: Any) -> CoLearnTask:
    args: dict[str, Any] = {
        'encoders': TINY_ENCODERS,
        'task': 'multiclass',
        'num_classes': 4,
        'embed_dim': 4,
    }
    args.update(kwargs)
    return CoLearnTask(**args)


def make_batch(size: int = 6, num_classes: int = 4) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        'image_s1': torch.randn(size, 12, 3, generator=generator),
        'image_s2': torch.randn(size, 12, 3, generator=generator),
        'image_dem': torch.randn(size, 16, generator=generator),
        'label': torch.randint(0, num_classes, (size,), generator=generator),
    }


def losses_of(task: CoLearnTask, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    inputs = task.modality_inputs(batch, require_all=True)
    losses, _ = task.losses(inputs, task.encode(inputs), batch['label'])
    return losses


class TestLossTerms:
    def test_each_term_by_hand(self) -> None:
        task = make_task(
            main_weight=0.5,
            aux_weight=2.0,
            contrastive_weight=3.0,
            discriminator_weight=0.25,
        )
        task.eval()  # fixed batch-norm statistics and no dropout, so the terms can be recomputed
        batch = make_batch()
        y = batch['label']
        losses = losses_of(task, batch)
        reps = {m: task.model.encode(m, batch[f'image_{m}']) for m in TINY_ENCODERS}
        main = sum(
            F.cross_entropy(
                task.model.main_heads[m](torch.cat([r.specific, r.shared], 1)), y
            )
            for m, r in reps.items()
        )
        aux = sum(
            F.cross_entropy(task.model.aux_head(r.specific), y)
            + F.cross_entropy(task.model.aux_head(r.shared), y)
            for r in reps.values()
        )
        pairs = [('s1', 's2'), ('s1', 'dem'), ('s2', 'dem')]
        con = sum(nt_xent(reps[a].shared, reps[b].shared, 0.1) for a, b in pairs)
        mod = torch.zeros(())
        for index, r in enumerate(reps.values()):
            target = torch.full((6,), index)
            mod += F.cross_entropy(
                task.model.discriminator_specific(r.specific), target
            )
            mod += F.cross_entropy(task.model.discriminator_unused(r.unused), target)
        expected = {
            'main_loss': main / 3,
            'aux_loss': aux / 6,
            'contrastive_loss': con / 3,
            'discriminator_loss': mod / 6,
        }
        for name, value in expected.items():
            assert losses[name].item() == pytest.approx(float(value), rel=1e-5), name
        total = 0.5 * expected['main_loss'] + 2.0 * expected['aux_loss']
        total += (
            3.0 * expected['contrastive_loss'] + 0.25 * expected['discriminator_loss']
        )
        assert losses['loss'].item() == pytest.approx(float(total), rel=1e-5)

    def test_discriminator_on_shared_reads_shared(self) -> None:
        task = make_task(discriminator_input='shared')
        task.eval()
        batch = make_batch()
        reps = {m: task.model.encode(m, batch[f'image_{m}']) for m in TINY_ENCODERS}
        expected = torch.zeros(())
        for index, r in enumerate(reps.values()):
            target = torch.full((6,), index)
            expected += F.cross_entropy(
                task.model.discriminator_specific(r.specific), target
            )
            expected += F.cross_entropy(
                task.model.discriminator_unused(r.shared), target
            )
        got = losses_of(task, batch)['discriminator_loss']
        assert got.item() == pytest.approx(float(expected) / 6, rel=1e-5)

    def test_sum_ordered_doubles_pairs(self) -> None:
        mean_task = make_task()
        sum_task = make_task(contrastive_reduction='sum_ordered')
        sum_task.load_state_dict(mean_task.state_dict())
        mean_task.eval()
        sum_task.eval()
        batch = make_batch()
        mean = losses_of(mean_task, batch)['contrastive_loss']
        total = losses_of(sum_task, batch)['contrastive_loss']
        # three unordered pairs, each counted twice
        assert total.item() == pytest.approx(6 * mean.item(), rel=1e-5)

    def test_zero_weight_skips_term(self) -> None:
        losses = losses_of(
            make_task(aux_weight=0.0, contrastive_weight=0.0), make_batch()
        )
        assert set(losses) == {'main_loss', 'discriminator_loss', 'loss'}

    def test_all_zero_weights_rejected(self) -> None:
        with pytest.raises(ValueError, match='not all 0'):
            make_task(
                main_weight=0,
                aux_weight=0,
                contrastive_weight=0,
                discriminator_weight=0,
            )


def unused_half_grad(discriminator_input: str) -> Tensor:
    task = make_task(
        main_weight=0.0,
        aux_weight=0.0,
        contrastive_weight=0.0,
        discriminator_input=discriminator_input,
    )
    outputs: list[Tensor] = []

    def keep(module: Any, args: Any, output: Tensor) -> None:
        output.retain_grad()
        outputs.append(output)

    # s1's specific and shared encoders run as one module: its output is (specific 2d, shared 2d)
    task.model.paired['s1'].register_forward_hook(keep)
    losses_of(task, make_batch())['loss'].backward()
    grad = outputs[0].grad
    assert grad is not None
    return grad[:, 4:8]


class TestGradientFlow:
    def test_unused_part_trained_by_second_discriminator(self) -> None:
        assert unused_half_grad('unused').abs().sum() > 0

    def test_unused_part_untouched_when_discriminator_reads_shared(self) -> None:
        assert unused_half_grad('shared').abs().sum() == 0

    @pytest.mark.parametrize(
        'weight,heads',
        [
            ('aux_weight', ['aux_head']),
            (
                'discriminator_weight',
                ['discriminator_specific', 'discriminator_unused'],
            ),
        ],
    )
    def test_zero_weight_leaves_heads_untouched(
        self, weight: str, heads: list[str]
    ) -> None:
        task = make_task(**{weight: 0.0})
        before = {
            h: [p.clone() for p in getattr(task.model, h).parameters()] for h in heads
        }
        optimizer = torch.optim.Adam(task.parameters(), lr=0.1)
        for _ in range(2):
            optimizer.zero_grad()
            losses_of(task, make_batch())['loss'].backward()
            optimizer.step()
        for head, params in before.items():
            for old, new in zip(params, getattr(task.model, head).parameters()):
                assert new.grad is None
                assert torch.equal(old, new)
        # the other parameters did learn
        assert any(p.grad is not None for p in task.model.main_heads.parameters())


class TestInference:
    def test_single_modality(self) -> None:
        task = make_task().eval()
        predictions = task({'image_s1': torch.randn(5, 12, 3)})
        assert set(predictions) == {'s1'}
        assert predictions['s1'].shape == (5, 4)
        assert torch.allclose(predictions['s1'].sum(1), torch.ones(5))

    def test_subset(self) -> None:
        task = make_task().eval()
        batch = make_batch()
        del batch['image_s2']
        predictions = task(batch)
        assert set(predictions) == {'s1', 'dem'}

    def test_single_modality_ignores_others(self) -> None:
        task = make_task().eval()
        batch = make_batch()
        alone = task({'image_dem': batch['image_dem']})['dem']
        together = task(batch)['dem']
        assert torch.allclose(alone, together)

    def test_scenarios_all_subsets(self) -> None:
        task = make_task().eval()
        assert len(task.scenarios()) == 7
        predictions = task.predict_scenarios(make_batch(), task.scenarios())
        fused = predictions[('s1', 's2', 'dem')]
        assert fused.shape == (6, 4)
        assert torch.allclose(predictions[('s1',)], task(make_batch())['s1'])

    def test_regression_in_target_units(self) -> None:
        task = make_task(
            task='regression', num_classes=None, target_mean=100.0, target_std=40.0
        )
        task.eval()
        raw = task.predict_from(
            task.encode(task.modality_inputs(make_batch())), ('s1',)
        )
        assert torch.allclose(task(make_batch())['s1'], raw * 40 + 100)


class TestBadInput:
    def test_no_trained_modality(self) -> None:
        with pytest.raises(ValueError, match='none of the trained modalities'):
            make_task()({'label': torch.zeros(2)})

    def test_unknown_modality(self) -> None:
        with pytest.raises(KeyError, match="unknown modality 'aerial'"):
            make_task()(
                {'image_s1': torch.randn(2, 12, 3), 'image_aerial': torch.randn(2, 3)}
            )

    def test_unknown_key(self) -> None:
        with pytest.raises(KeyError, match="unknown batch key 's1'"):
            make_task()({'s1': torch.randn(2, 12, 3)})

    def test_wrong_shape(self) -> None:
        with pytest.raises(
            ValueError, match=r'image_s2: expected shape \(B, 12, 3\), got \(2, 12, 4\)'
        ):
            make_task()({'image_s2': torch.randn(2, 12, 4)})

    def test_nan(self) -> None:
        x = torch.randn(2, 16)
        x[0, 3] = math.nan
        with pytest.raises(ValueError, match='image_dem holds NaN'):
            make_task()({'image_dem': x})

    def test_nan_filled_by_datamodule(self) -> None:
        datamodule = SyntheticMultiSensorDataModule(num_samples=100, batch_size=10)
        datamodule.setup('fit')
        assert isinstance(datamodule.train_dataset, TensorMultiModalDataset)
        batch = datamodule.train_dataset.batch(list(range(4)))
        batch['image_s1'][0, 2, 1] = math.nan
        batch = datamodule.on_after_batch_transfer(batch, 0)
        assert not batch['valid_s1'][0, 2] or torch.isfinite(batch['image_s1']).all()
        make_task().eval()(batch)

    def test_valid_mask_shape(self) -> None:
        with pytest.raises(ValueError, match='valid_s1: expected shape'):
            make_task()(
                {
                    'image_s1': torch.randn(2, 12, 3),
                    'valid_s1': torch.ones(2, 5, dtype=torch.bool),
                }
            )

    def test_one_modality_rejected(self) -> None:
        with pytest.raises(ValueError, match='at least 2 modalities'):
            CoLearnTask(encoders={'s1': TINY_ENCODERS['s1']}, num_classes=4)

    def test_bad_encoder_name(self) -> None:
        with pytest.raises(ValueError, match="encoder name 'lstm' is not one of"):
            CoLearnTask(
                encoders={'a': {'name': 'lstm'}, 'b': TINY_ENCODERS['s1']},
                num_classes=4,
            )

    def test_missing_num_classes(self) -> None:
        with pytest.raises(ValueError, match='needs num_classes'):
            CoLearnTask(encoders=TINY_ENCODERS)

    def test_training_needs_every_modality(self) -> None:
        task = make_task()
        batch = make_batch()
        del batch['image_dem']
        with pytest.raises(KeyError, match='missing'):
            task.training_step(batch, 0)


@pytest.mark.parametrize(
    'task_type', ['binary', 'multiclass', 'multilabel', 'regression']
)
def test_task_types_fit_and_test(task_type: TaskType, tmp_path: Path) -> None:
    datamodule = SyntheticMultiSensorDataModule(
        task=task_type, num_samples=120, batch_size=16
    )
    task = make_task(
        task=task_type,
        num_classes=4 if task_type == 'multiclass' else None,
        num_labels=5 if task_type == 'multilabel' else None,
        class_weights='balanced' if task_type != 'regression' else None,
    )
    trainer = Trainer(
        max_epochs=1,
        accelerator='cpu',
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
    )
    trainer.fit(task, datamodule)
    (results,) = trainer.test(task, datamodule, verbose=False)
    main_metric = {
        'binary': 'AverageAccuracy',
        'multiclass': 'AverageAccuracy',
        'multilabel': 'MacroF1Score',
        'regression': 'R2',
    }[task_type]
    for modality in TINY_ENCODERS:
        assert f'test/{modality}/{main_metric}' in results
        assert math.isfinite(results[f'test/{modality}/{main_metric}'])
    assert {
        'test_main_loss',
        'test_aux_loss',
        'test_contrastive_loss',
        'test_discriminator_loss',
    } <= set(results)
    if task_type == 'regression':
        mean, std = datamodule.target_stats()
        assert task.criterion.target_mean.item() == pytest.approx(mean, rel=1e-5)
        assert task.criterion.target_std.item() == pytest.approx(std, rel=1e-5)
    elif task_type != 'multilabel':
        assert task.criterion.class_weights is not None
        assert torch.allclose(task.criterion.class_weights, datamodule.class_weights())


TERMS = ('main_loss', 'aux_loss', 'contrastive_loss', 'discriminator_loss')


def test_validation_loss_main_selects_on_the_main_heads() -> None:
    task = make_task(validation_loss='main')
    batch = make_batch()
    task.train()
    training = losses_of(task, batch)
    assert torch.allclose(
        training['loss'], torch.stack([training[k] for k in TERMS]).sum()
    )
    task.eval()
    evaluation = losses_of(task, batch)
    assert torch.equal(evaluation['loss'], evaluation['main_loss'])
    assert torch.allclose(
        evaluation['total_loss'], torch.stack([evaluation[k] for k in TERMS]).sum()
    )
    with pytest.raises(ValueError, match='needs main_weight > 0'):
        make_task(validation_loss='main', main_weight=0.0)
