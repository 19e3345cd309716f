# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Tests of the EuroSAT S1+S2 dataset."""

import os
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import pytest
import rasterio
import torch
import torchvision.datasets.utils
from torchgeo.datasets import (
    CopernicusBenchEuroSATS1,
    CopernicusBenchEuroSATS2,
    DatasetNotFoundError,
    RGBBandsMissingError,
)

from torchgeo_colearn.datasets.eurosat_s1s2 import EuroSATS1S2

from ..fakes import fake_data_copy

DATA = os.path.join('tests', 'data', 'eurosat_s1s2')
SPLIT_SIZES = {'train': 4, 'val': 2, 'test': 2}
FAKE_SIZE = 16  # the fake patches are 16 x 16 pixels, the real ones 64 x 64


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A writable copy of the fake data, extracted."""
    return fake_data_copy('eurosat_s1s2', tmp_path)


def fake_eurosat(root: str, *args: Any, **kwargs: Any) -> EuroSATS1S2:
    """The dataset on the 16 x 16 fake patches."""
    kwargs['patch_size'] = FAKE_SIZE
    return EuroSATS1S2(root, *args, **kwargs)


def read_tif(root: str, sensor: str, sample_id: str) -> torch.Tensor:
    classname = sample_id.split('_')[0]
    path = os.path.join(root, sensor, 'all_imgs', classname, f'{sample_id}.tif')
    with rasterio.open(path) as f:
        return torch.from_numpy(f.read().astype('float32'))


def write_split(root: str, sensor: str, split: str, ids: list[str]) -> None:
    with open(os.path.join(root, sensor, f'eurosat-{split}.txt'), 'w') as f:
        f.writelines(f'{sample_id}.jpg\n' for sample_id in ids)


@pytest.mark.parametrize('split', ['train', 'val', 'test'])
def test_getitem(root: str, split: Literal['train', 'val', 'test']) -> None:
    dataset = fake_eurosat(root, split)
    assert len(dataset) == SPLIT_SIZES[split]
    sample = dataset[0]
    assert set(sample) == {'image_s1', 'image_s2', 'label', 'lat', 'lon', 'id'}
    assert sample['image_s1'].shape == (2, 16, 16)
    assert sample['image_s2'].shape == (13, 16, 16)
    assert sample['image_s1'].dtype == sample['image_s2'].dtype == torch.float32
    assert sample['label'].dtype == torch.int64
    assert dataset.classes[int(sample['label'])] == sample['id'].split('_')[0]
    # UTM zone 33N in central Europe
    assert 40 < float(sample['lat']) < 55
    assert 9 < float(sample['lon']) < 21


def test_pairs_by_id(root: str) -> None:
    # the fake S1 split files list the ids in another order than the S2 ones
    dataset = fake_eurosat(root, 'train')
    assert dataset.ids == ['AnnualCrop_1', 'Forest_7', 'SeaLake_3', 'Residential_2029']
    for index, sample_id in enumerate(dataset.ids):
        sample = dataset[index]
        assert sample['id'] == sample_id
        torch.testing.assert_close(
            sample['image_s1'], read_tif(root, 'eurosat_s1', sample_id)
        )
        torch.testing.assert_close(
            sample['image_s2'], read_tif(root, 'eurosat_s2', sample_id)
        )


def test_label_order(root: str) -> None:
    assert EuroSATS1S2.classes[5] == 'Forest'
    assert EuroSATS1S2.classes[9] == 'SeaLake'
    dataset = fake_eurosat(root, 'train')
    samples = [dataset[i] for i in range(len(dataset))]
    labels = {s['id']: int(s['label']) for s in samples}
    assert labels == {
        'AnnualCrop_1': 0,
        'Forest_7': 5,
        'SeaLake_3': 9,
        'Residential_2029': 8,
    }


def test_band_selection(root: str) -> None:
    dataset = fake_eurosat(
        root, 'val', bands_s1=['VH'], bands_s2=['B8A', 'B04', 'B03', 'B02']
    )
    sample = dataset[0]
    s1 = read_tif(root, 'eurosat_s1', sample['id'])
    s2 = read_tif(root, 'eurosat_s2', sample['id'])
    torch.testing.assert_close(sample['image_s1'], s1[[1]])
    torch.testing.assert_close(sample['image_s2'], s2[[12, 3, 2, 1]])
    dataset.plot(sample, suptitle='test')
    plt.close()


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'bands_s1': ['HH']}, 'bands_s1 must be a non-empty selection'),
        ({'bands_s2': []}, 'bands_s2 must be a non-empty selection'),
        ({'on_mismatch': 'union'}, "on_mismatch must be 'raise' or 'intersect'"),
    ],
)
def test_invalid_arguments(root: str, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fake_eurosat(root, **kwargs)


def test_mismatch_raises(root: str) -> None:
    write_split(root, 'eurosat_s1', 'train', ['AnnualCrop_1', 'Forest_7', 'River_9'])
    with pytest.raises(ValueError, match='list different samples') as error:
        fake_eurosat(root, 'train')
    message = str(error.value)
    assert "1 listed only for S1 ['River_9']" in message
    assert "2 only for S2 ['Residential_2029', 'SeaLake_3']" in message
    assert 'keep the 2 common samples' in message


def test_mismatch_intersect(root: str) -> None:
    write_split(root, 'eurosat_s1', 'train', ['AnnualCrop_1', 'Forest_7', 'River_9'])
    with pytest.warns(UserWarning, match='keeping the 2 common samples, dropping 1'):
        dataset = fake_eurosat(root, 'train', on_mismatch='intersect')
    assert dataset.ids == ['AnnualCrop_1', 'Forest_7']
    assert [dataset[i]['id'] for i in range(len(dataset))] == dataset.ids
    torch.testing.assert_close(
        dataset[1]['image_s1'], read_tif(root, 'eurosat_s1', 'Forest_7')
    )


def test_duplicated_id(root: str) -> None:
    write_split(root, 'eurosat_s2', 'val', ['Forest_12', 'SeaLake_40', 'Forest_12'])
    with pytest.raises(
        ValueError, match=r"lists 1 ids more than once: \['Forest_12'\]"
    ):
        fake_eurosat(root, 'val')


def test_not_downloaded(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match='Dataset not found') as error:
        fake_eurosat(str(tmp_path))
    message = str(error.value)
    for text in (
        'eurosat_s1.zip',
        'eurosat_s2.zip',
        'hf.co/datasets/wangyi111/Copernicus-Bench',
        'l2_eurosat_s1s2',
        repr(str(tmp_path)),
        'eurosat_s1/eurosat-train.txt, eurosat_s2/eurosat-train.txt',
    ):
        assert text in message


def test_one_sensor_missing(root: str) -> None:
    shutil.rmtree(os.path.join(root, 'eurosat_s2'))
    with pytest.raises(DatasetNotFoundError, match='missing under root') as error:
        fake_eurosat(root, 'test')
    assert 'eurosat_s2/eurosat-test.txt.' in str(error.value)
    assert 'eurosat_s1/eurosat-test.txt' not in str(error.value)


def test_extract(tmp_path: Path) -> None:
    for sensor in ('eurosat_s1', 'eurosat_s2'):
        shutil.copy(os.path.join(DATA, f'{sensor}.zip'), tmp_path)
    dataset = fake_eurosat(str(tmp_path), 'val')
    assert len(dataset) == 2
    assert dataset[1]['image_s2'].shape == (13, 16, 16)


def test_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def copy(url: str, root: str, *args: object, **kwargs: object) -> None:
        os.makedirs(root, exist_ok=True)
        shutil.copy(url, root)

    monkeypatch.setattr(torchvision.datasets.utils, 'download_url', copy)
    for dataset_class in (CopernicusBenchEuroSATS1, CopernicusBenchEuroSATS2):
        url = os.path.join(DATA, dataset_class.zipfile)
        monkeypatch.setattr(dataset_class, 'url', url)
    root = str(tmp_path / 'eurosat')
    dataset = fake_eurosat(root, 'test', download=True)
    assert len(dataset) == 2
    assert os.path.isdir(os.path.join(root, 'eurosat_s1', 'all_imgs'))


def test_unreadable_tif(root: str) -> None:
    path = os.path.join(root, 'eurosat_s1', 'all_imgs', 'Forest', 'Forest_12.tif')
    with open(path, 'wb') as f:
        f.write(b'not a tif')
    dataset = fake_eurosat(root, 'val')
    with pytest.raises(OSError, match=re.escape(f'cannot read {path}')):
        dataset[0]


def test_missing_tif(root: str) -> None:
    path = os.path.join(root, 'eurosat_s2', 'all_imgs', 'SeaLake', 'SeaLake_40.tif')
    os.remove(path)
    dataset = fake_eurosat(root, 'val')
    with pytest.raises(OSError, match=re.escape(f'cannot read {path}')):
        dataset[1]


def test_transforms(root: str) -> None:
    def double(sample: dict[str, object]) -> dict[str, object]:
        return sample | {'image_s1': 2 * sample['image_s1']}  # type: ignore[operator]

    plain = fake_eurosat(root, 'test')[0]
    transformed = fake_eurosat(root, 'test', transforms=double)[0]
    torch.testing.assert_close(transformed['image_s1'], 2 * plain['image_s1'])


def test_plot_needs_rgb(root: str) -> None:
    dataset = fake_eurosat(root, 'test', bands_s2=['B08'])
    with pytest.raises(RGBBandsMissingError):
        dataset.plot(dataset[0])


def test_plot_prediction(root: str) -> None:
    dataset = fake_eurosat(root, 'test', bands_s1=['VV'])
    sample = dataset[0]
    sample['image_s1'][0, 0, 0] = float('-inf')
    sample['prediction'] = torch.tensor(3)
    fig = dataset.plot(sample, show_titles=True)
    assert 'prediction: PermanentCrop' in fig.axes[0].get_title()
    plt.close()


def test_patch_size_checked(root: str) -> None:
    dataset = EuroSATS1S2(root, 'val')
    path = os.path.join(root, 'eurosat_s1', 'all_imgs', 'Forest', 'Forest_12.tif')
    with pytest.raises(
        ValueError,
        match=re.escape(f'{path} is 16 x 16 pixels, not the 64 x 64 of the benchmark'),
    ):
        dataset[dataset.ids.index('Forest_12')]
    assert EuroSATS1S2(root, 'val', patch_size=None)[0]['image_s2'].shape == (
        13,
        16,
        16,
    )


def test_labels_and_files_without_reading(root: str) -> None:
    dataset = fake_eurosat(root, 'train')
    assert dataset.labels.tolist() == [
        int(dataset[i]['label']) for i in range(len(dataset))
    ]
    assert len(dataset.files()) == 2 * len(dataset)
    assert all(os.path.isfile(p) for p in dataset.files() + dataset.split_files())
