# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest

from torchgeo_colearn.modality_info import (
    ModalityInfo,
    shape_fits,
    unnamed_modality_info,
)


def test_description() -> None:
    info = ModalityInfo((None, 2, 6, 6), ('VV', 'VH'), ('dB', 'dB'), 'acquisitions')
    assert info.bands == ('VV', 'VH') and info.channels == 2
    assert info.accepts((5, 2, 6, 6)) and info.accepts((9, 2, 6, 6))
    assert not info.accepts((5, 3, 6, 6)) and not info.accepts((2, 6, 6))
    assert info.describe('s1') == (
        'image_s1: (B, *, 2, 6, 6) raw values, bands VV [dB], VH [dB]; time steps: acquisitions'
    )
    assert info.describe('s1', (4, 2, 6, 6)).startswith('image_s1: (B, 4, 2, 6, 6)')
    assert ModalityInfo.from_json(info.to_json()) == info


def test_bands_must_fit_the_channels() -> None:
    with pytest.raises(ValueError, match='3 bands'):
        ModalityInfo((12, 2), ('VV', 'VH', 'VV/VH'), ('dB', 'dB', '1'))
    with pytest.raises(ValueError, match='2 units'):
        ModalityInfo((3,), ('a', 'b', 'c'), ('1', '1'))
    with pytest.raises(ValueError, match='1 to 4 dimensions'):
        ModalityInfo((), (), ())


def test_unnamed() -> None:
    info = unnamed_modality_info((4, 8, 8))
    assert info.bands == ('band_0', 'band_1', 'band_2', 'band_3')
    assert info.units == ('unknown',) * 4 and info.time_steps is None
    with pytest.raises(ValueError, match='fixed size'):
        unnamed_modality_info((12, None))


def test_shape_fits() -> None:
    assert shape_fits((None, 2), (7, 2))
    assert not shape_fits((None, 2), (7, 3))
    assert not shape_fits((2,), (2, 1))
