# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from torchgeo_colearn.datamodules.synthetic import SyntheticMultiSensorDataModule
from torchgeo_colearn.datasets.synthetic import ModalityKind
from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.models.fusion import FusionName
from torchgeo_colearn.models.temporal_conv import TemporalConv
from torchgeo_colearn.scenarios import scenario_name
from torchgeo_colearn.trainers.base import MultiModalTask
from torchgeo_colearn.trainers.dropout import modality_dropout
from torchgeo_colearn.trainers.fusion import FeatureFusionTask, InputFusionTask

from ..fakes import TINY_ENCODERS, make_trainer

TASK_TYPES: list[TaskType] = ['binary', 'multiclass', 'multilabel', 'regression']

MODALITIES: dict[str, ModalityKind] = {
    's1': 'timeseries',
    's2': 'timeseries',
    'dem': 'vector',
}


def task_args(task_type: TaskType) -> dict[str, Any]:
    """Arguments every task takes, for a tiny model of a task type."""
    return {
        'encoders': TINY_ENCODERS,
        'task': task_type,
        'num_classes': 4 if task_type == 'multiclass' else None,
        'num_labels': 5 if task_type == 'multilabel' else None,
        'embed_dim': 4,
    }


def make_batch(size: int = 6) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        'image_s1': torch.randn(size, 12, 3, generator=generator),
        'image_s2': torch.randn(size, 12, 3, generator=generator),
        'image_dem': torch.randn(size, 16, generator=generator),
        'label': torch.randint(0, 4, (size,), generator=generator),
    }


def fit_and_score(
    model: MultiModalTask, task_type: TaskType, tmp_path: Path
) -> dict[str, dict[str, float]]:
    """Train one epoch on tiny synthetic data, then score the test fold in every scenario."""
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=64,
        modality_kinds=MODALITIES,
        task=task_type,
        num_classes=4,
        num_labels=5,
        batch_size=16,
        num_folds=4,
    )
    trainer = make_trainer(tmp_path, logger=False)
    trainer.fit(model, datamodule)
    trainer.test(model, datamodule, verbose=False)
    results = model.scenario_results['test']
    assert set(results) == {scenario_name(s) for s in model.scenarios()}
    assert all(
        math.isfinite(v) for metrics in results.values() for v in metrics.values()
    )
    return results


class TestModalityDropout:
    def test_every_sample_keeps_one(self) -> None:
        torch.manual_seed(0)
        mask = modality_dropout(1000, 3, 0.9, torch.device('cpu'))
        assert mask.shape == (1000, 3)
        assert mask.any(1).all()

    def test_rate(self) -> None:
        torch.manual_seed(0)
        mask = modality_dropout(20000, 2, 0.3, torch.device('cpu'))
        # Both dropped (9 %) are rescued to one kept modality, so the kept share is 0.7 + 0.09 / 2.
        assert mask.float().mean().item() == pytest.approx(0.745, abs=0.01)

    def test_zero_keeps_all(self) -> None:
        assert modality_dropout(50, 3, 0.0, torch.device('cpu')).all()

    @pytest.mark.parametrize('probability', [-0.1, 1.0])
    def test_out_of_range(self, probability: float) -> None:
        with pytest.raises(ValueError, match='modality_dropout'):
            FeatureFusionTask(**task_args('multiclass'), modality_dropout=probability)


