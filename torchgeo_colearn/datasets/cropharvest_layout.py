# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The band layout of the CropHarvest arrays: base modalities, units, and the groups made of them."""

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchgeo.datasets import CropHarvest

from ..batch import image_key
from ..modality_info import ModalityInfo

#: Base modality mapped to the bands of the (12, 18) CropHarvest array it takes.
BASE_MODALITIES: dict[str, tuple[str, ...]] = {
    's1': ('VV', 'VH'),
    's2': ('B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B8A', 'B9', 'B11', 'B12'),
    'ndvi': ('NDVI',),
    'weather': ('temperature_2m', 'total_precipitation'),
    'dem': ('elevation', 'slope'),
}

#: Base modalities that are constant over time, returned as (C,) vectors taken at the first step.
STATIC_MODALITIES = frozenset({'dem'})

#: Number of monthly time steps of every array.
NUM_TIMESTEPS = 12

#: What the time axis of the CropHarvest arrays holds.
TIME_STEPS = (
    '12 monthly composites, the last one ending on 1 February of the harvest year'
)

#: Unit of each band of the arrays (Sentinel-2 is L1C top-of-atmosphere reflectance x 10^4).
BAND_UNITS: dict[str, str] = {
    'VV': 'dB',
    'VH': 'dB',
    **dict.fromkeys(BASE_MODALITIES['s2'], 'reflectance x 10^4'),
    'temperature_2m': 'K',
    'total_precipitation': 'm',
    'elevation': 'm',
    'slope': 'degrees',
    'NDVI': '1',
}


def resolve_groups(
    modalities: Sequence[str] | None,
    modality_groups: Mapping[str, Sequence[str]] | None,
) -> dict[str, tuple[str, ...]]:
    """Turn the modality options into output modality -> base modalities.

    Args:
        modalities: Base modalities returned separately, or None.
        modality_groups: Output modality mapped to base modalities, or None.

    Returns:
        The groups, in order.

    Raises:
        ValueError: If both options are given, a group is empty, names an unknown base modality, or
            mixes time series with static modalities.
    """
    if modalities is not None and modality_groups is not None:
        msg = 'give either modalities or modality_groups, not both'
        raise ValueError(msg)
    if modality_groups is None:
        names = BASE_MODALITIES if modalities is None else modalities
        modality_groups = {name: [name] for name in names}
    if not modality_groups:
        msg = 'at least one modality is needed'
        raise ValueError(msg)
    groups = {}
    for name, parts in modality_groups.items():
        unknown = [part for part in parts if part not in BASE_MODALITIES]
        if not parts or unknown:
            msg = (
                f'modality {name!r} must list base modalities among {sorted(BASE_MODALITIES)}, '
                f'got {list(parts)}'
            )
            raise ValueError(msg)
        if len({part in STATIC_MODALITIES for part in parts}) > 1:
            msg = (
                f'modality {name!r} mixes time series with static modalities '
                f'{sorted(STATIC_MODALITIES)}: {list(parts)}'
            )
            raise ValueError(msg)
        groups[name] = tuple(parts)
    return groups


def split_modalities(
    arrays: Tensor, groups: Mapping[str, Sequence[str]]
) -> dict[str, Tensor]:
    """Slice arrays in the CropHarvest band layout into output modalities.

    Args:
        arrays: Arrays of shape (..., T, 18), bands in the order of
            :attr:`torchgeo.datasets.CropHarvest.all_bands`.
        groups: Output modality mapped to the base modalities of :data:`BASE_MODALITIES` it
            concatenates along the channel axis (all time series or all static).

    Returns:
        ``image_<modality>`` mapped to (..., T, C) or, for static modalities, (..., C) taken at the
        first time step.
    """
    out = {}
    for name, parts in groups.items():
        index = torch.tensor(
            [
                CropHarvest.all_bands.index(b)
                for part in parts
                for b in BASE_MODALITIES[part]
            ]
        )
        values = arrays[..., index]
        static = parts[0] in STATIC_MODALITIES
        out[image_key(name)] = values[..., 0, :] if static else values
    return out


def group_modality_info(
    groups: Mapping[str, Sequence[str]], num_timesteps: int, time_steps: str
) -> dict[str, ModalityInfo]:
    """Describe the output modalities of arrays in the CropHarvest band layout.

    Args:
        groups: Output modality mapped to the base modalities of :data:`BASE_MODALITIES` it
            concatenates (as :func:`split_modalities` takes them).
        num_timesteps: Number of time steps of the arrays.
        time_steps: What the time axis holds.

    Returns:
        Modality mapped to its sample shape ((T, C), or (C,) for static modalities), band names
        (those of :attr:`torchgeo.datasets.CropHarvest.all_bands`, which :mod:`~torchgeo_colearn.\
        deploy.mapping` looks up in an export), units (:data:`BAND_UNITS`) and time steps.
    """
    info = {}
    for name, parts in groups.items():
        bands = tuple(b for part in parts for b in BASE_MODALITIES[part])
        static = parts[0] in STATIC_MODALITIES
        info[name] = ModalityInfo(
            (len(bands),) if static else (num_timesteps, len(bands)),
            bands,
            tuple(BAND_UNITS[b] for b in bands),
            None if static else time_steps,
        )
    return info
