# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The batch convention shared by every dataset, datamodule, task and callback.

A sample (and a batch) is a flat dict:

* ``image_<modality>``: one float tensor per modality. The layout is read from the number of
  dimensions of a *sample* (without the batch axis):

  ==========  ==============  ============
  ndim        layout          channel axis
  ==========  ==============  ============
  1           (C,)            0
  2           (T, C)          1
  3           (C, H, W)       0
  4           (T, C, H, W)    1
  ==========  ==============  ============

* ``valid_<modality>``: optional bool tensor (T,) marking the valid (not padded, not missing) time steps
  of a time-series modality. It deliberately avoids kornia's ``mask_`` prefix so that geometric
  augmentations leave it alone.
* ``present_<modality>``: optional bool scalar per sample ((B,) per batch), False where the sample lacks
  the modality (a cloudy season, a sensor not yet launched, a missing file). The absent samples'
  ``image_<modality>`` rows hold zeros after normalisation and are never read: every loss, baseline
  and score uses only the samples that have the modality. A batch without the key has the modality
  for every sample.
* ``label``: the target, int64 scalar (binary, multi-class), float (L,) multi-hot (multi-label) or float
  scalar (regression).
* metadata: ``id``, ``lat``, ``lon``, ``year``, ``time``, ``site``, ``date`` and ``doy_<modality>``.
* ``image`` (exactly this key): TorchGeo's multi-sensor datamodules (e.g. ``TreeSatAIDataModule``)
  add it next to their ``image_<sensor>`` keys, holding all sensors concatenated along the channels
  for single-input models. It is not a modality: co-learning tasks read the ``image_<sensor>`` keys
  and ignore it, so that those datamodules work as they are (:data:`FUSED_IMAGE_KEY`).

Nothing may assume a fixed number of modalities: they are read from the keys.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Prefix of the key that holds a modality.
IMAGE_PREFIX = 'image_'

#: Prefix of the key that holds the per-time-step validity of a modality.
VALID_PREFIX = 'valid_'

#: Prefix of the key that marks which samples hold a modality.
PRESENT_PREFIX = 'present_'

#: Prefix of the key that holds the day of year of each time step of a modality.
DOY_PREFIX = 'doy_'

#: Non-modality keys a batch may carry.
METADATA_KEYS = frozenset({'label', 'id', 'lat', 'lon', 'year', 'time', 'site', 'date'})

#: The concatenation of all modalities that TorchGeo's multi-sensor datamodules add for single-input
#: models; ignored, since each modality is also under its own ``image_<modality>`` key.
FUSED_IMAGE_KEY = 'image'

#: Number of dimensions of a sample of each layout mapped to the axis of its channels.
CHANNEL_AXIS = {1: 0, 2: 1, 3: 0, 4: 1}


@dataclass(frozen=True)
class ModalityKey:
    """The batch keys of one kind of per-modality entry: ``<prefix><modality>``.

    Calling it gives a modality's key, e.g. ``image_key('s1') == 'image_s1'``.
    """

    #: The prefix, e.g. ``'image_'``.
    prefix: str

    def __call__(self, modality: str) -> str:
        """Return the key of a modality.

        Args:
            modality: Modality name, e.g. ``'s1'``.

        Returns:
            ``'<prefix><modality>'``.
        """
        return f'{self.prefix}{modality}'

    def modality_of(self, key: str) -> str | None:
        """Return the modality a key of this kind names.

        Args:
            key: A batch key.

        Returns:
            The key without the prefix, or None if the key is not of this kind.
        """
        return key.removeprefix(self.prefix) if key.startswith(self.prefix) else None


#: The key of a modality: ``image_key('s1') == 'image_s1'``.
image_key = ModalityKey(IMAGE_PREFIX)

#: The key of the per-time-step validity mask of a modality: ``valid_key('s2') == 'valid_s2'``.
valid_key = ModalityKey(VALID_PREFIX)

#: The key of the per-sample presence of a modality: ``present_key('s2') == 'present_s2'``.
present_key = ModalityKey(PRESENT_PREFIX)

#: The key of the day of year of each time step of a modality: ``doy_key('s2') == 'doy_s2'``.
doy_key = ModalityKey(DOY_PREFIX)

#: The kinds of keys that belong to one modality.
MODALITY_KEYS = (image_key, valid_key, present_key, doy_key)


def key_modality(key: str) -> str | None:
    """Return the modality a key belongs to.

    Args:
        key: A batch key.

    Returns:
        The modality of an image, validity, presence or day-of-year key (:data:`MODALITY_KEYS`),
        None for any other key.
    """
    return next(
        (m for kind in MODALITY_KEYS if (m := kind.modality_of(key)) is not None), None
    )


def modalities_in(batch: Mapping[str, Any]) -> tuple[str, ...]:
    """List the modalities present in a batch, in key order.

    Args:
        batch: A sample or batch dict.

    Returns:
        The modality names, i.e. the keys starting with ``image_`` without the prefix.
    """
    return tuple(
        k.removeprefix(IMAGE_PREFIX) for k in batch if k.startswith(IMAGE_PREFIX)
    )


def channel_axis(sample_ndim: int) -> int:
    """Return the channel axis of a modality sample.

    Args:
        sample_ndim: Number of dimensions of one sample (no batch axis), 1 to 4.

    Returns:
        The channel axis within the sample.

    Raises:
        ValueError: If the layout is not one of (C,), (T, C), (C, H, W), (T, C, H, W).
    """
    if sample_ndim not in CHANNEL_AXIS:
        msg = (
            f'a modality sample must have 1 to 4 dimensions ((C,), (T, C), (C, H, W) or '
            f'(T, C, H, W)), got {sample_ndim}'
        )
        raise ValueError(msg)
    return CHANNEL_AXIS[sample_ndim]


def check_keys(batch: Mapping[str, Any], modalities: Iterable[str]) -> None:
    """Check that every key of a batch is part of the convention.

    Args:
        batch: A sample or batch dict.
        modalities: The modalities a model knows.

    Raises:
        KeyError: If a key is neither a known modality, its validity, presence or day-of-year mask,
            metadata, nor TorchGeo's fused ``image`` (:data:`FUSED_IMAGE_KEY`, ignored).
    """
    known = set(modalities)
    for key in batch:
        if key == FUSED_IMAGE_KEY:
            continue
        modality = key_modality(key)
        if modality is not None and modality not in known:
            msg = (
                f'batch key {key!r} names unknown modality {modality!r}; known modalities: '
                f'{sorted(known)}'
            )
            raise KeyError(msg)
        if modality is None and key not in METADATA_KEYS:
            msg = (
                f'unknown batch key {key!r}: expected image_<modality> with a modality in '
                f'{sorted(known)}, valid_<modality>, present_<modality>, doy_<modality> or one of '
                f'{sorted(METADATA_KEYS)}'
            )
            raise KeyError(msg)
