# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import glob
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_colearn.datasets.cropharvest import CROP_GROUPS, CropHarvestMultiModal

from ..fakes import cropharvest_shapes, fake_data_copy

DATA = os.path.join('tests', 'data', 'cropharvest')
NUM_BINARY = 40  # non-test arrays with a label row
NUM_MULTICLASS = 30  # of which have a classification_label
NUM_TEST = 3  # togo-eval arrays (is_test), one of them with a classification_label

pytestmark = pytest.mark.filterwarnings('ignore:.*(have no|repeat an).*:UserWarning')


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A writable copy of the fake data (the cache file is written under the root)."""
    return fake_data_copy('cropharvest', tmp_path)


def label_rows(root: str) -> dict[str, dict[str, Any]]:
    with open(os.path.join(root, 'labels.geojson')) as f:
        features = json.load(f)['features']
    return {
        f'{p["index"]}_{p["dataset"]}': p for p in (f['properties'] for f in features)
    }


def edit_labels(root: str, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    path = os.path.join(root, 'labels.geojson')
    with open(path) as f:
        content = json.load(f)
    edit(content['features'])
    with open(path, 'w') as f:
        json.dump(content, f)


def h5_array(root: str, sample_id: str) -> np.ndarray:
    with h5py.File(os.path.join(root, 'features', 'arrays', f'{sample_id}.h5')) as f:
        return np.asarray(f['array'][()])


def write_h5(root: str, name: str, array: np.ndarray) -> str:
    path = os.path.join(root, 'features', 'arrays', name)
    with h5py.File(path, 'w') as f:
        f.create_dataset('array', data=array)
    return path


class TestCropHarvestMultiModal:
    def test_binary(self, root: str) -> None:
        ds = CropHarvestMultiModal(root)
        rows = label_rows(root)
        assert len(ds) == NUM_BINARY
        assert ds.modalities == ('s1', 's2', 'ndvi', 'weather', 'dem')
        assert list(ds.classes) == ['non_crop', 'crop']
        ids = [ds[i]['id'] for i in range(len(ds))]
        assert len(set(ids)) == NUM_BINARY
        assert not any(rows[i]['is_test'] for i in ids)
        for i in range(len(ds)):
            sample = ds[i]
            assert sample['label'].dtype == torch.int64
            assert sample['label'].item() == rows[sample['id']]['is_crop']

    def test_sample_layout(self, root: str) -> None:
        ds = CropHarvestMultiModal(root)
        sample = ds[0]
        shapes = cropharvest_shapes(12)
        assert ds.modality_shapes == shapes
        for name, shape in shapes.items():
            assert sample[f'image_{name}'].shape == shape
            assert sample[f'image_{name}'].dtype == torch.float32
        array = torch.from_numpy(h5_array(root, sample['id'])).float()
        torch.testing.assert_close(sample['image_s1'], array[:, 0:2])
        torch.testing.assert_close(sample['image_s2'], array[:, 2:13])
        torch.testing.assert_close(sample['image_weather'], array[:, 13:15])
        torch.testing.assert_close(sample['image_dem'], array[0, 15:17])
        torch.testing.assert_close(sample['image_ndvi'], array[:, 17:])
        row = label_rows(root)[sample['id']]
        assert sample['lat'].item() == pytest.approx(row['lat'])
        assert sample['lon'].item() == pytest.approx(row['lon'])

    def test_multiclass(self, root: str) -> None:
        ds = CropHarvestMultiModal(root, task='multiclass')
        rows = label_rows(root)
        assert len(ds) == NUM_MULTICLASS
        assert tuple(ds.classes) == CROP_GROUPS
        labels = []
        for i in range(len(ds)):
            sample = ds[i]
            assert (
                CROP_GROUPS[sample['label']]
                == rows[sample['id']]['classification_label']
            )
            labels.append(int(sample['label']))
        assert np.bincount(labels).tolist() == [3] * 10

    @pytest.mark.parametrize(
        'task,expected',
        [('binary', NUM_BINARY + NUM_TEST), ('multiclass', NUM_MULTICLASS + 1)],
    )
    def test_include_test(self, root: str, task: str, expected: int) -> None:
        ds = CropHarvestMultiModal(root, task=task, include_test=True)  # type: ignore[arg-type]
        assert len(ds) == expected
        assert any(ds[i]['id'].endswith('_togo-eval') for i in range(len(ds)))

    def test_modality_groups(self, root: str) -> None:
        groups = {'s1': ['s1'], 's2': ['s2', 'ndvi']}
        ds = CropHarvestMultiModal(root, modality_groups=groups)
        assert ds.modality_shapes == {'s1': (12, 2), 's2': (12, 12)}
        sample = ds[3]
        assert sorted(k for k in sample if k.startswith('image_')) == [
            'image_s1',
            'image_s2',
        ]
        array = torch.from_numpy(h5_array(root, sample['id'])).float()
        torch.testing.assert_close(sample['image_s2'], array[:, [*range(2, 13), 17]])

    def test_modalities(self, root: str) -> None:
        ds = CropHarvestMultiModal(root, modalities=['dem', 's1'])
        assert ds.modalities == ('dem', 's1')
        assert ds.modality_shapes == {'dem': (2,), 's1': (12, 2)}

    @pytest.mark.parametrize(
        'kwargs,match',
        [
            ({'modalities': ['s1'], 'modality_groups': {'s1': ['s1']}}, 'not both'),
            ({'modalities': ['s3']}, "'s3'"),
            ({'modality_groups': {'s2': []}}, 'base modalities'),
            ({'modality_groups': {}}, 'at least one'),
            ({'modality_groups': {'x': ['s1', 'dem']}}, 'mixes'),
            ({'task': 'regression'}, 'task must be'),
        ],
    )
    def test_invalid_options(
        self, root: str, kwargs: dict[str, Any], match: str
    ) -> None:
        with pytest.raises(ValueError, match=match):
            CropHarvestMultiModal(root, **kwargs)

    def test_unpaired_warnings(self, root: str) -> None:
        with pytest.warns(
            UserWarning, match=r'1 of 44 CropHarvest arrays .*99_lem-brazil'
        ):
            CropHarvestMultiModal(root)
        with pytest.warns(
            UserWarning, match=r'2 rows of .*labels.geojson have no array'
        ):
            CropHarvestMultiModal(root)

    def test_duplicate_rows(self, root: str) -> None:
        original: dict[str, Any] = {}

        def duplicate(features: list[dict[str, Any]]) -> None:
            original.update(features[0]['properties'])
            copy = json.loads(json.dumps(features[0]))
            copy['properties']['is_crop'] = 1 - original['is_crop']
            features.append(copy)

        edit_labels(root, duplicate)
        with pytest.warns(UserWarning, match='1 rows repeat'):
            ds = CropHarvestMultiModal(root)
        sample_id = f'{original["index"]}_{original["dataset"]}'
        index = next(i for i, s in enumerate(ds.samples) if s.id == sample_id)
        assert ds[index]['label'] == original['is_crop']

    def test_to_tensor_dataset(self, root: str) -> None:
        ds = CropHarvestMultiModal(
            root,
            task='multiclass',
            modality_groups={'s1': ['s1'], 's2': ['s2', 'ndvi']},
        )
        tensors = ds.to_tensor_dataset()
        assert len(tensors) == len(ds)
        assert tensors.sample_shapes() == {'s1': (12, 2), 's2': (12, 12)}
        for i in (0, 7, len(ds) - 1):
            expected, got = ds[i], tensors[i]
            assert got['id'] == expected['id']
            for key in ('image_s1', 'image_s2', 'label', 'lat', 'lon'):
                torch.testing.assert_close(got[key], expected[key], equal_nan=True)

    def test_cache_reused(self, root: str, monkeypatch: pytest.MonkeyPatch) -> None:
        ds = CropHarvestMultiModal(root)
        first = ds.to_tensor_dataset()
        assert glob.glob(os.path.join(root, 'colearn_cache_*.pt')) == [ds.cache_path()]

        def fail(self: CropHarvestMultiModal, path: str) -> None:
            raise AssertionError(f'read {path} despite the cache')

        monkeypatch.setattr(CropHarvestMultiModal, '_load_array', fail)
        # the cache holds every labelled array: the other task reuses it
        again = CropHarvestMultiModal(root, task='multiclass', include_test=True)
        assert len(again.to_tensor_dataset()) == NUM_MULTICLASS + 1
        second = CropHarvestMultiModal(root).to_tensor_dataset()
        for key, value in first.tensors.items():
            torch.testing.assert_close(second.tensors[key], value, equal_nan=True)

    def test_cache_invalidated(
        self, root: str, edit_in_place: Callable[[str, Callable[[str], None]], None]
    ) -> None:
        ds = CropHarvestMultiModal(root)
        ds.to_tensor_dataset()
        old_cache = ds.cache_path()
        sample_id = ds.samples[5].id

        def rewrite(path: str) -> None:  # new values, same layout, size and time
            with h5py.File(path, 'r+') as f:
                f['array'][...] = 7.0

        edit_in_place(
            os.path.join(root, 'features', 'arrays', f'{sample_id}.h5'), rewrite
        )
        ds = CropHarvestMultiModal(root)
        assert ds.cache_path() != old_cache
        tensors = ds.to_tensor_dataset()
        assert (tensors[5]['image_s2'] == 7).all()
        assert glob.glob(os.path.join(root, 'colearn_cache_*.pt')) == [ds.cache_path()]

    def test_cache_survives_a_copy(self, root: str, tmp_path: Path) -> None:
        ds = CropHarvestMultiModal(root)
        ds.to_tensor_dataset()
        copy = str(tmp_path / 'copy')
        shutil.copytree(root, copy)  # new modification times, same content
        assert os.path.basename(CropHarvestMultiModal(copy).cache_path()) == (
            os.path.basename(ds.cache_path())
        )

    def test_cache_unreadable(self, root: str) -> None:
        ds = CropHarvestMultiModal(root)
        expected = ds.to_tensor_dataset()
        with open(ds.cache_path(), 'wb') as f:
            f.write(b'not a torch file')
        with pytest.warns(UserWarning, match='unreadable; rebuilding'):
            tensors = ds.to_tensor_dataset()
        torch.testing.assert_close(
            tensors.tensors['image_s2'], expected.tensors['image_s2']
        )
        assert (
            torch.load(ds.cache_path(), weights_only=True)['ids'][0]
            == expected[0]['id']
        )

    def test_cache_not_writable(
        self, root: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def refuse(*args: Any) -> None:
            raise PermissionError('read-only file system')

        monkeypatch.setattr(torch, 'save', refuse)
        ds = CropHarvestMultiModal(root)
        with pytest.warns(UserWarning, match='cannot write the CropHarvest cache'):
            assert len(ds.to_tensor_dataset()) == NUM_BINARY
        assert not glob.glob(os.path.join(root, 'colearn_cache_*'))

    def test_truncated_file(self, root: str) -> None:
        ds = CropHarvestMultiModal(root)
        name = f'{ds.samples[2].id}.h5'
        path = os.path.join(root, 'features', 'arrays', name)
        with open(path, 'rb') as f:
            head = f.read(600)
        with open(path, 'wb') as f:
            f.write(head)
        with pytest.raises(
            OSError, match=f'cannot read CropHarvest array file .*{name}'
        ):
            ds[2]
        with pytest.raises(OSError, match=name):
            ds.to_tensor_dataset()

    def test_wrong_shape(self, root: str) -> None:
        ds = CropHarvestMultiModal(root)
        name = f'{ds.samples[1].id}.h5'
        write_h5(root, name, np.zeros((12, 17)))
        with pytest.raises(ValueError, match=rf'{name}: "array" has shape \(12, 17\)'):
            ds[1]

    def test_no_array_dataset(self, root: str) -> None:
        ds = CropHarvestMultiModal(root)
        name = f'{ds.samples[0].id}.h5'
        with h5py.File(os.path.join(root, 'features', 'arrays', name), 'w') as f:
            f.create_dataset('x', data=np.zeros((12, 18)))
        with pytest.raises(KeyError, match=f'{name}: no dataset "array"'):
            ds[0]

    def test_bad_file_name(self, root: str) -> None:
        write_h5(root, 'lem_brazil_3.h5', np.zeros((12, 18)))
        with pytest.raises(
            ValueError, match=r'lem_brazil_3\.h5: CropHarvest array files'
        ):
            CropHarvestMultiModal(root)

    @pytest.mark.parametrize(
        'key,value,task,match',
        [
            ('is_crop', 2, 'binary', 'is_crop=2'),
            ('is_crop', None, 'binary', 'is_crop=None'),
            ('is_test', None, 'binary', 'is_test=None'),
            ('classification_label', 'cereal', 'multiclass', "'cereal'"),
            ('index', None, 'binary', 'feature 0 has no valid'),
        ],
    )
    def test_bad_label_row(
        self, root: str, key: str, value: Any, task: str, match: str
    ) -> None:
        def corrupt(features: list[dict[str, Any]]) -> None:
            properties = features[len(features) // 2]['properties']
            if key == 'index':
                properties = features[0]['properties']
            properties[key] = value

        edit_labels(root, corrupt)
        with pytest.raises(ValueError, match=match):
            CropHarvestMultiModal(root, task=task)  # type: ignore[arg-type]

    def test_not_a_feature_collection(self, root: str) -> None:
        with open(os.path.join(root, 'labels.geojson'), 'w') as f:
            json.dump([], f)
        with pytest.raises(ValueError, match='FeatureCollection'):
            CropHarvestMultiModal(root)

    @pytest.mark.parametrize(
        'content', [b'{"type": "FeatureCollection", "feat', b'\xff\xfe']
    )
    def test_malformed_labels(self, root: str, content: bytes) -> None:
        path = os.path.join(root, 'labels.geojson')
        with open(path, 'wb') as f:
            f.write(content)
        with pytest.raises(ValueError, match=f'{path} is not valid GeoJSON: '):
            CropHarvestMultiModal(root)

    def test_no_sample_left(self, root: str) -> None:
        def drop_groups(features: list[dict[str, Any]]) -> None:
            for feature in features:
                feature['properties']['classification_label'] = None

        edit_labels(root, drop_groups)
        with pytest.raises(
            ValueError, match=r"no CropHarvest sample left .*'multiclass'"
        ):
            CropHarvestMultiModal(root, task='multiclass')

    def test_extract(self, root: str) -> None:
        features = os.path.join(root, 'features')
        shutil.make_archive(features, 'gztar', root, 'features')
        shutil.rmtree(features)
        assert len(CropHarvestMultiModal(root)) == NUM_BINARY

    def test_download(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        source = tmp_path / 'zenodo'
        shutil.copytree(DATA, source, ignore=shutil.ignore_patterns('data.py'))
        shutil.make_archive(str(source / 'features'), 'gztar', source, 'features')

        def download_url(url: str, root: str, filename: str, md5: str | None) -> None:
            shutil.copy(source / filename, os.path.join(root, filename))

        monkeypatch.setattr('torchgeo.datasets.cropharvest.download_url', download_url)
        target = tmp_path / 'data'
        target.mkdir()
        assert len(CropHarvestMultiModal(target, download=True)) == NUM_BINARY

    def test_not_downloaded(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match='Dataset not found'):
            CropHarvestMultiModal(tmp_path)

    def test_transforms(self, root: str) -> None:
        def double(sample: dict[str, Any]) -> dict[str, Any]:
            sample['image_s1'] = sample['image_s1'] * 2
            return sample

        plain = CropHarvestMultiModal(root, modalities=['s1'])
        doubled = CropHarvestMultiModal(root, modalities=['s1'], transforms=double)
        torch.testing.assert_close(doubled[4]['image_s1'], plain[4]['image_s1'] * 2)

    def test_plot(self, root: str) -> None:
        ds = CropHarvestMultiModal(root, task='multiclass')
        sample = ds[0]
        fig = ds.plot(sample, suptitle='fake')
        assert len(fig.axes) == len(ds.modalities)
        assert fig.get_suptitle() == f'fake: {CROP_GROUPS[sample["label"]]}'
        plt.close(fig)
