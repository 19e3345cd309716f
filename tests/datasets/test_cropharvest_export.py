# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from torchgeo.datasets import CropHarvest, DatasetNotFoundError

from torchgeo_colearn.datasets.cropharvest_export import (
    DYNAMIC_BANDS,
    NDVI_BANDS,
    REMOVED_BANDS,
    STATIC_BANDS,
    CropHarvestExport,
    CropHarvestExports,
    export_band_names,
    to_cropharvest_arrays,
)

from ..fakes import FAKE_DATA, REAL_DATA

ROOT = os.path.join(FAKE_DATA, 'cropharvest_export')
KENYA = os.path.join(ROOT, '3-kenya_2018-02-06_2019-02-01.tif')
TOGO_EVAL = os.path.join(ROOT, '12-togo-eval_2019-02-06_2020-02-01.tif')
REAL = os.path.join(REAL_DATA, 'cropharvest_export')
REAL_TIF = os.path.join(REAL, '98-togo_2019-02-06_2020-02-01.tif')

pytestmark = pytest.mark.filterwarnings(
    'ignore:.*have no array.*:UserWarning',
    'ignore:cannot write the CropHarvest cache:UserWarning',
)


def label_point(name: str, root: str = ROOT) -> tuple[float, float]:
    with open(os.path.join(root, 'labels.geojson')) as f:
        rows = [feature['properties'] for feature in json.load(f)['features']]
    index, dataset = name.split('_')[0].split('-', 1)
    row = next(r for r in rows if r['index'] == int(index) and r['dataset'] == dataset)
    return row['lat'], row['lon']


def independent_array(path: str, row: int, col: int) -> np.ndarray:
    """CropHarvest's (12, 18) array of one pixel, computed from the raw bands by name."""
    with rasterio.open(path) as src:
        names = list(src.descriptions)
        values = src.read()[:, row, col]

    def band(name: str, step: int) -> float:
        return float(values[names.index(name if step == 0 else f'{name}_{step}')])

    kept = [b for b in DYNAMIC_BANDS if b not in ('B1', 'B10')]
    out = np.empty((12, 18))
    for step in range(12):
        out[step, :15] = [band(b, step) for b in kept]
        out[step, 15] = values[names.index('elevation')]
        out[step, 16] = values[names.index('slope')]
        b7, b3 = band('B7', step), band('B3', step)
        out[step, 17] = (b7 - b3) / (b7 + b3) if b7 + b3 > 0 else 0.0  # NaN sum -> 0
    # missing values: the band's mean over the steps of the pixel
    for column in range(18):
        series = out[:, column]
        series[np.isnan(series)] = np.nanmean(series)
    return out


def rewrite(source: str, target: Path, edit: object) -> str:
    """Copy an export, changing its bands and descriptions with edit(data, names)."""
    with rasterio.open(source) as src:
        profile, data, names = src.profile, src.read(), list(src.descriptions)
    data, names = edit(data, names)  # type: ignore[operator]
    profile['count'] = len(data)
    path = str(target / os.path.basename(source))
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(names)
    return path


class TestLayout:
    def test_band_names(self) -> None:
        names = export_band_names()
        assert len(names) == 206
        assert names[:3] == ('VV', 'VH', 'B1') and names[17:19] == ('VV_1', 'VH_1')
        assert names[-3:] == ('total_precipitation_11', 'elevation', 'slope')

    def test_cropharvest_order(self) -> None:
        kept = [b for b in DYNAMIC_BANDS if b not in REMOVED_BANDS]
        assert (*kept, *STATIC_BANDS, 'NDVI') == tuple(CropHarvest.all_bands)
        # the exporter's index quirk: B8 and B4 of the final layout are B7 and B3 of the raw one
        assert NDVI_BANDS == ('B7', 'B3')

    def test_bad_raw_shape(self) -> None:
        with pytest.raises(ValueError, match='raw pixels must have 19 bands'):
            to_cropharvest_arrays(np.zeros((12, 18)), 1.0)


