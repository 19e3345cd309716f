# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest

from torchgeo_colearn.scenarios import (
    default_scenarios,
    metric_key,
    parse_scenario,
    parse_scenarios,
    scenario_name,
    scores_by_scenario,
    sort_scenario_names,
    split_metric_key,
)

MODALITIES = ('s1', 's2', 'dem')


def test_name_round_trip_in_training_order() -> None:
    assert scenario_name(('s1', 's2')) == 's1+s2'
    assert parse_scenario('dem+s1', MODALITIES) == ('s1', 'dem')
    assert parse_scenarios(['s2', 's1+s2'], MODALITIES) == [('s2',), ('s1', 's2')]


@pytest.mark.parametrize('name', ['', 's3', 's1+s1', 's1+', 'S1'])
def test_bad_names_name_the_scenario(name: str) -> None:
    with pytest.raises(ValueError, match='must join distinct modalities'):
        parse_scenario(name, MODALITIES)


def test_duplicate_scenarios_rejected() -> None:
    with pytest.raises(ValueError, match="'s2\\+s1' is given twice"):
        parse_scenarios(['s1+s2', 's2+s1'], MODALITIES)


def test_default_scenarios() -> None:
    assert default_scenarios(MODALITIES, fusion=False) == [('s1',), ('s2',), ('dem',)]
    fused = default_scenarios(MODALITIES, fusion=True)
    assert len(fused) == 2 ** len(MODALITIES) - 1
    assert fused[3:] == [
        ('s1', 's2'),
        ('s1', 'dem'),
        ('s2', 'dem'),
        ('s1', 's2', 'dem'),
    ]


def test_sort_names_like_default_scenarios() -> None:
    names = [scenario_name(s) for s in default_scenarios(MODALITIES, fusion=True)]
    shuffled = names[::-1]
    assert sort_scenario_names(shuffled, MODALITIES) == names
    # Without the modalities, the order of the single-modality names decides.
    assert sort_scenario_names(['s2+dem', 'dem', 's2']) == ['dem', 's2', 's2+dem']


def test_metric_keys() -> None:
    assert metric_key('test', ('s1', 's2'), 'R2') == 'test/s1+s2/R2'
    assert split_metric_key('val/s1/F1Score') == ('val', 's1', 'F1Score')
    assert split_metric_key('val_loss') is None
    assert split_metric_key('a/b') is None
    logged = {'test/s2/R2': 0.5, 'test/s1/R2': 0.25, 'val/s1/R2': 0.0, 'test_loss': 1.0}
    assert scores_by_scenario(logged, 'test') == {'s1': {'R2': 0.25}, 's2': {'R2': 0.5}}
