# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Training and evaluation with samples that lack modalities (``present_<modality>``)."""

import copy
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torch import Tensor

from torchgeo_colearn import CoLearnTask, SyntheticMultiSensorDataModule
from torchgeo_colearn.callbacks import (
    RepresentationFigures,
    RobustnessEvaluation,
    ScenarioPredictionWriter,
    ScenarioReport,
)
from torchgeo_colearn.losses import nt_xent
from torchgeo_colearn.scenarios import scenario_name
from torchgeo_colearn.trainers import MultiModalTask

from ..fakes import TINY_ENCODERS, tiny_tempcnn
from .test_base import METHODS, TINY_MULTICLASS, method_dataset

pytestmark = pytest.mark.filterwarnings(r'ignore:You are trying to `self.log\(\)`')

#: Encoders without dropout, so that two computations of the same terms draw nothing at random.
EXACT_ENCODERS = {
    's1': tiny_tempcnn(3, 6, dropout=0.0),
    's2': {'name': 'mlp', 'in_features': 5, 'hidden_dims': [8], 'dropout': 0.0},
    's3': tiny_tempcnn(2, 6, dropout=0.0),
}


def missing_batch(
    size: int = 10, lacking: dict[str, list[int]] | None = None
) -> dict[str, Any]:
    """A batch of the three test modalities in which some samples lack some modalities."""
    batch: dict[str, Any] = method_dataset(('s1', 's2', 's3'), size).batch(range(size))
    lacking = {'s2': [1, 4, 7], 's3': [4, 8]} if lacking is None else lacking
    for modality, rows in lacking.items():
        present = torch.ones(size, dtype=torch.bool)
        present[rows] = False
        batch[f'present_{modality}'] = present
        batch[f'image_{modality}'][rows] = 0.0
    return batch


def gradients(module: torch.nn.Module) -> dict[str, Tensor]:
    return {
        name: p.grad.clone()
        for name, p in module.named_parameters()
        if p.grad is not None
    }


def test_colearn_terms_equal_the_terms_on_the_sub_batches() -> None:
    """30 % of the samples lack s2: the loss and gradients are those of the sub-batches by hand."""
    torch.manual_seed(0)
    task = CoLearnTask(**{**TINY_MULTICLASS, 'encoders': EXACT_ENCODERS})
    task.train()
    by_hand = copy.deepcopy(task)
    batch = missing_batch(lacking={'s2': [1, 4, 7]})
    target = batch['label']
    inputs = task.modality_inputs(batch, require_all=True)
    terms, _ = task.losses(inputs, task.encode(inputs), target)
    terms['loss'].backward()

    model = by_hand.model
    holds = {
        m: batch.get(f'present_{m}', torch.ones(10, dtype=torch.bool))
        for m in task.modalities
    }
    encoded = {
        m: model.encode_and_predict(m, batch[f'image_{m}'][holds[m]], None)
        for m in task.modalities
    }
    labels = {m: target[holds[m]] for m in task.modalities}
    main = torch.stack(
        [F.cross_entropy(encoded[m].output, labels[m]) for m in task.modalities]
    ).mean()
    aux = torch.stack(
        [
            (
                F.cross_entropy(
                    model.auxiliary(encoded[m].representation.specific), labels[m]
                )
                + F.cross_entropy(
                    model.auxiliary(encoded[m].representation.shared), labels[m]
                )
            )
            / 2
            for m in task.modalities
        ]
    ).mean()
    pair_losses = []
    for a, b in itertools.combinations(task.modalities, 2):
        both = holds[a] & holds[b]
        pair_losses.append(
            nt_xent(
                encoded[a].representation.shared[both[holds[a]]],
                encoded[b].representation.shared[both[holds[b]]],
                by_hand.hparams['temperature'],
            )
        )
    contrastive = torch.stack(pair_losses).mean()
    discriminator = torch.stack(
        [
            (
                F.cross_entropy(
                    model.discriminator_specific(encoded[m].representation.specific),
                    torch.full((int(holds[m].sum()),), i),
                )
                + F.cross_entropy(
                    model.discriminator_unused(encoded[m].representation.unused),
                    torch.full((int(holds[m].sum()),), i),
                )
            )
            / 2
            for i, m in enumerate(task.modalities)
        ]
    ).mean()
    total = main + aux + contrastive + discriminator
    total.backward()

    for name, value in {
        'main_loss': main,
        'aux_loss': aux,
        'contrastive_loss': contrastive,
        'discriminator_loss': discriminator,
        'loss': total,
    }.items():
        torch.testing.assert_close(terms[name], value, rtol=1e-5, atol=1e-6, msg=name)
    expected, computed = gradients(by_hand), gradients(task)
    assert expected.keys() == computed.keys()
    for name in expected:
        # atol: the gradients of the biases before batch normalisation are 0 up to rounding
        torch.testing.assert_close(
            computed[name], expected[name], rtol=1e-4, atol=1e-5, msg=name
        )


