# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_colearn.datasets.presto import (
    AlgaeBlooms,
    FuelMoisture,
    PrestoPixelTimeSeries,
)

from ..fakes import FAKE_DATA, REAL_DATA, cropharvest_shapes

FUEL = os.path.join(FAKE_DATA, 'presto', 'fuel_moisture')
ALGAE = os.path.join(FAKE_DATA, 'presto', 'algae_blooms')
REAL_FUEL = os.path.join(REAL_DATA, 'presto_fuel_moisture')
REAL_ALGAE = os.path.join(REAL_DATA, 'presto_algae_blooms')
#: The modalities of the fuel-moisture data (3 time steps), fake and real.
FUEL_SHAPES = cropharvest_shapes(3)
#: The dataset class of each fake data folder.
DATASETS: dict[str, type[PrestoPixelTimeSeries]] = {
    FUEL: FuelMoisture,
    ALGAE: AlgaeBlooms,
}


def copy(source: str, tmp_path: Path) -> Path:
    target = tmp_path / 'data'
    shutil.copytree(source, target)
    return target


class TestFuelMoisture:
    def test_modalities(self) -> None:
        ds = FuelMoisture(FUEL)
        assert len(ds) == 40
        assert ds.modality_shapes == FUEL_SHAPES
        raw = np.load(os.path.join(FUEL, 's1_s2_era5_srtm.npy'))
        sample = ds[5]
        assert torch.allclose(
            sample['image_s1'], torch.from_numpy(raw[5, :, :2]).float()
        )
        assert torch.allclose(
            sample['image_dem'], torch.from_numpy(raw[5, 0, 15:17]).float()
        )
        assert torch.allclose(
            sample['image_ndvi'][:, 0], torch.from_numpy(raw[5, :, 17]).float()
        )
        assert sample['label'].dtype == torch.float32
        assert sample['site'] == str(np.load(os.path.join(FUEL, 'site.npy'))[5])
        assert sample['id'] == '5'

    def test_groups(self) -> None:
        ds = FuelMoisture(
            FUEL, modality_groups={'s2': ['s2', 'ndvi'], 'topography': ['dem']}
        )
        assert ds.modality_shapes == {'s2': (3, 12), 'topography': (2,)}

    def test_tensor_dataset_carries_site_and_split(self) -> None:
        data = FuelMoisture(FUEL).to_tensor_dataset()
        assert data.attribute('is_test').sum() == 8
        assert len(set(data.attribute('site').tolist())) == 8
        assert 'site' not in data.batch([0, 1])

    def test_regression_only(self) -> None:
        with pytest.raises(ValueError, match=r"task must be one of \('regression',\)"):
            FuelMoisture(FUEL, task='multiclass')


class TestAlgaeBlooms:
    def test_multiclass(self) -> None:
        ds = AlgaeBlooms(ALGAE, task='multiclass')
        target = np.load(os.path.join(ALGAE, 'target.npy'))
        assert ds.tensors['label'].tolist() == (target - 1).tolist()
        assert ds.tensors['label'].dtype == torch.int64
        assert ds[0]['id'] == 'a000'
        assert ds.modality_shapes['s2'] == (12, 11)

    def test_regression(self) -> None:
        ds = AlgaeBlooms(ALGAE, task='regression')
        target = np.load(os.path.join(ALGAE, 'target.npy'))
        assert np.allclose(ds.tensors['label'].numpy(), target)

    def test_generic_class_has_no_classes(self) -> None:
        with pytest.raises(ValueError, match='has no classes'):
            PrestoPixelTimeSeries(ALGAE, task='multiclass')


