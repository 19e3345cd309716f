# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_colearn.datasets.lfmc import LFMC
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset

ROOT = os.path.join(os.path.dirname(__file__), '..', 'data', 'lfmc')
CSV = os.path.join(ROOT, 'training_features.csv')
REAL_ROOT = os.path.join(
    os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'lfmc'
)
PAPER_GROUPS = {'s1': ['s1', 's1_ratio'], 'optical': ['optical', 'optical_indices']}
STEPS = ('t-3', 't-2', 't-1', 't')

pytestmark = pytest.mark.filterwarnings('ignore:.*dropped \\d+ row:UserWarning')


def raw_table() -> pd.DataFrame:
    return pd.read_csv(CSV, index_col=0)


def write_edited_csv(
    tmp_path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]
) -> str:
    table = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    edit(table).to_csv(tmp_path / 'training_features.csv', index=False)
    return str(tmp_path)


class TestLFMCCsv:
    def test_dedup_keeps_last_row(self) -> None:
        with pytest.warns(UserWarning, match='dropped 2 row'):
            ds = LFMC(ROOT)
        raw = raw_table()
        assert len(raw) == 40
        assert len(ds) == 38
        assert len(set(ds.ids)) == 38
        assert ds.ids == [str(i) for i in raw.index.unique()]
        position = ds.ids.index('213')
        last = raw.loc[213].iloc[-1]
        sample = ds[position]
        assert sample['lat'] == pytest.approx(last['latitude'])
        assert sample['lon'] == pytest.approx(last['longitude'])
        assert raw.loc[213].iloc[0]['latitude'] != pytest.approx(last['latitude'])

    def test_default_modalities(self) -> None:
        ds = LFMC(ROOT)
        shapes = {m: tuple(ds.tensors[f'image_{m}'].shape[1:]) for m in ds.modalities}
        assert shapes == {
            's1': (4, 2),
            's1_ratio': (4, 1),
            'optical': (4, 5),
            'optical_indices': (4, 3),
            'sar_optical': (4, 16),
            'soil': (3,),
            'dem': (2,),
            'canopy': (1,),
            'landcover': (12,),
        }
        assert all(
            v.dtype == torch.float32
            for k, v in ds.tensors.items()
            if k.startswith('image_')
        )

    def test_values_follow_columns(self) -> None:
        ds = LFMC(ROOT)
        raw = raw_table()
        row = raw.loc[205]
        sample = ds[ds.ids.index('205')]
        expected_s1 = [[row[f'vv({s})'], row[f'vh({s})']] for s in STEPS]
        torch.testing.assert_close(
            sample['image_s1'], torch.tensor(expected_s1, dtype=torch.float32)
        )
        ratios = [
            f'{a}_{b}'
            for a in ('vv', 'vh')
            for b in ('red', 'green', 'blue', 'swir', 'nir', 'ndvi', 'ndwi', 'nirv')
        ]
        assert sample['image_sar_optical'][0].tolist() == pytest.approx(
            [row[f'{r}(t-3)'] for r in ratios], rel=1e-6
        )
        assert sample['image_optical'][3].tolist() == pytest.approx(
            [row[f'{b}(t)'] for b in ('red', 'green', 'blue', 'swir', 'nir')], rel=1e-6
        )
        assert sample['image_soil'].tolist() == [
            row['silt(t)'],
            row['sand(t)'],
            row['clay(t)'],
        ]
        assert sample['image_dem'].tolist() == pytest.approx(
            [row['slope(t)'], row['elevation(t)']]
        )
        assert sample['image_canopy'].tolist() == [row['canopy_height(t)']]
        assert sample['label'].dtype == torch.float32
        assert sample['label'].ndim == 0
        assert sample['label'].item() == pytest.approx(row['percent(t)'])
        assert sample['site'] == row['site']
        assert sample['date'] == row['date']
        assert sample['year'].item() == int(str(row['date'])[:4])
        assert sample['id'] == '205'

    def test_landcover_one_hot(self) -> None:
        ds = LFMC(ROOT)
        raw = raw_table()
        codes = raw[~raw.index.duplicated(keep='last')]['forest_cover(t)'].to_numpy()
        one_hot = ds.tensors['image_landcover']
        assert torch.all(one_hot.sum(1) == 1)
        decoded = np.asarray(LFMC.landcover_codes)[one_hot.argmax(1).numpy()]
        np.testing.assert_array_equal(decoded, codes)

    def test_paper_groups(self) -> None:
        ds = LFMC(ROOT, modality_groups=PAPER_GROUPS)
        alone = LFMC(ROOT)
        sample = ds[3]
        assert ds.modalities == ('s1', 'optical')
        assert sample['image_s1'].shape == (4, 3)
        assert sample['image_optical'].shape == (4, 8)
        assert not any(
            k.startswith('image_') and k not in ('image_s1', 'image_optical')
            for k in sample
        )
        torch.testing.assert_close(
            sample['image_s1'][:, 2], alone[3]['image_s1_ratio'][:, 0]
        )
        torch.testing.assert_close(
            sample['image_optical'][:, 5:], alone[3]['image_optical_indices']
        )

    def test_static_group(self) -> None:
        ds = LFMC(ROOT, modality_groups={'site': ['dem', 'soil', 'landcover']})
        assert ds[0]['image_site'].shape == (17,)

    def test_transforms(self) -> None:
        def double(sample: dict[str, Any]) -> dict[str, Any]:
            sample['label'] = sample['label'] * 2
            return sample

        plain = LFMC(ROOT)
        ds = LFMC(ROOT, transforms=double)
        assert ds[0]['label'] == 2 * plain[0]['label']

    def test_to_tensor_dataset(self) -> None:
        ds = LFMC(ROOT, modality_groups=PAPER_GROUPS)
        tensors = ds.to_tensor_dataset()
        assert isinstance(tensors, TensorMultiModalDataset)
        assert len(tensors) == len(ds)
        assert tensors.modalities == ('s1', 'optical')
        batch = tensors.batch([0, 5, 7])
        assert batch['id'] == [ds.ids[0], ds.ids[5], ds.ids[7]]
        assert batch['image_optical'].shape == (3, 4, 8)
        assert batch['lat'].dtype == torch.float32
        assert batch['year'].dtype == torch.int64
        assert set(batch) == {
            'image_s1',
            'image_optical',
            'label',
            'lat',
            'lon',
            'year',
            'id',
        }