@pytest.mark.parametrize(
    ('method', 'options'), METHODS, ids=lambda v: getattr(v, '__name__', '')
)
class TestEveryMethod:
    def make(
        self, method: type[MultiModalTask], options: dict[str, Any]
    ) -> MultiModalTask:
        torch.manual_seed(0)
        return method(**{**TINY_MULTICLASS, 'encoders': EXACT_ENCODERS, **options})

    def batch_for(self, model: MultiModalTask) -> dict[str, Any]:
        batch = missing_batch()
        for key in list(batch):
            if (
                key.startswith(('image_', 'valid_', 'present_'))
                and key.split('_', 1)[1] not in model.modalities
            ):
                del batch[key]
        return batch

    def test_absent_values_are_never_read(
        self, method: type[MultiModalTask], options: dict[str, Any]
    ) -> None:
        model = self.make(method, options)
        batch = self.batch_for(model)
        garbage = {**batch}
        for modality in model.modalities:
            if (present := batch.get(f'present_{modality}')) is not None:
                values = batch[f'image_{modality}'].clone()
                values[~present] = float('nan')
                garbage[f'image_{modality}'] = values
        results = []
        for candidate in (batch, garbage):
            torch.manual_seed(1)
            model.zero_grad()
            loss = model.training_step(candidate, 0)
            loss.backward()
            results.append((loss.detach(), gradients(model)))
        (loss, grads), (garbage_loss, garbage_grads) = results
        assert torch.isfinite(loss)
        torch.testing.assert_close(garbage_loss, loss)
        for name, value in grads.items():
            assert torch.isfinite(value).all(), name
            torch.testing.assert_close(garbage_grads[name], value, msg=name)

    def test_all_present_masks_change_nothing(
        self, method: type[MultiModalTask], options: dict[str, Any]
    ) -> None:
        model = self.make(method, options)
        model.eval()
        plain = method_dataset(model.modalities, 8).batch(range(8))
        marked = {
            **plain,
            **{
                f'present_{m}': torch.ones(8, dtype=torch.bool)
                for m in model.modalities
            },
        }
        inputs = [model.modality_inputs(b, require_all=True) for b in (plain, marked)]
        with torch.no_grad():
            first, second = (
                model.losses(i, model.encode(i), plain['label'])[0] for i in inputs
            )
            predictions = [model.predict_step(b, 0) for b in (plain, marked)]
        assert first.keys() == second.keys()
        for name in first:
            torch.testing.assert_close(
                second[name], first[name], rtol=1e-5, atol=1e-6, msg=name
            )
        for name, prediction in predictions[0].items():
            torch.testing.assert_close(predictions[1][name], prediction, msg=name)

    def test_a_modality_no_sample_holds(
        self, method: type[MultiModalTask], options: dict[str, Any]
    ) -> None:
        model = self.make(method, options)
        batch = self.batch_for(model)
        lacking = model.modalities[-1]
        batch[f'present_{lacking}'] = torch.zeros(10, dtype=torch.bool)
        loss = model.training_step(batch, 0)
        loss.backward()
        assert torch.isfinite(loss)
        model.eval()
        with torch.no_grad():
            model.validation_step(batch, 0)
            predictions = model.predict_step(batch, 0)
        _, scores = model.epoch.compute('val')
        for scenario in model.scenarios():
            name = scenario_name(scenario)
            if lacking in scenario:
                assert scores[f'val/{name}/count'] == 0
                assert predictions[name].isnan().all()
            else:
                assert scores[f'val/{name}/count'] > 0

    def test_scenarios_are_scored_on_the_samples_that_hold_them(
        self, method: type[MultiModalTask], options: dict[str, Any]
    ) -> None:
        model = self.make(method, options)
        model.eval()
        batch = self.batch_for(model)
        with torch.no_grad():
            model.validation_step(batch, 0)
            predictions = model.predict_step(batch, 0)
        _, scores = model.epoch.compute('val')
        for scenario in model.scenarios():
            holds = torch.ones(10, dtype=torch.bool)
            for modality in scenario:
                holds &= batch.get(
                    f'present_{modality}', torch.ones(10, dtype=torch.bool)
                )
            name = scenario_name(scenario)
            assert scores[f'val/{name}/count'] == holds.sum()
            prediction = predictions[name]
            assert torch.isnan(prediction[~holds]).all()
            assert torch.isfinite(prediction[holds]).all()