class TestExport:
    def test_pixel_matches_independent_computation(self) -> None:
        export = CropHarvestExport(KENYA)
        lat, lon = label_point(os.path.basename(KENYA))
        assert export.index(lat, lon) == (1, 3)
        array = export.read_pixel(lat, lon)
        assert array.shape == (12, 18) and not np.isnan(array).any()
        assert np.allclose(array, independent_array(KENYA, 1, 3))
        # B7 missing at step 4: the index is 0 there, B7 gets its mean over the other steps
        assert array[4, 17] == 0
        b7 = CropHarvest.all_bands.index('B7')
        assert array[4, b7] == pytest.approx(np.delete(array[:, b7], 4).mean())

    def test_slope_fallback(self) -> None:
        export = CropHarvestExport(TOGO_EVAL)
        lat, lon = label_point(os.path.basename(TOGO_EVAL))
        array = export.read_pixel(lat, lon)
        with rasterio.open(TOGO_EVAL) as src:
            slope = src.read(206)
        assert np.isnan(slope[2, 1])
        assert np.allclose(array[:, 16], np.nanmean(slope))

    def test_whole_raster_and_windows(self) -> None:
        export = CropHarvestExport(KENYA)
        arrays, valid = export.read()
        assert arrays.shape == (4, 5, 12, 18) and valid.all()
        lat, lon = label_point(os.path.basename(KENYA))
        assert np.array_equal(arrays[1, 3], export.read_pixel(lat, lon))
        # the first row has no slope: the file's mean slope
        assert np.allclose(arrays[0, :, :, 16], export.average_slope)
        windows = list(export.windows(3))
        assert len(windows) == 4
        covered = np.zeros((4, 5), dtype=int)
        for window in windows:
            part, _ = export.read(window)
            rows, cols = window.toslices()
            covered[rows, cols] += 1
            assert np.array_equal(part, arrays[rows, cols])
        assert (covered == 1).all()
        x, y = export.centres(Window(1, 2, 2, 1))
        assert x.shape == (2,) and y.shape == (1,)
        assert export.index(float(y[0]), float(x[1])) == (2, 2)

    def test_unusable_pixel(self, tmp_path: Path) -> None:
        def drop_b12(
            data: np.ndarray, names: list[str]
        ) -> tuple[np.ndarray, list[str]]:
            for step in range(12):
                data[names.index('B12' if step == 0 else f'B12_{step}'), 1, 3] = np.nan
            return data, names

        path = rewrite(KENYA, tmp_path, drop_b12)
        export = CropHarvestExport(path)
        with pytest.raises(ValueError, match=r"pixel \(1, 3\).*\['B12'\] at any step"):
            export.read_pixel(*label_point(os.path.basename(KENYA)))
        _, valid = export.read()
        assert not valid[1, 3] and valid.sum() == 19

    def test_bad_band_name(self, tmp_path: Path) -> None:
        def rename(data: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
            names[20] = 'B3'
            return data, names

        path = rewrite(KENYA, tmp_path, rename)
        with pytest.raises(
            ValueError, match=r"band 21 is named 'B3', expected 'B2_1'"
        ) as error:
            CropHarvestExport(path)
        assert path in str(error.value)

    def test_bad_band_count(self, tmp_path: Path) -> None:
        path = rewrite(KENYA, tmp_path, lambda data, names: (data[:-1], names[:-1]))
        with pytest.raises(ValueError, match='has 205 bands, expected 206'):
            CropHarvestExport(path)

    def test_point_outside(self) -> None:
        with pytest.raises(ValueError, match='lies outside the export'):
            CropHarvestExport(KENYA).read_pixel(10.0, 36.2)

    def test_bad_window_size(self) -> None:
        with pytest.raises(ValueError, match='size must be at least 1'):
            list(CropHarvestExport(KENYA).windows(0))


class TestExports:
    def test_binary(self) -> None:
        ds = CropHarvestExports(ROOT)
        assert len(ds) == 1  # the togo-eval row is a test row
        sample = ds[0]
        assert sample['id'] == '3_kenya' and sample['label'] == 1
        array = CropHarvestExport(KENYA).read_pixel(
            *label_point(os.path.basename(KENYA))
        )
        expected = torch.from_numpy(array.astype(np.float32))
        assert torch.equal(sample['image_s1'], expected[:, :2])
        assert torch.equal(sample['image_dem'], expected[0, 15:17])
        assert torch.equal(sample['image_ndvi'][:, 0], expected[:, 17])

    def test_multiclass_with_test_rows(self, tmp_path: Path) -> None:
        root = tmp_path / 'exports'
        shutil.copytree(ROOT, root)
        ds = CropHarvestExports(
            str(root),
            task='multiclass',
            include_test=True,
            modality_groups={'s1': ['s1'], 's2': ['s2', 'ndvi']},
        )
        data = ds.to_tensor_dataset()
        assert data.ids == ['12_togo-eval', '3_kenya']
        assert data.tensors['label'].tolist() == [0, 1]  # non_crop, cereals
        assert data.attribute('dataset').tolist() == ['togo-eval', 'kenya']
        assert data.tensors['image_s2'].shape == (2, 12, 12)
        assert list(root.glob('colearn_cache_*.pt'))
        # the cache is read back
        again = CropHarvestExports(str(root), task='multiclass', include_test=True)
        assert torch.equal(
            again.to_tensor_dataset().tensors['image_s1'], data.tensors['image_s1']
        )

    def test_cache_follows_label_points(self, tmp_path: Path) -> None:
        root = tmp_path / 'exports'
        shutil.copytree(ROOT, root)
        before = CropHarvestExports(str(root))
        labels = root / 'labels.geojson'
        content = json.loads(labels.read_text())
        content['features'][0]['properties']['lon'] -= 2e-4  # two pixels west
        labels.write_text(json.dumps(content))
        after = CropHarvestExports(str(root))
        assert before.cache_path() != after.cache_path()
        assert not torch.equal(
            before.to_tensor_dataset().tensors['image_s1'],
            after.to_tensor_dataset().tensors['image_s1'],
        )

    def test_missing_labels(self, tmp_path: Path) -> None:
        shutil.copy(KENYA, tmp_path)
        with pytest.raises(DatasetNotFoundError, match='labels file not found'):
            CropHarvestExports(str(tmp_path))

    def test_no_exports(self, tmp_path: Path) -> None:
        shutil.copy(os.path.join(ROOT, 'labels.geojson'), tmp_path)
        with pytest.raises(
            DatasetNotFoundError, match=r'no CropHarvest export \(\*\.tif\)'
        ):
            CropHarvestExports(str(tmp_path))

    def test_bad_file_name(self, tmp_path: Path) -> None:
        shutil.copy(os.path.join(ROOT, 'labels.geojson'), tmp_path)
        shutil.copy(KENYA, tmp_path / 'kenya_3.tif')
        with pytest.raises(ValueError, match='must be named <index>-<dataset>'):
            CropHarvestExports(str(tmp_path))

    def test_exports_subfolder(self, tmp_path: Path) -> None:
        shutil.copy(os.path.join(ROOT, 'labels.geojson'), tmp_path / 'rows.geojson')
        (tmp_path / 'tifs').mkdir()
        shutil.copy(KENYA, tmp_path / 'tifs')
        ds = CropHarvestExports(str(tmp_path), labels='rows.geojson', exports='tifs')
        assert len(ds) == 1


@pytest.mark.skipif(
    not os.path.exists(REAL_TIF), reason='real CropHarvest export absent'
)
class TestRealExport:
    def test_pixel(self) -> None:
        export = CropHarvestExport(REAL_TIF)
        lat, lon = label_point(os.path.basename(REAL_TIF), REAL)
        assert export.shape == (17, 17)
        assert export.index(lat, lon) == (8, 8)
        array = export.read_pixel(lat, lon)
        assert np.allclose(array, independent_array(REAL_TIF, 8, 8))
        bands = {name: array[:, i] for i, name in enumerate(CropHarvest.all_bands)}
        # Sentinel-1 in dB
        assert (-30 < bands['VV']).all() and (bands['VV'] < -5).all()
        assert (-35 < bands['VH']).all() and (bands['VH'] < -10).all()
        assert bands['VH'].mean() < bands['VV'].mean()
        # Sentinel-2 L1C reflectance x 10^4 (B9, water vapour, is darker)
        for name in ('B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B8A', 'B11', 'B12'):
            assert (bands[name] > 500).all() and (bands[name] < 10_000).all(), name
        # ERA5 in K and m; SRTM elevation in m and slope in degrees, constant over time
        assert (bands['temperature_2m'] > 280).all() and (
            bands['temperature_2m'] < 320
        ).all()
        assert (bands['total_precipitation'] >= 0).all()
        assert (bands['total_precipitation'] < 0.05).all()
        assert (bands['elevation'] == bands['elevation'][0]).all()
        assert 100 < bands['elevation'][0] < 1000
        assert 0 <= bands['slope'][0] < 90
        b7, b3 = bands['B7'], bands['B3']
        assert np.allclose(bands['NDVI'], (b7 - b3) / (b7 + b3))

    def test_whole_raster(self) -> None:
        export = CropHarvestExport(REAL_TIF)
        arrays, valid = export.read()
        assert arrays.shape == (17, 17, 12, 18) and valid.all()
        # the slope is missing on the edges of the export: CropHarvest's mean slope fills it
        with rasterio.open(REAL_TIF) as src:
            slope = src.read(206)
        edge = np.isnan(slope)
        assert edge.any()
        assert np.allclose(arrays[edge][:, :, 16], np.nanmean(slope))

    def test_dataset(self) -> None:
        ds = CropHarvestExports(REAL)
        assert len(ds) == 1
        sample = ds[0]
        assert sample['id'] == '98_togo' and sample['label'] == 1
        assert sample['image_s2'].shape == (12, 11)
        assert sample['lat'] == pytest.approx(7.71957, abs=1e-5)