class TestLFMCGeoJSON:
    def test_matches_csv(self) -> None:
        with pytest.warns(UserWarning, match=r'dropped 2 row.*\(site, date\)'):
            geo = LFMC(ROOT, source='geojson')
        csv = LFMC(ROOT)
        assert len(geo) == 6
        assert geo.ids == [
            'feature_0001',
            'feature_0002',
            'feature_0003',
            'feature_0004',
            'feature_0006',
            'feature_0008',
        ]
        by_key = {(s, d): i for i, (s, d) in enumerate(zip(csv.sites, csv.dates))}
        for index in range(len(geo)):
            sample = geo[index]
            expected = csv[by_key[sample['site'], sample['date']]]
            for key in expected.keys() - {'id'}:
                if isinstance(expected[key], str):
                    assert sample[key] == expected[key]
                else:
                    torch.testing.assert_close(sample[key], expected[key])

    def test_us_short_dates_become_iso(self) -> None:
        geo = LFMC(ROOT, source='geojson')
        with open(
            os.path.join(ROOT, 'su_sar_moisture_content', 'feature_0001.geojson')
        ) as f:
            date = json.load(f)['properties']['date']
        month, day, year = (int(p) for p in date.split('/'))
        assert geo.dates[0] == f'20{year:02d}-{month:02d}-{day:02d}'

    def test_bad_feature(self, tmp_path: Path) -> None:
        shutil.copytree(ROOT, tmp_path / 'lfmc')
        path = tmp_path / 'lfmc' / 'su_sar_moisture_content' / 'feature_0002.geojson'
        feature = json.loads(path.read_text())
        del feature['geometry']
        path.write_text(json.dumps(feature))
        with pytest.raises(
            ValueError, match=r'feature_0002\.geojson: expected a GeoJSON Feature'
        ):
            LFMC(str(tmp_path / 'lfmc'), source='geojson')

    def test_missing_property(self, tmp_path: Path) -> None:
        shutil.copytree(ROOT, tmp_path / 'lfmc')
        path = tmp_path / 'lfmc' / 'su_sar_moisture_content' / 'feature_0003.geojson'
        feature = json.loads(path.read_text())
        del feature['properties']['nirv(t-1)']
        path.write_text(json.dumps(feature))
        with pytest.raises(
            ValueError,
            match=r"feature_0003\.geojson: missing propert\(y/ies\) \['nirv\(t-1\)'\]",
        ):
            LFMC(str(tmp_path / 'lfmc'), source='geojson')


