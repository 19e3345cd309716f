# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from lightning.pytorch import Trainer
from rasterio.crs import CRS
from rasterio.transform import from_origin

from torchgeo_colearn.datasets.cropharvest_export import (
    DYNAMIC_BANDS,
    CropHarvestExport,
)
from torchgeo_colearn.datasets.cropharvest_layout import split_modalities
from torchgeo_colearn.deploy import load_task
from torchgeo_colearn.deploy.mapping import layout_of, map_cropharvest_export, map_image
from torchgeo_colearn.main import main
from torchgeo_colearn.trainers.colearn import CoLearnTask

from ..data.cropharvest_export.data import write
from .conftest import CROPHARVEST_GROUPS, EXPORTS, KENYA, REAL_TIF, synthetic_task

pytestmark = pytest.mark.filterwarnings('ignore:.*have no.*:UserWarning')


def label_point(path: str) -> tuple[float, float]:
    """The label point of an export, from the labels file next to it."""
    with open(os.path.join(os.path.dirname(path), 'labels.geojson')) as f:
        features = json.load(f)['features']
    index = int(os.path.basename(path).split('-')[0])
    (row,) = [f['properties'] for f in features if f['properties']['index'] == index]
    return float(row['lat']), float(row['lon'])


def check_map(path: str, raster: str, modality: str, checkpoint: str) -> np.ndarray:
    """Check the written map's grid, bands and value ranges, and its label pixel."""
    with rasterio.open(raster) as src, rasterio.open(path) as dst:
        assert dst.crs == src.crs == CRS.from_epsg(4326)
        assert dst.transform == src.transform
        assert (dst.height, dst.width) == (src.height, src.width)
        assert dst.count == 3 and dst.dtypes == ('float32',) * 3
        assert dst.descriptions == ('class', 'probability_non_crop', 'probability_crop')
        assert dst.tags()['modality'] == modality
        assert json.loads(dst.tags()['classes']) == ['non_crop', 'crop']
        values: np.ndarray = dst.read()
    valid = ~np.isnan(values[0])
    assert set(np.unique(values[0][valid])) <= {0.0, 1.0}
    probabilities = values[1:, valid]
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(probabilities.sum(0), 1, atol=1e-6)
    np.testing.assert_array_equal(values[0][valid], probabilities.argmax(0))
    # the label pixel's prediction is the task's prediction for that pixel's series
    export = CropHarvestExport(raster)
    lat, lon = label_point(raster)
    row, column = export.index(lat, lon)
    array = torch.from_numpy(export.read_pixel(lat, lon)).float()
    x = split_modalities(array[None], {modality: CROPHARVEST_GROUPS[modality]})
    expected = load_task(checkpoint).predict_raw({modality: x[f'image_{modality}']})
    np.testing.assert_allclose(values[2, row, column], expected[0].item(), atol=1e-6)
    return values


