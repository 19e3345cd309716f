# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path

import pytest
import torch

from torchgeo_colearn.metrics import TaskType
from torchgeo_colearn.trainers.ensemble import EnsembleTask
from torchgeo_colearn.trainers.single import SingleModalityTask

from .test_fusion import TASK_TYPES, fit_and_score, make_batch, task_args


@pytest.mark.parametrize('task_type', TASK_TYPES)
def test_fit_and_every_scenario(task_type: TaskType, tmp_path: Path) -> None:
    model = EnsembleTask(**task_args(task_type))
    assert len(model.scenarios()) == 7
    fit_and_score(model, task_type, tmp_path)


@pytest.mark.parametrize('task_type', TASK_TYPES)
def test_averages_probabilities(task_type: TaskType) -> None:
    model = EnsembleTask(**task_args(task_type)).eval()
    predictions = model.predict_scenarios(
        make_batch(), [('s1',), ('dem',), ('s1', 'dem')]
    )
    expected = (predictions[('s1',)] + predictions[('dem',)]) / 2
    torch.testing.assert_close(predictions[('s1', 'dem')], expected)


def test_averages_logits() -> None:
    model = EnsembleTask(**task_args('multiclass'), average='logits').eval()
    batch = make_batch()
    features = model.encode(model.modality_inputs(batch))
    fused = model.predict_from(features, ('s1', 's2'))
    single = [model.predict_from(features, (m,)) for m in ('s1', 's2')]
    torch.testing.assert_close(fused, (single[0] + single[1]) / 2)


def test_single_scenarios_match_single_modality_models() -> None:
    torch.manual_seed(0)
    single = SingleModalityTask(**task_args('multiclass')).eval()
    ensemble = EnsembleTask(**task_args('multiclass')).eval()
    ensemble.load_state_dict(single.state_dict())
    batch = make_batch()
    expected, actual = single(batch), ensemble(batch)
    for modality in expected:
        torch.testing.assert_close(actual[modality], expected[modality])


def test_unknown_average() -> None:
    with pytest.raises(ValueError, match='average'):
        EnsembleTask(**task_args('multiclass'), average='median')  # type: ignore[arg-type]