class TestLFMCErrors:
    def test_not_found_csv(self, tmp_path: Path) -> None:
        with pytest.raises(
            DatasetNotFoundError, match=r'github\.com/kkraoj/lfmc_from_sar'
        ) as error:
            LFMC(str(tmp_path))
        assert 'input_data/training_features.csv' in str(error.value)
        assert str(tmp_path) in str(error.value)

    def test_not_found_geojson(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match='Source Cooperative') as error:
            LFMC(str(tmp_path), source='geojson')
        assert 'feature_*.geojson' in str(error.value)

    def test_missing_column(self, tmp_path: Path) -> None:
        root = write_edited_csv(tmp_path, lambda t: t.drop(columns=['vh(t-2)']))
        with pytest.raises(
            ValueError,
            match=r"training_features.csv: missing column\(s\) \['vh\(t-2\)'\]",
        ):
            LFMC(root)

    def test_non_numeric(self, tmp_path: Path) -> None:
        def corrupt(table: pd.DataFrame) -> pd.DataFrame:
            table.loc[4, 'ndwi(t-1)'] = '0.1.2'
            return table

        root = write_edited_csv(tmp_path, corrupt)
        with pytest.raises(
            ValueError,
            match=r"column 'ndwi\(t-1\)' holds non-numeric value '0.1.2' \(sample 202\)",
        ):
            LFMC(root)

    @pytest.mark.parametrize('value', ['', 'inf', '-inf', 'NaN'])
    def test_missing_target(self, tmp_path: Path, value: str) -> None:
        def empty(table: pd.DataFrame) -> pd.DataFrame:
            table.loc[1, 'percent(t)'] = value
            return table

        with pytest.raises(
            ValueError,
            match=r"training_features.csv: column 'percent\(t\)' is empty or not finite for "
            r'sample\(s\) \[199\] \(values \[-?(nan|inf)\]\)',
        ):
            LFMC(write_edited_csv(tmp_path, empty))

    def test_inf_feature_kept_for_the_normaliser(self, tmp_path: Path) -> None:
        def infinite(table: pd.DataFrame) -> pd.DataFrame:
            table.loc[0, 'vv(t-1)'] = '-inf'
            return table

        ds = LFMC(write_edited_csv(tmp_path, infinite))
        assert ds[0]['image_s1'][2, 0] == -math.inf

    def test_empty_feature_is_nan(self, tmp_path: Path) -> None:
        def empty(table: pd.DataFrame) -> pd.DataFrame:
            table.loc[0, 'vv(t-1)'] = ''
            return table

        ds = LFMC(write_edited_csv(tmp_path, empty))
        assert torch.isnan(ds[0]['image_s1'][2, 0])
        assert torch.isfinite(ds[0]['image_s1'][[0, 1, 3]]).all()

    def test_unknown_landcover(self, tmp_path: Path) -> None:
        def recode(table: pd.DataFrame) -> pd.DataFrame:
            table.loc[6, 'forest_cover(t)'] = '15'
            return table

        with pytest.raises(
            ValueError, match=r'sample 204 has forest_cover\(t\) 15, not one of'
        ):
            LFMC(write_edited_csv(tmp_path, recode))

    def test_bad_date(self, tmp_path: Path) -> None:
        def redate(table: pd.DataFrame) -> pd.DataFrame:
            table.loc[2, 'date'] = '2016/13/01'
            return table

        with pytest.raises(ValueError, match=r"sample 200 has date '2016/13/01'"):
            LFMC(write_edited_csv(tmp_path, redate))

    def test_bad_source(self) -> None:
        with pytest.raises(ValueError, match=r"source must be one of .*got 'parquet'"):
            LFMC(ROOT, source='parquet')  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ('groups', 'match'),
        [
            ({}, 'at least one modality'),
            ({'s1': []}, 'non-empty list'),
            ({'s1': 's1'}, 'non-empty list'),
            ({'s1': ['s1', 'sentinel2']}, r"unknown modality \['sentinel2'\]"),
            ({'mixed': ['s1', 'dem']}, 'mixes time series'),
        ],
    )
    def test_bad_groups(self, groups: Any, match: str) -> None:
        with pytest.raises(ValueError, match=match):
            LFMC(ROOT, modality_groups=groups)


@pytest.mark.skipif(
    not os.path.exists(os.path.join(REAL_ROOT, 'training_features.csv')),
    reason='real LFMC table not available',
)
def test_real_table() -> None:
    with pytest.warns(UserWarning, match='dropped 37 row'):
        ds = LFMC(REAL_ROOT, modality_groups=PAPER_GROUPS)
    assert len(ds) == 2578
    labels = ds.tensors['label']
    assert labels.dtype == torch.float32
    assert labels.mean().item() == pytest.approx(103.9868, abs=1e-4)
    assert labels.std(unbiased=False).item() == pytest.approx(39.562313, abs=1e-5)
    assert ds[0]['image_s1'].shape == (4, 3)
    assert ds[0]['image_optical'].shape == (4, 8)
    assert len(set(ds.ids)) == 2578
