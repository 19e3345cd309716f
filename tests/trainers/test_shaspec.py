# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.trainers.shaspec import ShaSpecTask

from .test_fusion import TASK_TYPES, fit_and_score, make_batch, task_args


@pytest.mark.parametrize('task_type', TASK_TYPES)
def test_fit_and_every_scenario(task_type: TaskType, tmp_path: Path) -> None:
    model = ShaSpecTask(**task_args(task_type))
    assert len(model.scenarios()) == 7
    fit_and_score(model, task_type, tmp_path)


def test_shared_trunk_is_shared() -> None:
    model = ShaSpecTask(**task_args('multiclass'))
    # One trunk for every modality; one specific encoder and one projection per modality.
    assert (
        set(model.model.specific) == set(model.model.projections) == {'s1', 's2', 'dem'}
    )
    assert model.model.shared.input_shape == (8,)


def test_missing_slot_gets_mean_shared_feature() -> None:
    model = ShaSpecTask(**task_args('regression')).eval()
    batch = make_batch()
    features = model.encode(model.modality_inputs(batch))
    # With s1 and s2 available, the dem slot holds the mean of their shared features.
    substitute = (features['s1'].shared + features['s2'].shared) / 2
    composed = [
        features[m].shared
        + model.model.composition(
            torch.cat([features[m].specific, features[m].shared], 1)
        )
        for m in ('s1', 's2')
    ]
    expected = model.model.head(torch.cat([*composed, substitute], 1))
    torch.testing.assert_close(model.predict_from(features, ('s1', 's2')), expected)


def test_loss_terms() -> None:
    model = ShaSpecTask(
        **task_args('multiclass'), alignment_weight=0.5, domain_weight=2.0
    ).eval()
    batch = make_batch()
    inputs = model.modality_inputs(batch, require_all=True)
    losses, outputs = model.losses(inputs, model.encode(inputs), batch['label'])
    features = model.encode(inputs)
    names = ('s1', 's2', 'dem')
    alignment = torch.stack(
        [
            F.l1_loss(features[a].shared, features[b].shared)
            for a, b in (('s1', 's2'), ('s2', 'dem'), ('dem', 's1'))
        ]
    ).mean()
    torch.testing.assert_close(losses['alignment_loss'], 0.5 * alignment)
    assert losses['domain_loss'] > 0
    total = losses['task_loss'] + losses['alignment_loss'] + losses['domain_loss']
    torch.testing.assert_close(losses['loss'], total)
    assert set(outputs) == {(m,) for m in names} | {names}


def test_negative_weight_rejected() -> None:
    with pytest.raises(ValueError, match='alignment_weight'):
        ShaSpecTask(**task_args('multiclass'), alignment_weight=-1.0)


def test_representations() -> None:
    model = ShaSpecTask(**task_args('multiclass')).eval()
    reps = model.representations(make_batch())
    assert set(reps['s1']) == {'specific', 'shared'}
    assert reps['s1']['shared'].shape == (6, 4)
