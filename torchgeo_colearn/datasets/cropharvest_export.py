# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""CropHarvest from its raw Google Earth Engine exports: labelled pixels and whole regions."""

import glob
import hashlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import rasterio.warp
import torch
from rasterio.crs import CRS
from rasterio.windows import Window
from torch import Tensor
from torchgeo.datasets import CropHarvest, DatasetNotFoundError
from torchgeo.datasets.utils import Path

from .cropharvest import _CACHE_PREFIX, CropHarvestMultiModal
from .cropharvest_layout import NUM_TIMESTEPS

#: Bands of each monthly step of an export, in file order (cropharvest's ``DYNAMIC_BANDS``):
#: Sentinel-1, Sentinel-2 with B1 and B10, ERA5.
DYNAMIC_BANDS = (
    'VV',
    'VH',
    'B1',
    'B2',
    'B3',
    'B4',
    'B5',
    'B6',
    'B7',
    'B8',
    'B8A',
    'B9',
    'B10',
    'B11',
    'B12',
    'temperature_2m',
    'total_precipitation',
)

#: Bands after the last step, constant in time (SRTM; cropharvest's ``STATIC_BANDS``).
STATIC_BANDS = ('elevation', 'slope')

#: The bands of one step as CropHarvest assembles them before the conversion.
RAW_BANDS = DYNAMIC_BANDS + STATIC_BANDS

#: Bands CropHarvest drops (cropharvest's ``REMOVED_BANDS``).
REMOVED_BANDS = ('B1', 'B10')

#: The two bands of CropHarvest's "NDVI". Its Engineer looks up B8 and B4 in the final 18-band list
#: (positions 8 and 4) but indexes the raw 19-band array with them, where positions 8 and 4 hold B7
#: and B3: the index in every CropHarvest array is (B7 - B3) / (B7 + B3).
NDVI_BANDS = (
    RAW_BANDS[CropHarvest.all_bands.index('B8')],
    RAW_BANDS[CropHarvest.all_bands.index('B4')],
)


def export_band_names(num_timesteps: int = NUM_TIMESTEPS) -> tuple[str, ...]:
    """Return the band descriptions of an export, in file order.

    Args:
        num_timesteps: Number of monthly steps.

    Returns:
        ``VV, VH, B1, ..., total_precipitation`` for the first step, the same names with the suffix
        ``_<step>`` for the next ones (``VV_1``, ...), then ``elevation, slope``.
    """
    names = [
        band if step == 0 else f'{band}_{step}'
        for step in range(num_timesteps)
        for band in DYNAMIC_BANDS
    ]
    return (*names, *STATIC_BANDS)