def float_mask(batch: dict[str, Any]) -> None:
    batch['present_s2'] = batch['present_s2'].float()


def nan_in_a_present_sample(batch: dict[str, Any]) -> None:
    batch['image_s2'][0, 0] = float('nan')


@pytest.mark.parametrize(
    ('lacking', 'spoil', 'message'),
    [
        (
            {'s1': [2], 's2': [2], 's3': [2]},
            None,
            r'sample 2 .*holds none of the modalities.*min_modalities',
        ),
        (None, float_mask, r'present_s2 must be a bool tensor of shape \(10,\)'),
        (None, nan_in_a_present_sample, r'image_s2 holds NaN \(sample 0'),
    ],
    ids=['no modality', 'float mask', 'NaN where present'],
)
def test_errors_name_the_cause(
    lacking: dict[str, list[int]] | None,
    spoil: Callable[[dict[str, Any]], None] | None,
    message: str,
) -> None:
    model = CoLearnTask(**{**TINY_MULTICLASS, 'encoders': EXACT_ENCODERS})
    batch = missing_batch(lacking=lacking)
    if spoil is not None:
        spoil(batch)
    with pytest.raises(ValueError, match=message):
        model.training_step(batch, 0)


def test_fit_and_test_with_gaps_and_every_callback(tmp_path: Path) -> None:
    """A synthetic run in which 40 % of the samples lack s2: every callback reports."""
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=160, batch_size=16, missing={'s2': 0.4}, seed=0
    )
    model = CoLearnTask(encoders=TINY_ENCODERS, num_classes=4, embed_dim=4)
    trainer = Trainer(
        max_epochs=1,
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
        callbacks=[
            ScenarioReport(str(tmp_path / 'report')),
            RobustnessEvaluation(
                noise_levels=[0.5], output_dir=str(tmp_path / 'robustness')
            ),
            RepresentationFigures(
                max_samples=32, projection='pca', output_dir=str(tmp_path / 'figures')
            ),
            ScenarioPredictionWriter(output=str(tmp_path / 'predictions.csv')),
        ],
    )
    trainer.fit(model, datamodule)
    (results,) = trainer.test(model, datamodule)
    trainer.predict(model, datamodule, return_predictions=False)
    assert datamodule.incomplete_modalities == ('s2',)
    test_size = len(datamodule.test_dataset)  # type: ignore[arg-type]
    assert results['test/s1/count'] == test_size
    assert 0 < results['test/s2/count'] < test_size
    assert results['test/s1+s2/count'] == results['test/s2/count']
    assert all(math.isfinite(value) for value in results.values())


def test_a_modality_of_one_sample_is_left_out_of_the_training_step() -> None:
    """Batch normalisation cannot train on one sample: that sample uses its other modalities."""
    torch.manual_seed(0)
    model = CoLearnTask(**{**TINY_MULTICLASS, 'encoders': EXACT_ENCODERS})
    lone = missing_batch(lacking={'s2': list(range(1, 10))})
    without = {**lone, 'present_s2': torch.zeros(10, dtype=torch.bool)}
    torch.manual_seed(1)
    with pytest.warns(
        UserWarning, match=r"only one sample of a training batch holds \['s2'\]"
    ):
        loss = model.training_step(lone, 0)
    torch.manual_seed(1)
    torch.testing.assert_close(loss, model.training_step(without, 0))
    # evaluation runs in eval mode: the one sample is scored
    model.eval()
    with torch.no_grad():
        model.validation_step(lone, 0)
    _, scores = model.epoch.compute('val')
    assert scores['val/s2/count'] == 1