class TestInputFusion:
    @pytest.mark.parametrize('task_type', TASK_TYPES)
    def test_fit_and_every_scenario(self, task_type: TaskType, tmp_path: Path) -> None:
        model = InputFusionTask(**task_args(task_type))
        assert len(model.scenarios()) == 7
        fit_and_score(model, task_type, tmp_path)

    def test_fused_width(self) -> None:
        model = InputFusionTask(**task_args('multiclass'))
        # s1 (3) + s2 (3) + dem repeated over the 12 steps (16).
        assert model.model.fused_encoder.input_shape == (12, 22)

    def test_missing_modalities_are_zero_filled(self) -> None:
        model = InputFusionTask(**task_args('regression')).eval()
        batch = make_batch()
        alone = model.predict_scenarios(batch, [('s1',)])[('s1',)]
        zeroed = dict(batch, image_s2=torch.zeros_like(batch['image_s2']))
        zeroed['image_dem'] = torch.zeros_like(batch['image_dem'])
        full = model.predict_scenarios(zeroed, [('s1', 's2', 'dem')])
        torch.testing.assert_close(alone, full[('s1', 's2', 'dem')])
        only_s1 = {'image_s1': batch['image_s1']}
        torch.testing.assert_close(model(only_s1)['s1'], alone)

    def test_without_keep_every_modality_is_kept(self) -> None:
        model = InputFusionTask(**task_args('regression')).eval()
        features = model.encode(model.modality_inputs(make_batch()))
        keep = {m: torch.ones(6, dtype=torch.bool) for m in ('s1', 'dem')}
        torch.testing.assert_close(
            model.model.predict({m: features[m] for m in keep}),
            model.model.predict(features, keep),
        )

    def test_fusion_encoder_config(self) -> None:
        config = {'name': 'tempcnn', 'seq_len': 12, 'hidden_dim': 4, 'dense_dim': 8}
        model = InputFusionTask(**task_args('multiclass'), fusion_encoder=config)
        assert model.model.fused_encoder.input_shape == (12, 22)
        first = next(
            m
            for m in model.model.fused_encoder.modules()
            if isinstance(m, TemporalConv)
        )
        assert first.out_channels == 4

    def test_images_concatenated(self) -> None:
        encoders = {
            'a': {
                'name': 'timm',
                'model': 'resnet10t',
                'in_channels': 2,
                'image_size': [8, 8],
            },
            'b': {
                'name': 'timm',
                'model': 'resnet10t',
                'in_channels': 3,
                'image_size': [8, 8],
            },
        }
        model = InputFusionTask(encoders=encoders, num_classes=3, embed_dim=4).eval()
        batch = {'image_a': torch.randn(2, 2, 8, 8), 'image_b': torch.randn(2, 3, 8, 8)}
        outputs = model.predict_scenarios(batch, model.scenarios())
        assert model.model.fused_encoder.input_shape == (5, 8, 8)
        assert all(p.shape == (2, 3) for p in outputs.values())

    def test_different_lengths_rejected(self) -> None:
        encoders = dict(TINY_ENCODERS, s2=dict(TINY_ENCODERS['s2'], seq_len=6))
        with pytest.raises(ValueError, match='one fixed number of steps'):
            InputFusionTask(encoders=encoders, num_classes=4)

    def test_images_and_series_rejected(self) -> None:
        encoders = {
            's1': TINY_ENCODERS['s1'],
            'rgb': {'name': 'timm', 'model': 'resnet10t', 'in_channels': 3},
        }
        with pytest.raises(ValueError, match='FeatureFusionTask'):
            InputFusionTask(encoders=encoders, num_classes=4)

    def test_training_and_evaluation_losses(self) -> None:
        model = InputFusionTask(**task_args('multiclass'))
        batch = make_batch()
        inputs = model.modality_inputs(batch, require_all=True)
        losses, outputs = model.losses(inputs, model.encode(inputs), batch['label'])
        assert set(losses) == {'task_loss', 'loss'}
        # training scores no scenario: no extra forward pass, no mode switch
        assert model.training and outputs == {} and model.training_scenarios() == []
        model.eval()
        losses, outputs = model.losses(inputs, model.encode(inputs), batch['label'])
        assert set(outputs) == {(m,) for m in TINY_ENCODERS} | {tuple(TINY_ENCODERS)}
        expected = model.predict_scenarios(batch, list(outputs))
        for scenario, raw in outputs.items():
            torch.testing.assert_close(model.postprocess(raw), expected[scenario])
        per_scenario = [losses[f'{m}_loss'] for m in TINY_ENCODERS] + [
            losses['s1+s2+dem_loss']
        ]
        torch.testing.assert_close(losses['loss'], torch.stack(per_scenario).mean())


class TestFeatureFusion:
    @pytest.mark.parametrize(
        ('task_type', 'fusion'),
        [
            ('binary', 'mean'),
            ('multiclass', 'gated'),
            ('multilabel', 'mean'),
            ('regression', 'gated'),
        ],
    )
    def test_fit_and_every_scenario(
        self, task_type: TaskType, fusion: FusionName, tmp_path: Path
    ) -> None:
        model = FeatureFusionTask(**task_args(task_type), fusion=fusion)
        fit_and_score(model, task_type, tmp_path)

    @pytest.mark.parametrize('fusion', ['mean', 'gated'])
    def test_single_modality_is_its_own_features(self, fusion: FusionName) -> None:
        model = FeatureFusionTask(**task_args('regression'), fusion=fusion).eval()
        batch = make_batch()
        features = model.encode(model.modality_inputs(batch))
        torch.testing.assert_close(
            model.model.fuse({'s2': features['s2']}), features['s2']
        )

    def test_mean_fusion(self) -> None:
        model = FeatureFusionTask(**task_args('regression')).eval()
        batch = make_batch()
        features = model.encode(model.modality_inputs(batch))
        expected = (features['s1'] + features['dem']) / 2
        torch.testing.assert_close(
            model.model.fuse({'s1': features['s1'], 'dem': features['dem']}), expected
        )

    @pytest.mark.parametrize('fusion', ['mean', 'gated'])
    def test_dropped_modality_ignored(self, fusion: FusionName) -> None:
        model = FeatureFusionTask(**task_args('regression'), fusion=fusion).eval()
        batch = make_batch(4)
        features = model.encode(model.modality_inputs(batch))
        keep = {
            's1': torch.tensor([True, True, False, True]),
            's2': torch.tensor([False, True, True, True]),
            'dem': torch.tensor([False, False, False, True]),
        }
        fused = model.model.fuse(features, keep)
        torch.testing.assert_close(fused[0], features['s1'][0])
        torch.testing.assert_close(fused[2], features['s2'][2])
        pair = model.model.fuse({'s1': features['s1'], 's2': features['s2']})
        torch.testing.assert_close(fused[1], pair[1])

    def test_unknown_fusion(self) -> None:
        with pytest.raises(ValueError, match="fusion must be 'mean' or 'gated'"):
            FeatureFusionTask(**task_args('multiclass'), fusion='max')  # type: ignore[arg-type]

    def test_hparams_saved(self) -> None:
        model = FeatureFusionTask(
            **task_args('multiclass'), fusion='gated', modality_dropout=0.25
        )
        assert model.hparams['fusion'] == 'gated'
        assert model.hparams['modality_dropout'] == 0.25
