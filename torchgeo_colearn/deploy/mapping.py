# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Maps: predict every pixel (or tile) of a GeoTIFF with one modality, window by window."""

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeAlias, get_args

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torchgeo.datasets import CropHarvest

from ..datasets.cropharvest_export import CropHarvestExport, export_band_names
from ..modality_info import ModalityInfo
from .inputs import RawInputModel, checkpoint_parser, load_task, require_training_inputs
from .rasters import (
    WindowProgress,
    describe_map,
    map_profile,
    output_bands,
    predict_samples,
    tile_offsets,
)

if TYPE_CHECKING:
    from ..trainers.base import MultiModalTask

#: How the raster holds the modality: the CropHarvest / Earth Engine export layout (one time series
#: per pixel), or an image whose tiles of the model's patch size are predicted one by one.
MapLayout: TypeAlias = Literal['auto', 'cropharvest', 'image']


def _cropharvest_bands(modality: str, info: ModalityInfo, steps: int) -> list[int]:
    """Find the bands of a modality in the CropHarvest arrays of an export.

    Args:
        modality: The modality.
        info: Its recorded description.
        steps: Time steps of the export.

    Returns:
        The positions of its bands in :attr:`torchgeo.datasets.CropHarvest.all_bands`.

    Raises:
        ValueError: If a band is not in the layout, or the shape is not (T, C) or (C,) with T the
            export's steps.
    """
    layout = list(CropHarvest.all_bands)
    if missing := [b for b in info.bands if b not in layout]:
        msg = (
            f'modality {modality!r} has bands {missing} that the CropHarvest export layout does '
            f'not provide; it provides {layout} (the 19 exported bands per step, B1 and B10 '
            'dropped, NDVI added)'
        )
        raise ValueError(msg)
    if len(info.shape) not in (1, 2) or (
        len(info.shape) == 2 and info.shape[0] not in (None, steps)
    ):
        msg = (
            f'modality {modality!r} has samples of shape {info.shape}; a CropHarvest export gives '
            f'per pixel ({steps}, C) time series or (C,) static vectors'
        )
        raise ValueError(msg)
    return [layout.index(b) for b in info.bands]


