# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch
from torchgeo.datasets import CropHarvest

from torchgeo_colearn.datasets.cropharvest_layout import (
    BAND_UNITS,
    BASE_MODALITIES,
    NUM_TIMESTEPS,
    TIME_STEPS,
    group_modality_info,
    resolve_groups,
    split_modalities,
)


def test_every_band_has_a_unit() -> None:
    assert set(BAND_UNITS) == set(CropHarvest.all_bands)
    assert BAND_UNITS['B8A'] == 'reflectance x 10^4'


def test_groups_slice_and_describe_the_bands() -> None:
    groups = resolve_groups(None, {'s2': ['s2', 'ndvi'], 'topography': ['dem']})
    arrays = torch.arange(NUM_TIMESTEPS * 18, dtype=torch.float32).reshape(1, -1, 18)
    out = split_modalities(arrays, groups)
    assert out['image_s2'].shape == (1, NUM_TIMESTEPS, 12)
    # static modalities are taken at the first step
    elevation = CropHarvest.all_bands.index('elevation')
    assert out['image_topography'].tolist() == [[elevation, elevation + 1]]
    info = group_modality_info(groups, NUM_TIMESTEPS, TIME_STEPS)
    assert info['s2'].bands == (*BASE_MODALITIES['s2'], 'NDVI')
    assert (
        info['s2'].shape == (NUM_TIMESTEPS, 12) and info['s2'].time_steps == TIME_STEPS
    )
    assert info['topography'].shape == (2,) and info['topography'].time_steps is None
    assert resolve_groups(['s1'], None) == {'s1': ('s1',)}
    assert list(resolve_groups(None, None)) == list(BASE_MODALITIES)


@pytest.mark.parametrize(
    ('modalities', 'groups', 'match'),
    [
        (['s1'], {'s1': ['s1']}, 'not both'),
        (None, {}, 'at least one'),
        (None, {'x': ['radar']}, 'base modalities'),
        (None, {'x': []}, 'base modalities'),
        (None, {'x': ['s1', 'dem']}, 'mixes'),
    ],
)
def test_invalid_groups(
    modalities: list[str] | None, groups: dict[str, list[str]], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_groups(modalities, groups)