def to_cropharvest_arrays(
    raw: np.ndarray, average_slope: float
) -> tuple[np.ndarray, np.ndarray]:
    """Turn raw export pixels into CropHarvest arrays, as cropharvest's ``Engineer`` does.

    For each pixel (every leading index), the steps of :meth:`Engineer.process_single_file`:

    1. the exporter's "NDVI" from the raw bands, (B7 - B3) / (B7 + B3) (:data:`NDVI_BANDS`), 0 where
       the sum is not positive or a band is missing, appended as the last band;
    2. B1 and B10 dropped;
    3. missing values (NaN) filled with the band's mean over the steps of the pixel; a band missing
       at every step leaves the pixel unusable (CropHarvest skips such a label), except when it is
       the only such band and it is the slope, which then takes *average_slope*.

    Args:
        raw: Pixels of shape (..., T, 19), bands in the order of :data:`RAW_BANDS`.
        average_slope: Mean slope of the whole export (NaN-aware), CropHarvest's fallback.

    Returns:
        The arrays, shape (..., T, 18), float64, bands in the order of
        :attr:`torchgeo.datasets.CropHarvest.all_bands`, and a bool mask of shape (...) that is False
        for the pixels CropHarvest would skip (their missing values stay NaN).

    Raises:
        ValueError: If the last axis is not the 19 raw bands.
    """
    if raw.shape[-1] != len(RAW_BANDS):
        msg = f'raw pixels must have {len(RAW_BANDS)} bands {RAW_BANDS}, got shape {raw.shape}'
        raise ValueError(msg)
    raw = raw.astype(np.float64)
    first, second = (raw[..., RAW_BANDS.index(b)] for b in NDVI_BANDS)
    total = first + second
    with np.errstate(divide='ignore', invalid='ignore'):
        ndvi = np.where(total > 0, (first - second) / total, 0.0)
    keep = [i for i, band in enumerate(RAW_BANDS) if band not in REMOVED_BANDS]
    arrays = np.concatenate([raw[..., keep], ndvi[..., None]], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # mean of an all-NaN band
        mean = np.nanmean(arrays, axis=-2)
    missing = np.isnan(mean)
    slope = CropHarvest.all_bands.index('slope')
    only_slope = (missing.sum(-1) == 1) & missing[..., slope]
    mean[..., slope] = np.where(only_slope, average_slope, mean[..., slope])
    valid = ~np.isnan(mean).any(-1)
    filled = np.where(np.isnan(arrays), mean[..., None, :], arrays)
    return filled, valid


class CropHarvestExport:
    """One raw CropHarvest export: a GeoTIFF of monthly steps of 17 bands plus 2 static bands.

    CropHarvest's exporter (``cropharvest.eo.EarthEngineExporter``) writes, for a box around each
    label (or any region), one GeoTIFF with the bands of :func:`export_band_names`: 12 monthly steps
    of Sentinel-1 (VV, VH in dB), Sentinel-2 L1C (B1 to B12 with B8A, reflectance x 10^4) and ERA5
    (temperature_2m in K, total_precipitation in m), then the SRTM elevation (m) and slope (degrees);
    206 bands. The file names are ``<index>-<dataset>_<start>_<end>.tif``.

    :meth:`read_pixel` gives the (12, 18) array of the pixel nearest to a label point, the one
    CropHarvest stores in ``features/arrays/<index>_<dataset>.h5``; :meth:`read` converts every pixel
    of a window the same way, for predicting maps of whole regions (:meth:`windows` tiles the file).
    """

    def __init__(self, path: Path, num_timesteps: int = NUM_TIMESTEPS) -> None:
        """Open an export and check its layout.

        Args:
            path: Path of the GeoTIFF.
            num_timesteps: Number of monthly steps.

        Raises:
            OSError: If the file cannot be read.
            ValueError: If the band count or a band name differs from :func:`export_band_names`, or
                the grid is rotated.
        """
        self.path = os.fspath(path)
        self.num_timesteps = num_timesteps
        try:
            with rasterio.open(self.path) as src:
                descriptions = src.descriptions
                self.height, self.width = src.height, src.width
                self.transform = src.transform
                self.crs: CRS | None = src.crs
        except rasterio.errors.RasterioError as error:
            msg = f'cannot read CropHarvest export {self.path}: {error}'
            raise OSError(msg) from error
        expected = export_band_names(num_timesteps)
        if len(descriptions) != len(expected):
            msg = (
                f'{self.path} has {len(descriptions)} bands, expected {len(expected)} '
                f'({num_timesteps} steps x {len(DYNAMIC_BANDS)} bands + {len(STATIC_BANDS)} static)'
            )
            raise ValueError(msg)
        for number, (found, name) in enumerate(zip(descriptions, expected), 1):
            if found != name:
                msg = (
                    f'{self.path}: band {number} is named {found!r}, expected {name!r} '
                    f'(the CropHarvest export layout: {", ".join(expected[:4])}, ...)'
                )
                raise ValueError(msg)
        if self.transform.b != 0 or self.transform.d != 0:
            msg = f'{self.path}: rotated grids are not supported (transform {self.transform})'
            raise ValueError(msg)

    @property
    def shape(self) -> tuple[int, int]:
        """Height and width of the export in pixels.

        Returns:
            (H, W).
        """
        return self.height, self.width

    @cached_property
    def average_slope(self) -> float:
        """Mean slope over the whole export, NaN-aware: CropHarvest's fill value for the slope.

        Returns:
            The mean slope in degrees (NaN if the slope is missing everywhere).
        """
        with rasterio.open(self.path) as src:
            slope = src.read(src.count).astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            return float(np.nanmean(slope))

    def centres(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the coordinates of the pixel centres of a window, in the file's CRS.

        Args:
            window: Part of the export; the whole file by default.

        Returns:
            x (W,) and y (H,) of the column and row centres (longitude and latitude for EPSG:4326).
        """
        window = window or Window(0, 0, self.width, self.height)
        columns = np.arange(window.col_off, window.col_off + window.width) + 0.5
        rows = np.arange(window.row_off, window.row_off + window.height) + 0.5
        x = self.transform.c + columns * self.transform.a
        y = self.transform.f + rows * self.transform.e
        return x, y

    def index(self, lat: float, lon: float) -> tuple[int, int]:
        """Find the pixel nearest to a point, as CropHarvest does.

        Like cropharvest's ``Engineer.find_nearest``, the column is the one whose centre is nearest to
        the point's x and the row the one whose centre is nearest to its y.

        Args:
            lat: Latitude in degrees.
            lon: Longitude in degrees.

        Returns:
            (row, column) of the pixel.

        Raises:
            ValueError: If the point is not finite or lies outside the export.
        """
        if not (np.isfinite(lat) and np.isfinite(lon)):
            msg = f'{self.path}: the label point ({lat}, {lon}) is not finite'
            raise ValueError(msg)
        x, y = lon, lat
        if self.crs is not None and self.crs != CRS.from_epsg(4326):
            xs, ys = rasterio.warp.transform(
                CRS.from_epsg(4326), self.crs, [lon], [lat]
            )
            x, y = xs[0], ys[0]
        column = (x - self.transform.c) / self.transform.a
        row = (y - self.transform.f) / self.transform.e
        if not (0 <= column <= self.width and 0 <= row <= self.height):
            msg = (
                f'{self.path}: the label point (lat {lat}, lon {lon}) lies outside the export '
                f'({self.height} x {self.width} pixels)'
            )
            raise ValueError(msg)
        xs_centre, ys_centre = self.centres()
        return int(np.abs(ys_centre - y).argmin()), int(np.abs(xs_centre - x).argmin())

    def read_raw(self, window: Window | None = None) -> np.ndarray:
        """Read the bands of a window, split into steps, with the static bands repeated.

        Args:
            window: Part of the export; the whole file by default.

        Returns:
            float64 pixels of shape (H, W, T, 19), bands in the order of :data:`RAW_BANDS`.
        """
        with rasterio.open(self.path) as src:
            data = src.read(window=window).astype(np.float64)
        steps, dynamic = self.num_timesteps, len(DYNAMIC_BANDS)
        height, width = data.shape[1:]
        series = data[: steps * dynamic].reshape(steps, dynamic, height, width)
        static = np.broadcast_to(
            data[steps * dynamic :], (steps, len(STATIC_BANDS), height, width)
        )
        return np.concatenate([series, static], axis=1).transpose(2, 3, 0, 1)

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Convert every pixel of a window into a CropHarvest array.

        Each pixel is converted as a labelled pixel would be (:func:`to_cropharvest_arrays`, with the
        mean slope of the whole file as fallback).

        Args:
            window: Part of the export; the whole file by default.

        Returns:
            The arrays, (H, W, T, 18) float64 in the order of
            :attr:`torchgeo.datasets.CropHarvest.all_bands`, and the (H, W) bool mask of the pixels
            CropHarvest would keep (the others still hold NaN).
        """
        return to_cropharvest_arrays(self.read_raw(window), self.average_slope)

    def read_pixel(self, lat: float, lon: float) -> np.ndarray:
        """Return the CropHarvest array of the pixel nearest to a label point.

        Args:
            lat: Latitude of the label in degrees.
            lon: Longitude of the label in degrees.

        Returns:
            The (T, 18) float64 array that CropHarvest stores for this label.

        Raises:
            ValueError: If the point lies outside the export, or CropHarvest would skip the pixel
                because a band is missing at every step.
        """
        row, column = self.index(lat, lon)
        raw = self.read_raw(Window(column, row, 1, 1))[0, 0]
        array, valid = to_cropharvest_arrays(raw, self.average_slope)
        if not valid:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', RuntimeWarning)
                empty = np.isnan(np.nanmean(array, axis=0))
            bands = [b for b, e in zip(CropHarvest.all_bands, empty) if e]
            msg = (
                f'{self.path}: pixel ({row}, {column}) nearest to the label point has no value of '
                f'{bands} at any step; CropHarvest skips such a label'
            )
            raise ValueError(msg)
        return array

    def windows(self, size: int = 256) -> Iterator[Window]:
        """Tile the export into windows, row by row.

        Args:
            size: Height and width of the windows in pixels (the last row and column are smaller).

        Yields:
            Windows covering every pixel once.

        Raises:
            ValueError: If *size* is not positive.
        """
        if size < 1:
            msg = f'size must be at least 1 pixel, got {size}'
            raise ValueError(msg)
        for row in range(0, self.height, size):
            for column in range(0, self.width, size):
                yield Window(
                    column,
                    row,
                    min(size, self.width - column),
                    min(size, self.height - row),
                )


class _ExportsNotFoundError(DatasetNotFoundError):
    """Raised when the labels or the exports are missing, naming what."""

    def __init__(self, message: str) -> None:
        FileNotFoundError.__init__(self, message)


class CropHarvestExports(CropHarvestMultiModal):
    """CropHarvest samples made from a folder of raw Earth Engine exports and a labels file.

    The labels file is a GeoJSON FeatureCollection like CropHarvest's ``labels.geojson`` (rows with
    ``index``, ``dataset``, ``lat``, ``lon``, ``is_crop``, ``classification_label``, ``is_test``);
    each export ``<index>-<dataset>_<start>_<end>.tif`` (:class:`CropHarvestExport`) is paired with
    its row, and its sample is the (12, 18) array of the pixel nearest to the row's point, computed as
    CropHarvest's pipeline computes the arrays of its ``features/arrays/*.h5`` files. Tasks,
    modalities, sample keys and ids (``<index>_<dataset>``) are those of
    :class:`~torchgeo_colearn.datasets.cropharvest.CropHarvestMultiModal`, so a model trained on the
    published arrays reads these samples.

    :meth:`to_tensor_dataset` caches the arrays under *root* (keyed on the files and label points).
    """

    #: cropharvest's export file name, ``<index>-<dataset>[_<start>_<end>].tif``.
    array_glob = '*.tif'
    array_name = re.compile(r'^(\d+)-([^_]+)(?:_.*)?\.tif$')
    array_name_format = 'exports must be named <index>-<dataset>_<start>_<end>.tif'

    def __init__(
        self,
        root: Path = 'data',
        labels: str = 'labels.geojson',
        exports: str = '.',
        **kwargs: Any,
    ) -> None:
        """Initialize a new CropHarvestExports instance.

        Args:
            root: Directory holding the labels file and the exports folder.
            labels: The labels file, relative to *root*.
            exports: The folder of the ``.tif`` exports, relative to *root*.
            **kwargs: The task and modalities of
                :class:`~torchgeo_colearn.datasets.cropharvest.CropHarvestMultiModal` (``task``,
                ``modalities``, ``modality_groups``, ``include_test``, ``transforms``).

        Raises:
            DatasetNotFoundError: If the labels file or the exports are missing.
            ValueError: If an option is invalid, an export name or a label row is malformed, or no
                sample is left.
        """
        self.labels_file = labels
        self.exports_dir = exports
        self._rows: dict[str, Mapping[str, Any]] = {}
        super().__init__(root, **kwargs)

    @property
    def labels_path(self) -> str:
        """Path of the labels file.

        Returns:
            *labels* under *root*.
        """
        return os.path.join(self.root, self.labels_file)

    @property
    def arrays_dir(self) -> str:
        """Directory of the exports.

        Returns:
            *exports* under *root*.
        """
        return os.path.normpath(os.path.join(self.root, self.exports_dir))

    def _verify(self) -> None:
        """Check that the labels file and at least one export exist.

        Raises:
            DatasetNotFoundError: If either is missing.
        """
        if not os.path.isfile(self.labels_path):
            msg = f'CropHarvest labels file not found: {self.labels_path}'
            raise _ExportsNotFoundError(msg)
        if not glob.glob(os.path.join(self.arrays_dir, self.array_glob)):
            msg = f'no CropHarvest export (*.tif) in {self.arrays_dir}'
            raise _ExportsNotFoundError(msg)

    def _match_label_rows(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """Pair every export with its label row and remember the rows.

        Returns:
            (file, properties) of every export that has a label row, in file order.
        """
        labelled = super()._match_label_rows()
        self._rows = {file['chip']: properties for file, properties in labelled}
        return labelled

    def _load_array(self, path: Path) -> Tensor:
        """Compute the (12, 18) array of an export at its label point.

        Args:
            path: Path of the export.

        Returns:
            The float32 array, shape (12, 18).

        Raises:
            ValueError: If the label row has no point, the point lies outside the export or the
                pixel is unusable (see :meth:`CropHarvestExport.read_pixel`).
        """
        properties = self._rows[os.fspath(path)]
        lat, lon = properties.get('lat'), properties.get('lon')
        if lat is None or lon is None:
            msg = f'{self.labels_path}: the row of {path} has no lat / lon'
            raise ValueError(msg)
        array = CropHarvestExport(path).read_pixel(float(lat), float(lon))
        return torch.from_numpy(array.astype(np.float32))

    def cache_path(self) -> str:
        """Return the cache file of the arrays, keyed on the exports and their label points.

        Returns:
            ``root/colearn_cache_<hash>.pt``.
        """
        digest = hashlib.sha256(os.path.basename(super().cache_path()).encode())
        for file, properties in self._labelled:
            point = f'{properties.get("lat")!r} {properties.get("lon")!r}'
            digest.update(f'\n{os.path.basename(file["chip"])} {point}'.encode())
        return os.path.join(self.root, f'{_CACHE_PREFIX}{digest.hexdigest()[:16]}.pt')