class TestBadInput:
    def test_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(
            DatasetNotFoundError, match=r's1_s2_era5_srtm\.npy not found'
        ):
            FuelMoisture(str(tmp_path))

    def test_missing_target(self, tmp_path: Path) -> None:
        root = copy(FUEL, tmp_path)
        os.remove(root / 'target.npy')
        with pytest.raises(DatasetNotFoundError, match=r'target\.npy not found'):
            FuelMoisture(str(root))

    @pytest.mark.parametrize(
        'source,name,array,match',
        [
            pytest.param(
                FUEL,
                's1_s2_era5_srtm.npy',
                np.zeros((40, 3, 17)),
                r'shape \(40, 3, 17\), expected \(N, T, 18\)',
                id='band_count',
            ),
            pytest.param(
                ALGAE,
                'target.npy',
                np.ones(29, dtype=np.int64),
                r'target.npy: shape \(29,\), expected \(30,\)',
                id='target_length',
            ),
        ],
    )
    def test_wrong_shape(
        self, source: str, name: str, array: np.ndarray, match: str, tmp_path: Path
    ) -> None:
        root = copy(source, tmp_path)
        np.save(root / name, array)
        with pytest.raises(ValueError, match=match):
            DATASETS[source](str(root))

    @pytest.mark.parametrize(
        'source,name,index,change,match',
        [
            pytest.param(
                FUEL,
                's1_s2_era5_srtm.npy',
                (7, 2, 13),
                lambda value: np.nan,
                'sample 7, step 2, band temperature_2m holds nan',
                id='nan',
            ),
            pytest.param(
                FUEL,
                's1_s2_era5_srtm.npy',
                (3, 1, 16),
                lambda value: value + 2.5,
                r'static band slope of sample 3 varies over time by up to 2\.5',
                id='static_band_varies',
            ),
            pytest.param(
                ALGAE,
                'target.npy',
                4,
                lambda value: 6,
                r'sample 4 has target 6, not one of the classes',
                id='unknown_class',
            ),
            pytest.param(
                FUEL,
                'is_test.npy',
                0,
                lambda value: 1 - value,
                r'sample 0 \(site .*train_test_split.json says',
                id='split_files_disagree',
            ),
            pytest.param(
                ALGAE,
                'uid.npy',
                3,
                lambda value: 'a002',
                "id 'a002' repeats",
                id='repeated_id',
            ),
        ],
    )
    def test_bad_value(
        self,
        source: str,
        name: str,
        index: int | tuple[int, ...],
        change: Callable[[Any], Any],
        match: str,
        tmp_path: Path,
    ) -> None:
        root = copy(source, tmp_path)
        array = np.load(root / name)
        array[index] = change(array[index])
        np.save(root / name, array)
        with pytest.raises(ValueError, match=match):
            DATASETS[source](str(root))


@pytest.mark.skipif(
    not os.path.isdir(REAL_FUEL), reason='real fuel-moisture data absent'
)
def test_real_fuel_moisture() -> None:
    ds = FuelMoisture(REAL_FUEL)
    data = ds.to_tensor_dataset()
    assert len(ds) == 2313
    assert ds.modality_shapes == FUEL_SHAPES
    is_test = data.attribute('is_test')
    assert (int((~is_test).sum()), int(is_test.sum())) == (1578, 735)
    sites = data.attribute('site')
    assert len(set(sites.tolist())) == 150
    assert not set(sites[is_test].tolist()) & set(sites[~is_test].tolist())
    for tensor in ds.tensors.values():
        assert torch.isfinite(tensor).all()
    check_band_ranges(ds)
    label = ds.tensors['label']
    assert 20 < label.min() and label.max() < 400  # % of dry weight
    assert float(label.mean()) == pytest.approx(103.83, abs=0.01)


@pytest.mark.skipif(
    not os.path.isdir(REAL_ALGAE), reason='real algae-bloom data absent'
)
def test_real_algae_blooms() -> None:
    ds = AlgaeBlooms(REAL_ALGAE, task='multiclass')
    data = ds.to_tensor_dataset()
    assert len(ds) == 1122
    assert ds.modality_shapes['s1'] == (12, 2)
    assert ds.modality_shapes['dem'] == (2,)
    is_test = data.attribute('is_test')
    assert (int((~is_test).sum()), int(is_test.sum())) == (777, 345)
    assert torch.bincount(ds.tensors['label']).tolist() == [246, 260, 494, 116, 6]
    assert len(set(ds.ids)) == 1122
    for tensor in ds.tensors.values():
        assert torch.isfinite(tensor).all()
    check_band_ranges(ds)


def check_band_ranges(ds: PrestoPixelTimeSeries) -> None:
    """The band order of the real arrays: each band in the physical range of its sensor and unit."""
    s1, s2 = ds.tensors['image_s1'], ds.tensors['image_s2']
    weather, dem = ds.tensors['image_weather'], ds.tensors['image_dem']
    # Sentinel-1 backscatter in dB: VH always negative, VV negative but for a few bright targets
    vv, vh = s1[..., 0], s1[..., 1]
    assert (vh < 0).all()
    assert torch.quantile(vv.flatten(), 0.99) < 0
    assert -25 < vv.median() < -5 and -30 < vh.median() < -10
    assert (vh.median() < vv.median()).item()
    # Sentinel-2 L1C reflectance x 10^4
    assert s2.min() >= 0 and 12_000 > s2.max() > 5000
    assert 100 < s2.median() < 5000
    # ERA5: 2 m temperature in K, monthly total precipitation in m
    assert 240 < weather[..., 0].min() and weather[..., 0].max() < 320
    assert weather[..., 1].min() >= 0 and weather[..., 1].max() < 0.1
    # SRTM: elevation in m, slope in degrees
    assert dem[:, 0].min() > -100 and dem[:, 0].max() > 1000
    assert dem[:, 1].min() >= 0 and dem[:, 1].max() <= 90
    # the exporter's index is (B7 - B3) / (B7 + B3), except where a band was filled afterwards
    b3, b7 = s2[..., 1].double(), s2[..., 5].double()
    ndvi = ds.tensors['image_ndvi'][..., 0].double()
    matches = torch.isclose(ndvi, (b7 - b3) / (b7 + b3), atol=1e-5)
    assert matches.float().mean() > 0.998
