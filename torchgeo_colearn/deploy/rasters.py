# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""What a map is made of: its bands, the windows and tiles of a raster, batched prediction, progress."""

import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from torch import Tensor

from .. import __version__
from .inputs import RawInputModel

if TYPE_CHECKING:
    from ..trainers.base import MultiModalTask


def output_bands(task: 'MultiModalTask', classes: Sequence[str] | None) -> list[str]:
    """Name the bands of a map.

    Args:
        task: The task.
        classes: Class or label names, default their indices.

    Returns:
        ``class`` then ``probability_<class>`` per class (binary: both classes; multiclass),
        ``label_<label>`` (0 or 1 at 0.5) then ``probability_<label>`` per label (multilabel), or
        ``value`` (regression).
    """
    match task.task_type:
        case 'binary' | 'multiclass':
            width = 2 if task.task_type == 'binary' else task.output_dim
            names = list(classes) if classes else [str(i) for i in range(width)]
            return ['class', *(f'probability_{c}' for c in names)]
        case 'multilabel':
            names = (
                list(classes) if classes else [str(i) for i in range(task.output_dim)]
            )
            return [f'label_{c}' for c in names] + [f'probability_{c}' for c in names]
        case 'regression':
            return ['value']


def prediction_bands(task: 'MultiModalTask', prediction: Tensor) -> np.ndarray:
    """Turn predictions into the values of the map bands (:func:`output_bands`).

    Args:
        task: The task.
        prediction: Its predictions of N samples (see
            :meth:`~torchgeo_colearn.trainers.MultiModalTask.postprocess`).

    Returns:
        float32 (N, bands).
    """
    p = prediction.float()
    match task.task_type:
        case 'binary':
            bands = torch.stack([(p >= 0.5).float(), 1 - p, p], 1)
        case 'multiclass':
            bands = torch.cat([p.argmax(1, keepdim=True).float(), p], 1)
        case 'multilabel':
            bands = torch.cat([(p >= 0.5).float(), p], 1)
        case 'regression':
            bands = p.reshape(-1, 1)
    result: np.ndarray = bands.cpu().numpy()
    return result


class WindowProgress:
    """Progress over the windows of a map: a bar on a terminal, else a line per tenth."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        """Initialize a new WindowProgress instance.

        Args:
            total: Number of windows.
            stream: Where to report, default standard error.
        """
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.pixels = 0
        self.start = time.perf_counter()
        self._tenth = 0
        self._bar: Progress | None = None
        if self.stream.isatty():
            self._bar = Progress(console=Console(file=self.stream))
            self._task = self._bar.add_task('colearn map', total=total)
            self._bar.start()

    def advance(self, pixels: int) -> None:
        """Count a finished window.

        Args:
            pixels: Pixels it held.
        """
        self.done += 1
        self.pixels += pixels
        if self._bar is not None:
            self._bar.advance(self._task)
            return
        tenth = self.done * 10 // self.total
        if tenth > self._tenth:
            self._tenth = tenth
            rate = self.pixels / max(time.perf_counter() - self.start, 1e-9)
            print(
                f'colearn map: {tenth * 10}% ({self.done}/{self.total} windows, '
                f'{rate:,.0f} pixels/s)',
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        """Stop the bar."""
        if self._bar is not None:
            self._bar.stop()


def tile_offsets(length: int, size: int) -> list[int]:
    """Place tiles along one axis: every *size* pixels, the last one flush with the end.

    Args:
        length: Pixels along the axis.
        size: Tile size.

    Returns:
        The start of each tile; the last two overlap when *size* does not divide *length*.

    Raises:
        ValueError: If the axis is shorter than a tile.
    """
    if length < size:
        msg = f'the raster is {length} pixels long on an axis, smaller than a {size}-pixel tile'
        raise ValueError(msg)
    offsets = list(range(0, length - size + 1, size))
    if offsets[-1] + size < length:
        offsets.append(length - size)
    return offsets


def _batches(x: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Cut a tensor into batches along its first axis.

    Args:
        x: The tensor.
        batch_size: Samples per batch.

    Yields:
        Consecutive slices.
    """
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def predict_samples(
    task: 'MultiModalTask',
    model: RawInputModel,
    x: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Predict raw samples in batches on a device.

    Args:
        task: The task.
        model: Its raw-input model, on *device*, in evaluation mode.
        x: Raw values, (N, *sample shape).
        batch_size: Samples per forward pass.
        device: The device.

    Returns:
        float32 (N, bands) (:func:`prediction_bands`).
    """
    values = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    outputs = []
    with torch.inference_mode():
        for batch in _batches(values, batch_size):
            outputs.append(prediction_bands(task, model(batch.to(device))))
    return np.concatenate(outputs) if outputs else np.empty((0, 0), np.float32)


def map_profile(src_profile: dict[str, Any], count: int) -> dict[str, Any]:
    """Return the GeoTIFF profile of a map of a raster.

    Args:
        src_profile: The input raster's profile.
        count: Number of bands.

    Returns:
        Same size, CRS and transform; float32, NaN as nodata, tiled, deflate-compressed.
    """
    return {
        'driver': 'GTiff',
        'width': src_profile['width'],
        'height': src_profile['height'],
        'crs': src_profile['crs'],
        'transform': src_profile['transform'],
        'count': count,
        'dtype': 'float32',
        'nodata': float('nan'),
        'tiled': True,
        'blockxsize': 256,
        'blockysize': 256,
        'compress': 'deflate',
    }


def describe_map(
    dst: Any,
    task: 'MultiModalTask',
    modality: str,
    names: Sequence[str],
    classes: Sequence[str] | None,
    raster: str,
) -> None:
    """Name the bands of a map and tag it with what made it.

    Args:
        dst: The open output dataset.
        task: The task.
        modality: The modality.
        names: The band names.
        classes: Class names, if known.
        raster: The input raster.
    """
    for number, name in enumerate(names, 1):
        dst.set_band_description(number, name)
    dst.update_tags(
        modality=modality,
        task_type=task.task_type,
        classes=json.dumps(None if classes is None else list(classes)),
        source=os.path.basename(raster),
        software=f'torchgeo-colearn {__version__} colearn map',
    )
