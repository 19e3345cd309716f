# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The Sentinel time series of TreeSatAI-Time-Series: the ``sentinel-ts/{name}_{year}.h5`` files."""

import re
from collections.abc import Mapping
from datetime import datetime

import h5py
import numpy as np
import torch
from torch import Tensor

from ..batch import doy_key, image_key, valid_key

#: Height and width of the Sentinel patches (60 m at 10 m).
TIME_SERIES_SIZE = (6, 6)

#: A time-series file name: ``{patch name}_{year}.h5``.
H5_NAME = re.compile(r'^(?P<name>.+)_(?P<year>\d{4})\.h5$')

#: Sensing start of a Sentinel product name, e.g. ``S2A_MSIL2A_20170113T103401_N0204_...``.
_PRODUCT_DATE = re.compile(r'(?<!\d)(\d{8})T\d{6}')


def read_time_series(
    path: str,
    series: Mapping[str, tuple[str, int]],
    s2_masks: tuple[str, int] | None = None,
) -> dict[str, Tensor]:
    """Read time series of a patch.

    Args:
        path: HDF5 path.
        series: Sensor mapped to the prefix of its HDF5 datasets (``<prefix>-data`` and
            ``<prefix>-products``) and its number of channels.
        s2_masks: The dataset of the masks appended to the channels of ``s2`` and its number of
            channels, or None.

    Returns:
        ``image_<sensor>`` (T, C, 6, 6) float32, ``valid_<sensor>`` (T,) bool and ``doy_<sensor>``
        (T,) int64 for each sensor.

    Raises:
        OSError: If the file cannot be read.
        KeyError: If a dataset is missing.
        ValueError: If an array has an unexpected shape or a product name has no date.
    """
    sample: dict[str, Tensor] = {}
    try:
        with h5py.File(path, 'r') as file:
            for sensor, (prefix, channels) in series.items():
                data = _read_h5(file, path, f'{prefix}-data', channels)
                products = _read_h5(file, path, f'{prefix}-products')
                if products.shape != data.shape[:1]:
                    msg = f'{path}: {prefix}-products has shape {products.shape}, expected ({len(data)},)'
                    raise ValueError(msg)
                if sensor == 's2' and s2_masks is not None:
                    masks = _read_h5(file, path, *s2_masks)
                    if len(masks) != len(data):
                        msg = f'{path}: {s2_masks[0]} has {len(masks)} time steps, {prefix}-data {len(data)}'
                        raise ValueError(msg)
                    data = np.concatenate(
                        [data.astype(np.float32), masks.astype(np.float32)], axis=1
                    )
                doy = [_day_of_year(p, path, f'{prefix}-products') for p in products]
                sample[image_key(sensor)] = torch.from_numpy(data.astype(np.float32))
                sample[valid_key(sensor)] = torch.ones(len(data), dtype=torch.bool)
                sample[doy_key(sensor)] = torch.tensor(doy, dtype=torch.int64)
    except OSError as err:
        msg = f'cannot read time series {path}: {err}'
        raise OSError(msg) from err
    return sample


def _read_h5(
    file: h5py.File, path: str, key: str, channels: int | None = None
) -> np.ndarray:
    """Read a dataset of a time-series file and check its shape.

    Args:
        file: Open HDF5 file.
        path: Its path, for the error messages.
        key: Dataset name.
        channels: Expected channels of a (T, C, 6, 6) array; None for a (T,) product list.

    Returns:
        The array as stored.

    Raises:
        KeyError: If the dataset is missing.
        ValueError: If the shape is unexpected.
    """
    if key not in file:
        msg = f'{path} has no dataset {key!r} (it has {sorted(file)})'
        raise KeyError(msg)
    array: np.ndarray = file[key][()]
    size = TIME_SERIES_SIZE
    if channels is None:
        expected = array.ndim == 1
        shape = '(T,)'
    else:
        expected = array.ndim == 4 and array.shape[1:] == (channels, *size)
        shape = f'(T, {channels}, {size[0]}, {size[1]})'
    if not expected:
        msg = f'{path}: dataset {key!r} has shape {array.shape}, expected {shape}'
        raise ValueError(msg)
    return array


def _day_of_year(product: bytes | str, path: str, key: str) -> int:
    """Read the day of year of the sensing start from a Sentinel product name.

    Args:
        product: Product name, e.g. ``S1A_IW_GRDH_1SDV_20170105T053409_...``.
        path: File it comes from, for the error message.
        key: Dataset it comes from, for the error message.

    Returns:
        Day of year, 1 to 366.

    Raises:
        ValueError: If the name holds no valid YYYYMMDDThhmmss date.
    """
    text = product.decode() if isinstance(product, bytes) else str(product)
    match = _PRODUCT_DATE.search(text)
    try:
        if match is None:
            raise ValueError('no YYYYMMDDThhmmss sensing time')
        return datetime.strptime(match[1], '%Y%m%d').timetuple().tm_yday
    except ValueError as err:
        msg = f'{path}: product name {text!r} in {key!r} has no valid date: {err}'
        raise ValueError(msg) from err