class TestCropHarvestExport:
    @pytest.mark.parametrize('modality', ['s1', 's2'])
    def test_cli(
        self,
        cropharvest_checkpoint: str,
        modality: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        output = str(tmp_path / 'map.tif')
        summary = main(
            [
                'map',
                '--ckpt_path',
                cropharvest_checkpoint,
                '--modality',
                modality,
                '--raster',
                KENYA,
                '--output',
                output,
                '--window_size',
                '2',
                '--batch_size',
                '3',
            ]
        )
        assert summary is None
        captured = capsys.readouterr()
        assert f'Wrote {output}: 20 pixels (0 nodata)' in captured.out
        # one progress line per tenth of the 6 windows when standard error is not a terminal
        assert captured.err.count('colearn map: ') == 6
        assert 'colearn map: 100% (6/6 windows' in captured.err
        values = check_map(output, KENYA, modality, cropharvest_checkpoint)
        assert not np.isnan(values).any()

    def test_static_modality(self, cropharvest_checkpoint: str, tmp_path: Path) -> None:
        task = load_task(cropharvest_checkpoint)
        output = str(tmp_path / 'dem.tif')
        summary = map_cropharvest_export(
            task, 'dem', KENYA, output, stream=io.StringIO()
        )
        assert summary['windows'] == 1 and summary['nodata_pixels'] == 0
        export = CropHarvestExport(KENYA)
        arrays, _ = export.read()
        dem = torch.from_numpy(arrays[1, 2, 0, [-3, -2]]).float()  # elevation, slope
        expected = task.predict_raw({'dem': dem[None]})
        with rasterio.open(output) as dst:
            np.testing.assert_allclose(dst.read(3)[1, 2], expected[0].item(), atol=1e-6)

    def test_missing_input_is_nodata(
        self, cropharvest_checkpoint: str, tmp_path: Path
    ) -> None:
        raster = str(tmp_path / KENYA.split(os.sep)[-1])
        shutil.copy(KENYA, raster)
        shutil.copy(os.path.join(EXPORTS, 'labels.geojson'), tmp_path)
        with rasterio.open(raster, 'r+') as dst:
            data = dst.read()
            for step in range(12):
                first = step * len(DYNAMIC_BANDS)
                data[first + DYNAMIC_BANDS.index('B4'), 3, 4] = (
                    np.nan
                )  # B4 at every step
            dst.write(data)
        task = load_task(cropharvest_checkpoint)
        s2, s1 = str(tmp_path / 's2.tif'), str(tmp_path / 's1.tif')
        summary = map_cropharvest_export(task, 's2', raster, s2, stream=io.StringIO())
        assert summary['nodata_pixels'] == 1
        map_cropharvest_export(task, 's1', raster, s1, stream=io.StringIO())
        with rasterio.open(s2) as a, rasterio.open(s1) as b:
            assert np.isnan(a.read()[:, 3, 4]).all()
            assert np.isnan(a.read()).sum() == 3
            assert not np.isnan(b.read()).any()  # Sentinel-1 does not need B4

    def test_band_mismatch(self, cropharvest_checkpoint: str, tmp_path: Path) -> None:
        task = load_task(cropharvest_checkpoint)
        record = task.training_inputs
        assert record is not None
        s2 = record.modalities['s2']
        renamed = dataclasses.replace(s2, bands=('B02', *s2.bands[1:]))
        task.training_inputs = dataclasses.replace(
            record, modalities={**record.modalities, 's2': renamed}
        )
        output = str(tmp_path / 'map.tif')
        with pytest.raises(ValueError, match=r"bands \['B02'\] that the CropHarvest"):
            map_cropharvest_export(task, 's2', KENYA, output)
        shorter = dataclasses.replace(s2, shape=(6, 12))
        task.training_inputs = dataclasses.replace(
            record, modalities={**record.modalities, 's2': shorter}
        )
        with pytest.raises(ValueError, match=r'per pixel \(12, C\)'):
            map_cropharvest_export(task, 's2', KENYA, output)
        task.training_inputs = dataclasses.replace(record, modalities={})
        with pytest.raises(ValueError, match='no description of the bands'):
            map_cropharvest_export(task, 's2', KENYA, output)

    @pytest.mark.skipif(not os.path.exists(REAL_TIF), reason='needs ../shared/data')
    def test_real_togo_export(
        self, cropharvest_checkpoint: str, tmp_path: Path
    ) -> None:
        output = str(tmp_path / 'togo.tif')
        main(
            [
                'map',
                '--ckpt_path',
                cropharvest_checkpoint,
                '--modality',
                's2',
                '--raster',
                REAL_TIF,
                '--output',
                output,
            ]
        )
        values = check_map(output, REAL_TIF, 's2', cropharvest_checkpoint)
        assert values.shape == (3, 17, 17) and not np.isnan(values).any()


class TestImage:
    @pytest.fixture
    def raster(self, tmp_path: Path) -> tuple[str, np.ndarray]:
        rng = np.random.default_rng(0)
        data = rng.normal(0, 1, (4, 20, 19)).astype(np.float32)
        data[:, :8, :8] = -9999  # one whole tile is missing
        path = str(tmp_path / 'image.tif')
        write(
            path,
            data,
            [f'channel_{i}' for i in range(4)],
            from_origin(500000, 1000000, 10, 10),
            crs='EPSG:32631',
            nodata=-9999,
        )
        return path, data

    @pytest.fixture
    def task(self, tiny_timm: None) -> CoLearnTask:
        """A task of a series and an image modality (tiny timm backbone)."""
        return synthetic_task(modalities=('s1', 'img'))

    def test_tiles(
        self, raster: tuple[str, np.ndarray], tmp_path: Path, task: CoLearnTask
    ) -> None:
        path, data = raster
        output = str(tmp_path / 'map.tif')
        assert layout_of(path, task.training_inputs.modalities['img']) == 'image'  # type: ignore[union-attr]
        summary = map_image(
            task, 'img', path, output, batch_size=2, stream=io.StringIO()
        )
        assert (
            summary['tiles'] == 9 and summary['windows'] == 3
        )  # offsets 0, 8, 12 by 0, 8, 11
        assert summary['nodata_pixels'] == 64
        with rasterio.open(output) as dst, rasterio.open(path) as src:
            assert (dst.crs, dst.transform, dst.shape) == (
                src.crs,
                src.transform,
                src.shape,
            )
            assert dst.descriptions == (
                'class',
                'probability_0',
                'probability_1',
                'probability_2',
            )
            values = dst.read()
        assert np.isnan(values[:, :8, :8]).all()
        assert (
            not np.isnan(values[:, 8:]).any() and not np.isnan(values[:, :, 8:]).any()
        )
        # (tile row, tile column) and a pixel that only this tile covers
        for row, column, y, x in ((0, 8, 0, 8), (12, 11, 19, 18), (8, 0, 8, 0)):
            tile = torch.from_numpy(data[None, :, row : row + 8, column : column + 8])
            expected = task.predict_raw({'img': tile})[0].numpy()
            np.testing.assert_allclose(values[1:, y, x], expected, atol=1e-6)
        # pixels of overlapping tiles take the later tile
        tile = torch.from_numpy(data[None, :, 12:20, 11:19])
        np.testing.assert_allclose(
            values[1:, 12, 11], task.predict_raw({'img': tile})[0].numpy(), atol=1e-6
        )

    def test_explicit_bands(
        self, raster: tuple[str, np.ndarray], tmp_path: Path, task: CoLearnTask
    ) -> None:
        path, data = raster
        output = str(tmp_path / 'map.tif')
        map_image(
            task,
            'img',
            path,
            output,
            bands=['4', '3', 'channel_1', '1'],
            stream=io.StringIO(),
        )
        tile = torch.from_numpy(data[None, [3, 2, 1, 0], 8:16, 8:16])
        with rasterio.open(output) as dst:
            np.testing.assert_allclose(
                dst.read()[1:, 8, 8],
                task.predict_raw({'img': tile})[0].numpy(),
                atol=1e-6,
            )
        with pytest.raises(ValueError, match="no raster band 'B02'"):
            map_image(task, 'img', path, output, bands=['B02', '2', '3', '4'])
        with pytest.raises(ValueError, match='3 raster bands given for the 4 channels'):
            map_image(task, 'img', path, output, bands=['1', '2', '3'])
        with pytest.raises(ValueError, match='smaller than a 32-pixel tile'):
            map_image(task, 'img', path, output, tile_size=32)

    def test_cli(
        self,
        raster: tuple[str, np.ndarray],
        tmp_path: Path,
        task: CoLearnTask,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        path, data = raster
        trainer = Trainer(logger=False, accelerator='cpu')
        trainer.strategy.connect(task)
        checkpoint = str(tmp_path / 'task.ckpt')
        trainer.save_checkpoint(checkpoint)
        output = str(tmp_path / 'map.tif')
        args = ['--ckpt_path', checkpoint, '--modality', 'img', '--raster', path]
        main(
            [
                'map',
                *args,
                '--output',
                output,
                '--layout',
                'image',
                '--bands',
                '1',
                '2',
                '3',
                '4',
            ]
        )
        assert 'Wrote' in capsys.readouterr().out
        tile = torch.from_numpy(data[None, :, 8:16, 8:16])
        with rasterio.open(output) as dst:
            np.testing.assert_allclose(
                dst.read()[1:, 8, 8],
                load_task(checkpoint).predict_raw({'img': tile})[0].numpy(),
                atol=1e-6,
            )

    def test_not_an_image(self, raster: tuple[str, np.ndarray], tmp_path: Path) -> None:
        path, _ = raster
        task = synthetic_task()
        with pytest.raises(ValueError, match=r'not \(C, H, W\) images'):
            map_image(task, 'dem', path, str(tmp_path / 'map.tif'))
        with pytest.raises(ValueError, match='not in the CropHarvest export layout'):
            layout_of(path, task.training_inputs.modalities['s1'])  # type: ignore[union-attr]
        assert layout_of(KENYA, None) == 'cropharvest'

    def test_free_tile_size(
        self, raster: tuple[str, np.ndarray], tmp_path: Path, task: CoLearnTask
    ) -> None:
        path, _ = raster
        record = task.training_inputs
        assert record is not None
        free = dataclasses.replace(record.modalities['img'], shape=(4, None, None))
        task.training_inputs = dataclasses.replace(
            record, modalities={**record.modalities, 'img': free}
        )
        output = str(tmp_path / 'map.tif')
        with pytest.raises(ValueError, match='give a square tile size'):
            map_image(task, 'img', path, output)
        summary = map_image(
            task, 'img', path, output, tile_size=10, stream=io.StringIO()
        )
        assert summary['tiles'] == 4
