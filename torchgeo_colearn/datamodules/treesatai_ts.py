# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""TreeSatAI-Time-Series datamodule, with a collate function padding the time series."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import default_collate

from ..batch import VALID_PREFIX, doy_key, image_key, valid_key
from ..cache import CacheKey
from ..datasets.treesatai_ts import Sensor, TreeSatAITimeSeries
from ..modality_info import ModalityInfo
from .base import MultiModalDataModule
from .missing import unfiltered

#: Unit of the channels of each TreeSatAI-Time-Series sensor.
SENSOR_UNITS: dict[str, str] = {
    'aerial': 'digital number 0-255',
    's1_asc': 'backscatter, as stored in the sen-1-asc-data arrays',
    's1_des': 'backscatter, as stored in the sen-1-des-data arrays',
    's2': 'L2A reflectance x 10^4',
}


class PadTimeSeries:
    """Collate samples whose time series differ in length, padding them to a common length.

    A modality is a time series if the samples carry ``valid_<modality>``. Its ``image_<modality>``
    (T, ...) is padded with NaN (the normaliser turns them into 0 after the z-score), its
    ``valid_<modality>`` with False and its ``doy_<modality>`` with 0, to the longest series of the
    batch (at least 1 step) or to a fixed length. Every other key is collated by
    :func:`~torch.utils.data.default_collate`.
    """

    def __init__(
        self,
        max_len: Mapping[str, int] | None = None,
        pad_side: Literal['left', 'right'] = 'left',
    ) -> None:
        """Initialize a new PadTimeSeries instance.

        Args:
            max_len: Fixed length per modality (the others are padded to the batch maximum).
            pad_side: Pad before the series ('left', MDiCo's front padding, the last acquisition at the
                last step) or after it ('right').

        Raises:
            ValueError: If a length is not positive or *pad_side* is unknown.
        """
        if pad_side not in ('left', 'right'):
            msg = f"pad_side must be 'left' or 'right', got {pad_side!r}"
            raise ValueError(msg)
        self.max_len = dict(max_len or {})
        for modality, length in self.max_len.items():
            if length < 1:
                msg = f'max_len[{modality!r}] must be positive, got {length}'
                raise ValueError(msg)
        self.pad_side = pad_side

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Collate a list of samples into a batch.

        Args:
            samples: Sample dicts with the same keys.

        Returns:
            The batch; time series of shape (B, L, ...), their masks (B, L).

        Raises:
            ValueError: If a series is longer than its fixed length.
        """
        series = [
            k.removeprefix(VALID_PREFIX)
            for k in samples[0]
            if k.startswith(VALID_PREFIX)
        ]
        padded: dict[str, Tensor] = {}
        for modality in series:
            lengths = [len(s[valid_key(modality)]) for s in samples]
            length = self.max_len.get(modality, max(*lengths, 1))
            for sample, steps in zip(samples, lengths):
                if steps > length:
                    msg = (
                        f'sample {sample.get("id", "?")!r} has {steps} {modality} time steps, more '
                        f'than max_len={length}'
                    )
                    raise ValueError(msg)
            keys = {
                image_key(modality): float('nan'),
                valid_key(modality): False,
                doy_key(modality): 0,
            }
            for key, fill in keys.items():
                if key in samples[0]:
                    padded[key] = torch.stack(
                        [self._pad(s[key], length, fill) for s in samples]
                    )
        rest = default_collate(
            [{k: v for k, v in s.items() if k not in padded} for s in samples]
        )
        return {k: padded[k] if k in padded else rest[k] for k in samples[0]}

    def _pad(self, x: Tensor, length: int, fill: float) -> Tensor:
        """Pad a series along its first axis.

        Args:
            x: Series, shape (T, ...).
            length: Target length, at least T.
            fill: Padding value.

        Returns:
            The padded series, shape (length, ...), same dtype.
        """
        out = torch.full((length, *x.shape[1:]), fill, dtype=x.dtype)
        steps = len(x)
        if self.pad_side == 'left':
            out[length - steps :] = x
        else:
            out[:steps] = x
        return out


class TreeSatAITimeSeriesDataModule(MultiModalDataModule):
    """LightningDataModule for TreeSatAI-Time-Series (:class:`~torchgeo_colearn.datasets.treesatai_ts.TreeSatAITimeSeries`).

    Uses the official train/val/test lists. Batches hold the aerial images (B, 4, H, W), randomly
    flipped during training, and the time series (B, L, C, 6, 6) padded by :class:`PadTimeSeries`, with
    ``valid_<sensor>`` marking the real acquisitions; the time series are never augmented. Each
    modality is z-scored with per-channel statistics of the training split, cached in a JSON file under
    *root* (:meth:`stats_path`) named after a hash of the training files, the split list, the labels
    file and the options.
    """

    label_task = 'multilabel'
    num_classes = len(TreeSatAITimeSeries.classes)
    classes = tuple(TreeSatAITimeSeries.classes)

    def __init__(
        self,
        root: str = 'data',
        sensors: Sequence[Sensor] = ('aerial', 's2'),
        s2_masks: bool = False,
        label_threshold: float = 0.07,
        max_len: dict[str, int] | None = None,
        pad_side: Literal['left', 'right'] = 'left',
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        """Initialize a new TreeSatAITimeSeriesDataModule instance.

        Args:
            root: Root directory of the dataset.
            sensors: Modalities, a subset of 'aerial', 's1_asc', 's1_des', 's2'.
            s2_masks: Append the snow and cloud probabilities to ``s2`` (12 channels).
            label_threshold: Area share above which a genus is a label.
            max_len: Fixed padded length per time-series sensor (MDiCo: s1_asc 151, s1_des 257, s2 146);
                the others are padded to the longest series of each batch.
            pad_side: Pad before ('left', MDiCo) or after ('right') the acquisitions.
            download: Download the missing archives into *root*.
            **kwargs: The batches of :class:`~torchgeo_colearn.datamodules.MultiModalDataModule`,
                e.g. ``batch_size``, ``augment`` (random flips of the aerial images), ``modalities``
                (``['s2']``; narrowing *sensors* instead also avoids reading the other files).

        Raises:
            ValueError: If *max_len* names a sensor that is not a selected time series.
        """
        series = set(sensors) & set(TreeSatAITimeSeries.time_series_sensors)
        if max_len is not None and not set(max_len) <= series:
            msg = f'max_len keys must be selected time-series sensors {sorted(series)}, got {sorted(max_len)}'
            raise ValueError(msg)
        super().__init__(
            TreeSatAITimeSeries,
            fill_nan=True,
            root=root,
            sensors=tuple(sensors),
            s2_masks=s2_masks,
            label_threshold=label_threshold,
            download=download,
            **kwargs,
        )
        self.collate_fn = PadTimeSeries(max_len, pad_side)
        self.max_len = dict(max_len or {})

    def modality_info(self) -> dict[str, ModalityInfo]:
        """Describe the sensors: bands, units, and the padded acquisitions of the time series.

        Returns:
            ``aerial`` (4, H, W) with the size of the training images; time series (T, C, 6, 6) with
            T the fixed *max_len* of the sensor, else free (``None``); padded steps are NaN.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        info = {}
        for sensor in self.modalities:
            bands = TreeSatAITimeSeries.all_bands[sensor]  # type: ignore[index]
            if sensor == 's2' and self.kwargs['s2_masks']:
                bands = (*bands, *TreeSatAITimeSeries.mask_bands)
            units = [SENSOR_UNITS[sensor]] * len(bands)
            if sensor == 's2' and self.kwargs['s2_masks']:
                units[-2:] = ['%', '%']
            shape = self.sample_shape(sensor)
            series = sensor in TreeSatAITimeSeries.time_series_sensors
            info[sensor] = ModalityInfo(
                (self.max_len.get(sensor), *shape[1:]) if series else shape,
                bands,
                tuple(units),
                'acquisitions of one year, padded with NaN' if series else None,
            )
        return info

    def stats_cache_key(self) -> CacheKey:
        """Say what the training-split statistics depend on.

        Returns:
            A key under *root* named after the sensors, the masks and the label threshold, over the
            files of the training patches, the training split list, the labels file and those
            options.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        # the key names every training file; min_modalities, in the options, picks among them
        train = unfiltered(self.set_up_train_dataset('stats_cache_key'))
        assert isinstance(train, TreeSatAITimeSeries)
        sensors = sorted(self.kwargs['sensors'])
        masks = '_masks' if self.kwargs['s2_masks'] else ''
        threshold = self.kwargs['label_threshold']
        return CacheKey(
            self.kwargs['root'],
            f'colearn_stats_{"-".join(sensors)}{masks}_threshold{threshold:g}',
            options={
                'sensors': sensors,
                's2_masks': self.kwargs['s2_masks'],
                'label_threshold': threshold,
            },
            files=train.files(),
            whole_files=train.list_files(),
        )
