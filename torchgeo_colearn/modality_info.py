# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""What one modality's raw input is: sample shape, band names and order, units and time steps."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .batch import channel_axis, image_key


def shape_fits(expected: Sequence[int | None], shape: Sequence[int]) -> bool:
    """Tell whether a sample shape fits an expected one whose free sizes are None.

    Args:
        expected: The expected shape, None for a size that may vary (e.g. the time steps).
        shape: Shape of one sample (no batch axis).

    Returns:
        True if the number of axes and every fixed size match.
    """
    return len(shape) == len(expected) and all(
        want is None or want == got for want, got in zip(expected, shape)
    )


@dataclass(frozen=True)
class ModalityInfo:
    """Description of the raw values of one modality, as a datamodule reads them from disk.

    Datamodules return one per modality (:meth:`~torchgeo_colearn.datamodules.MultiModalDataModule.\
modality_info`); tasks record them when fitting starts and checkpoints and exported models carry
    them (``docs/deploy.md``), so that a deployed model says what it must be fed.

    Attributes:
        shape: Shape of one sample without the batch axis, in the layouts of
            :mod:`~torchgeo_colearn.batch`: (C,), (T, C), (C, H, W) or (T, C, H, W); ``None`` where
            any size is accepted (e.g. a variable number of acquisitions).
        bands: Name of each channel, in channel order.
        units: Unit of each channel, e.g. ``'dB'``, ``'reflectance x 10^4'``, ``'K'``, ``'1'``
            (unitless).
        time_steps: What the time axis holds, e.g. ``'12 monthly composites ending on 1 February'``;
            None for modalities without a time axis.
    """

    shape: tuple[int | None, ...]
    bands: tuple[str, ...]
    units: tuple[str, ...]
    time_steps: str | None = None

    def __post_init__(self) -> None:
        """Check that the bands and units fit the channel axis of the shape.

        Raises:
            ValueError: If the shape is not a sample layout, or the numbers of bands, units and
                channels differ.
        """
        object.__setattr__(self, 'shape', tuple(self.shape))
        object.__setattr__(self, 'bands', tuple(self.bands))
        object.__setattr__(self, 'units', tuple(self.units))
        channels = self.shape[channel_axis(len(self.shape))]
        if len(self.bands) != len(self.units) or channels not in (
            None,
            len(self.bands),
        ):
            msg = (
                f'ModalityInfo: {len(self.bands)} bands {self.bands} and {len(self.units)} units '
                f'for a sample of shape {self.shape} ({channels} channels)'
            )
            raise ValueError(msg)

    @property
    def channels(self) -> int:
        """Number of channels.

        Returns:
            The number of bands.
        """
        return len(self.bands)

    def accepts(self, shape: Sequence[int]) -> bool:
        """Tell whether a sample shape fits :attr:`shape`.

        Args:
            shape: Shape of one sample (no batch axis).

        Returns:
            True if the number of axes and every fixed size match.
        """
        return shape_fits(self.shape, shape)

    def describe(self, modality: str, shape: Sequence[int | None] | None = None) -> str:
        """Say in one line what a batch of this modality must hold.

        Args:
            modality: The modality name.
            shape: The accepted sample shape, if a model accepts more than :attr:`shape` (e.g. any
                number of time steps); ``None`` for a free axis.

        Returns:
            E.g. ``image_s1: (B, 12, 2) raw values, bands VV [dB], VH [dB]; time steps: ...``.
        """
        shape = self.shape if shape is None else shape
        sizes = ', '.join('*' if d is None else str(d) for d in shape)
        bands = ', '.join(f'{b} [{u}]' for b, u in zip(self.bands, self.units))
        steps = f'; time steps: {self.time_steps}' if self.time_steps else ''
        return f'{image_key(modality)}: (B, {sizes}) raw values, bands {bands}{steps}'

    def to_json(self) -> dict[str, Any]:
        """Return the description as JSON-serialisable values.

        Returns:
            ``{'shape': [...], 'bands': [...], 'units': [...], 'time_steps': ...}`` (``null`` for
            free axes).
        """
        return {
            'shape': list(self.shape),
            'bands': list(self.bands),
            'units': list(self.units),
            'time_steps': self.time_steps,
        }

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> 'ModalityInfo':
        """Read a description written by :meth:`to_json`.

        Args:
            values: The JSON values.

        Returns:
            The description.
        """
        return cls(
            tuple(values['shape']),
            tuple(values['bands']),
            tuple(values['units']),
            values.get('time_steps'),
        )


def unnamed_modality_info(shape: Sequence[int | None]) -> ModalityInfo:
    """Describe a modality whose bands and units the data do not name.

    Args:
        shape: Shape of one sample.

    Returns:
        Bands ``band_0``, ``band_1``, ... with unit ``'unknown'``.
    """
    channels = shape[channel_axis(len(shape))]
    if channels is None:
        msg = f'the channel axis of a sample of shape {tuple(shape)} must have a fixed size'
        raise ValueError(msg)
    return ModalityInfo(
        tuple(shape),
        tuple(f'band_{i}' for i in range(channels)),
        ('unknown',) * channels,
        None,
    )
