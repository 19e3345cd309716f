# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path

import h5py
import numpy as np
import pytest

from torchgeo_colearn.datasets.treesatai_ts_series import H5_NAME, read_time_series


def write_series(path: Path, products: list[bytes], masks: int = 0) -> str:
    """Write a patch with a 2-band series of len(products) steps, and *masks* mask steps."""
    with h5py.File(path, 'w') as file:
        file['sen-2-data'] = np.ones((len(products), 2, 6, 6), np.int16)
        file['sen-2-products'] = np.array(products)
        if masks:
            file['sen-2-masks'] = np.zeros((masks, 1, 6, 6), np.uint8)
    return str(path)


def test_read_time_series(tmp_path: Path) -> None:
    products = [
        b'S2A_MSIL2A_20170113T103401_N0204',
        b'S2B_MSIL2A_20171231T103401_N0206',
    ]
    path = write_series(tmp_path / 'patch_2017.h5', products, masks=2)
    sample = read_time_series(path, {'s2': ('sen-2', 2)}, ('sen-2-masks', 1))
    assert sample['image_s2'].shape == (2, 3, 6, 6)
    assert sample['valid_s2'].all()
    assert sample['doy_s2'].tolist() == [13, 365]
    assert H5_NAME.match('patch_2017.h5')['year'] == '2017'  # type: ignore[index]


def test_read_time_series_errors(tmp_path: Path) -> None:
    path = write_series(tmp_path / 'a.h5', [b'no date here'])
    with pytest.raises(ValueError, match='has no valid date'):
        read_time_series(path, {'s2': ('sen-2', 2)})
    path = write_series(tmp_path / 'b.h5', [b'S2A_MSIL2A_20170113T103401'], masks=3)
    with pytest.raises(ValueError, match='3 time steps'):
        read_time_series(path, {'s2': ('sen-2', 2)}, ('sen-2-masks', 1))
    with pytest.raises(KeyError, match='sen-1-asc-data'):
        read_time_series(path, {'s1_asc': ('sen-1-asc', 2)})