def map_cropharvest_export(
    task: 'MultiModalTask',
    modality: str,
    raster: str,
    output: str,
    window_size: int = 256,
    batch_size: int = 4096,
    device: str | torch.device = 'cpu',
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Predict every pixel of a CropHarvest / Earth Engine export from one modality.

    Each window of the export (:meth:`~torchgeo_colearn.datasets.cropharvest_export.\
CropHarvestExport.windows`) is read and converted as CropHarvest converts a labelled pixel
    (:meth:`~torchgeo_colearn.datasets.cropharvest_export.CropHarvestExport.read`); the modality's
    bands are taken by name (its recorded band names looked up in
    :attr:`torchgeo.datasets.CropHarvest.all_bands`; static modalities at the first step) and
    predicted in batches on the device. Pixels where a band of the modality is missing at every
    step are nodata (NaN).

    Args:
        task: A task with recorded training inputs describing *modality*.
        modality: The modality to predict from.
        raster: The export GeoTIFF.
        output: The map GeoTIFF to write (:func:`~torchgeo_colearn.deploy.rasters.output_bands`; same size, CRS and transform).
        window_size: Height and width of the windows read at once, in pixels.
        batch_size: Pixels per forward pass.
        device: Where the model runs.
        stream: Where the progress goes, default standard error.

    Returns:
        ``{'pixels', 'nodata_pixels', 'windows', 'seconds', 'bands'}``.

    Raises:
        ValueError: If the raster is not in the export layout or the modality's bands are not in
            it.
    """
    record = require_training_inputs(task)
    info = _modality_info(record.modalities, modality)
    export = CropHarvestExport(raster)
    index = _cropharvest_bands(modality, info, export.num_timesteps)
    static = len(info.shape) == 1
    model = RawInputModel(task, modality).to(device).eval()
    names = output_bands(task, record.classes)
    with rasterio.open(raster) as src:
        profile = map_profile(dict(src.profile), len(names))
    windows = list(export.windows(window_size))
    progress = WindowProgress(len(windows), stream)
    start = time.perf_counter()
    nodata = 0
    with rasterio.open(output, 'w', **profile) as dst:
        describe_map(dst, task, modality, names, record.classes, raster)
        for window in windows:
            arrays, _ = export.read(window)
            values = arrays[..., 0, index] if static else arrays[..., index]
            pixels = values.reshape(window.height * window.width, *values.shape[2:])
            missing = np.isnan(pixels.reshape(len(pixels), -1)).any(1)
            bands = np.full((len(pixels), len(names)), np.nan, np.float32)
            if (~missing).any():
                bands[~missing] = predict_samples(
                    task, model, pixels[~missing], batch_size, torch.device(device)
                )
            nodata += int(missing.sum())
            dst.write(
                bands.T.reshape(len(names), window.height, window.width), window=window
            )
            progress.advance(len(pixels))
    progress.close()
    return {
        'pixels': export.height * export.width,
        'nodata_pixels': nodata,
        'windows': len(windows),
        'seconds': time.perf_counter() - start,
        'bands': names,
    }


def _modality_info(infos: dict[str, ModalityInfo], modality: str) -> ModalityInfo:
    """Return the recorded description of a modality, needed to find its bands in a raster.

    Args:
        infos: The recorded descriptions.
        modality: The modality.

    Returns:
        Its description.

    Raises:
        ValueError: If it was not recorded.
    """
    if modality not in infos:
        msg = (
            f'the task has no description of the bands of {modality!r} (its datamodule did not '
            'describe them), so the raster bands cannot be matched to it'
        )
        raise ValueError(msg)
    return infos[modality]


def _raster_band_indexes(
    descriptions: Sequence[str | None],
    modality: str,
    info: ModalityInfo,
    bands: Sequence[str] | None,
) -> list[int]:
    """Choose the raster band (1-based) of each channel of a modality.

    Args:
        descriptions: The raster's band descriptions.
        modality: The modality.
        info: Its recorded description.
        bands: Explicit raster bands, one per channel in the modality's band order: 1-based band
            numbers or band descriptions; None matches the modality's band names with the
            descriptions.

    Returns:
        1-based band indexes, one per channel.

    Raises:
        ValueError: If the number of bands differs from the channels, or a band is not found.
    """
    wanted = list(info.bands) if bands is None else [str(b) for b in bands]
    if len(wanted) != info.channels:
        msg = (
            f'{len(wanted)} raster bands given for the {info.channels} channels of {modality!r} '
            f'({", ".join(info.bands)})'
        )
        raise ValueError(msg)
    indexes = []
    for channel, band in zip(info.bands, wanted):
        if band.isdigit() and 1 <= int(band) <= len(descriptions):
            indexes.append(int(band))
        elif band in descriptions:
            indexes.append(descriptions.index(band) + 1)
        else:
            msg = (
                f'channel {channel!r} of {modality!r}: no raster band {band!r}; the raster has '
                f'{len(descriptions)} bands described {list(descriptions)}. Name the raster band of '
                'each channel in order with --bands (numbers from 1 or descriptions)'
            )
            raise ValueError(msg)
    return indexes


def map_image(
    task: 'MultiModalTask',
    modality: str,
    raster: str,
    output: str,
    bands: Sequence[str] | None = None,
    tile_size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = 'cpu',
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Predict a raster tile by tile with an image modality ((C, H, W) samples).

    Tiles of the model's patch size (*tile_size*, default the recorded sample size) are read with
    rasterio windows along rows of tiles (the last tile of a row and the last row flush with the
    raster's edge, so they overlap the previous ones), predicted in batches on the device, and each
    tile's prediction fills its pixels (where tiles overlap, the later one). The raster's nodata
    value is missing (NaN, handled as in training); an all-missing tile is nodata in the map.

    Args:
        task: A task with recorded training inputs describing *modality*.
        modality: An image modality.
        raster: The GeoTIFF.
        output: The map GeoTIFF to write (:func:`~torchgeo_colearn.deploy.rasters.output_bands`; same size, CRS and transform).
        bands: The raster band of each channel (see :func:`_raster_band_indexes`).
        tile_size: Tile height and width in pixels; default the training patch size.
        batch_size: Tiles per forward pass.
        device: Where the model runs.
        stream: Where the progress goes, default standard error.

    Returns:
        ``{'pixels', 'nodata_pixels', 'tiles', 'windows', 'seconds', 'bands'}``.

    Raises:
        ValueError: If the modality is not an image, no tile size is known, or the bands do not
            match.
    """
    record = require_training_inputs(task)
    info = _modality_info(record.modalities, modality)
    if len(info.shape) != 3:
        msg = (
            f'modality {modality!r} has samples of shape {info.shape}, not (C, H, W) images; '
            'time series are mapped from exports in the CropHarvest layout'
        )
        raise ValueError(msg)
    size = tile_size if tile_size is not None else info.shape[1]
    if size is None or (tile_size is None and info.shape[2] != size):
        msg = (
            f'modality {modality!r} has samples of shape {info.shape}: give a square tile size '
            'with tile_size'
        )
        raise ValueError(msg)
    model = RawInputModel(task, modality).to(device).eval()
    names = output_bands(task, record.classes)
    with rasterio.open(raster) as src:
        indexes = _raster_band_indexes(src.descriptions, modality, info, bands)
        profile = map_profile(dict(src.profile), len(names))
        rows = tile_offsets(src.height, size)
        columns = tile_offsets(src.width, size)
        progress = WindowProgress(len(rows), stream)
        start = time.perf_counter()
        nodata = 0
        with rasterio.open(output, 'w', **profile) as dst:
            describe_map(dst, task, modality, names, record.classes, raster)
            for row, end in zip(rows, [*rows[1:], src.height]):
                strip = Window(0, row, src.width, size)
                values = src.read(indexes, window=strip, masked=True)
                values = values.astype(np.float32).filled(np.nan)
                tiles = np.stack([values[:, :, c : c + size] for c in columns])
                empty = np.isnan(tiles).all((1, 2, 3))
                predicted = np.full((len(columns), len(names)), np.nan, np.float32)
                if (~empty).any():
                    predicted[~empty] = predict_samples(
                        task, model, tiles[~empty], batch_size, torch.device(device)
                    )
                out = np.empty((len(names), size, src.width), np.float32)
                for column, value in zip(columns, predicted):
                    out[:, :, column : column + size] = value[:, None, None]
                dst.write(out, window=strip)
                # the rows that the next strip does not overwrite
                nodata += int(np.isnan(out[0, : min(end - row, size)]).sum())
                progress.advance(size * src.width)
        progress.close()
    return {
        'pixels': profile['height'] * profile['width'],
        'nodata_pixels': nodata,
        'tiles': len(rows) * len(columns),
        'windows': len(rows),
        'seconds': time.perf_counter() - start,
        'bands': names,
    }


def layout_of(
    raster: str, info: ModalityInfo | None
) -> Literal['cropharvest', 'image']:
    """Tell how to map a raster: as a CropHarvest export, or tile by tile for images.

    Args:
        raster: The GeoTIFF.
        info: The recorded description of the modality, if any.

    Returns:
        ``'cropharvest'`` if its band descriptions are those of an export, else ``'image'`` if the
        modality is an image.

    Raises:
        ValueError: If neither applies.
    """
    with rasterio.open(raster) as src:
        descriptions = src.descriptions
    if tuple(descriptions) == export_band_names():
        return 'cropharvest'
    if info is not None and len(info.shape) == 3:
        return 'image'
    msg = (
        f'{raster} is not in the CropHarvest export layout (bands {", ".join(export_band_names()[:3])}, '
        f'..., slope), and the modality is not an image to map tile by tile'
    )
    raise ValueError(msg)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``colearn map``: predict a GeoTIFF with one modality of a checkpoint.

    Args:
        argv: Arguments after ``map``; see ``colearn map --help``.

    Returns:
        The summary of the map.
    """
    parser = checkpoint_parser(
        'colearn map',
        (
            'Predict every pixel of a GeoTIFF with one modality of a trained task and write a '
            'GeoTIFF of the same size, CRS and transform: the predicted class (or value) and, for '
            'classification, the probability of every class; NaN where the input is missing. '
            'Exports in the CropHarvest / Earth Engine layout are mapped pixel by pixel (time '
            'series), other rasters tile by tile with image modalities. See docs/deploy.md.'
        ),
        'the modality to predict from',
        'the map GeoTIFF to write',
    )
    parser.add_argument('--raster', required=True, help='the input GeoTIFF')
    parser.add_argument(
        '--layout',
        default='auto',
        choices=get_args(MapLayout),
        help='cropharvest: a CropHarvest export, per pixel; image: tiles; auto: from the bands',
    )
    parser.add_argument(
        '--bands',
        nargs='+',
        help=(
            'image layout: the raster band of each channel, in the order of the training bands '
            '(numbers from 1 or band descriptions); default: the training band names'
        ),
    )
    parser.add_argument(
        '--tile_size',
        type=int,
        help='image layout: tile size, default the training patch size',
    )
    parser.add_argument(
        '--window_size',
        type=int,
        default=256,
        help='cropharvest layout: window size in pixels',
    )
    parser.add_argument(
        '--batch_size',
        type=int,
        default=4096,
        help='pixels (or tiles) per forward pass',
    )
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1, ...')
    args = parser.parse_args(argv)
    task = load_task(args.ckpt_path, args.device)
    info = require_training_inputs(task).modalities.get(args.modality)
    layout = layout_of(args.raster, info) if args.layout == 'auto' else args.layout
    match layout:
        case 'cropharvest':
            summary = map_cropharvest_export(
                task,
                args.modality,
                args.raster,
                args.output,
                args.window_size,
                args.batch_size,
                args.device,
            )
        case 'image':
            summary = map_image(
                task,
                args.modality,
                args.raster,
                args.output,
                args.bands,
                args.tile_size,
                args.batch_size,
                args.device,
            )
    rate = summary['pixels'] / max(summary['seconds'], 1e-9)
    print(
        f'Wrote {args.output}: {summary["pixels"]:,} pixels ({summary["nodata_pixels"]:,} nodata) '
        f'in {summary["seconds"]:.1f} s ({rate:,.0f} pixels/s); bands {", ".join(summary["bands"])}'
    )
    return summary
