# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import glob
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest
import rasterio
import torch
from torchgeo.datasets import DatasetNotFoundError, TreeSatAI

import torchgeo_colearn.datasets.treesatai_ts
from torchgeo_colearn.datasets.treesatai_ts import TreeSatAITimeSeries

DATA = os.path.join('tests', 'data', 'treesatai_ts')
FOLDERS = ('aerial', 'labels', 'sentinel-ts', 'split')
TILIA = 'Tilia_spec._9_99911_WEFL_NLF'


def copy_data(tmp_path: Path) -> Path:
    root = tmp_path / 'data'
    for folder in FOLDERS:
        shutil.copytree(os.path.join(DATA, folder), root / folder)
    return root


def h5_path(root: Path | str, name: str) -> str:
    (path,) = glob.glob(os.path.join(root, 'sentinel-ts', f'{name}_*.h5'))
    return path


def make_dataset(root: Path | str = DATA, **kwargs: Any) -> TreeSatAITimeSeries:
    with pytest.warns(UserWarning, match='1 of 5 patches'):
        return TreeSatAITimeSeries(root, **kwargs)


class TestTreeSatAITimeSeries:
    def test_sample(self) -> None:
        ds = make_dataset()
        sample = ds[ds.names.index(TILIA)]
        assert sample['id'] == TILIA
        assert sample['image_aerial'].shape == (4, 32, 32)
        assert sample['image_aerial'].dtype == torch.float32
        path = h5_path(DATA, TILIA)
        assert sample['year'] == int(path[-7:-3])
        with h5py.File(path) as f:
            for sensor, prefix, channels in (
                ('s1_asc', 'sen-1-asc', 2),
                ('s1_des', 'sen-1-des', 2),
                ('s2', 'sen-2', 10),
            ):
                data = f[f'{prefix}-data'][()]
                x = sample[f'image_{sensor}']
                assert x.shape == (len(data), channels, 6, 6)
                assert x.dtype == torch.float32
                torch.testing.assert_close(
                    x, torch.from_numpy(data.astype(np.float32)), equal_nan=True
                )
                assert sample[f'valid_{sensor}'].dtype == torch.bool
                assert sample[f'valid_{sensor}'].all()
                # the sensing start is the first date of the standard ESA product names
                position = 2 if sensor == 's2' else 4
                expected = [
                    datetime.strptime(p.decode().split('_')[position][:8], '%Y%m%d')
                    .timetuple()
                    .tm_yday
                    for p in f[f'{prefix}-products'][()]
                ]
                assert sample[f'doy_{sensor}'].tolist() == expected

    def test_time_series_lengths_differ(self) -> None:
        ds = make_dataset()
        lengths = {
            (sensor, len(ds[i][f'valid_{sensor}']))
            for i in range(len(ds))
            for sensor in ('s1_asc', 's1_des', 's2')
        }
        assert len({t for _, t in lengths}) > 2
        assert len({t for s, t in lengths if s == 's2'}) > 1

    def test_s2_masks(self) -> None:
        ds = make_dataset(sensors=('s2',), s2_masks=True)
        sample = ds[0]
        with h5py.File(h5_path(DATA, ds.names[0])) as f:
            masks = f['sen-2-masks'][()]
        assert sample['image_s2'].shape == (len(masks), 12, 6, 6)
        torch.testing.assert_close(
            sample['image_s2'][:, 10:], torch.from_numpy(masks.astype(np.float32))
        )
        assert set(sample) == {'image_s2', 'valid_s2', 'doy_s2', 'year', 'label', 'id'}

    @pytest.mark.parametrize(
        ('split', 'length'), [('train', 4), ('val', 2), ('test', 2)]
    )
    def test_splits(self, split: str, length: int) -> None:
        with open(os.path.join(DATA, 'split', f'{split}_filenames.lst')) as f:
            listed = [line.strip().removesuffix('.tif') for line in f]
        if split == 'train':
            ds = make_dataset(split=split)
        else:
            ds = TreeSatAITimeSeries(DATA, split=split)  # type: ignore[arg-type]
        assert len(ds) == length
        assert set(ds.names) <= set(listed)

    def test_labels_threshold(self) -> None:
        ds = make_dataset()
        assert ds.classes == TreeSatAI.classes
        assert 'Quercus_robur_2_71203_WEFL_NLF' not in ds.names

        def genera(name: str) -> set[str]:
            label = ds[ds.names.index(name)]['label']
            assert label.dtype == torch.float32
            assert label.shape == (15,)
            return {c for c, v in zip(ds.classes, label.tolist()) if v == 1}

        assert genera('Abies_alba_1_1005_WEFL_NLF') == {'Abies', 'Picea'}
        # Betula (0.05) and Larix (0.02) are below 0.07
        assert genera('Pinus_sylvestris_3_42145_WEFL_NLF') == {'Pinus'}
        with pytest.warns(UserWarning, match='3 of 5 patches'):
            strict = TreeSatAITimeSeries(DATA, label_threshold=0.85)
        assert strict.names == [
            'Tilia_spec._9_99911_WEFL_NLF',
            'Pinus_sylvestris_3_42145_WEFL_NLF',
        ]
        loose = TreeSatAITimeSeries(DATA, label_threshold=0.04)
        assert len(loose) == 5

    def test_only_aerial_needs_no_time_series(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        shutil.rmtree(root / 'sentinel-ts')
        ds = make_dataset(root, sensors=('aerial',))
        assert set(ds[0]) == {'image_aerial', 'label', 'id'}

    def test_aerial_60m_folder(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        shutil.move(root / 'aerial', tmp_path / '60m')
        (root / 'aerial').mkdir()
        shutil.move(tmp_path / '60m', root / 'aerial' / '60m')
        ds = make_dataset(root, sensors=('aerial',))
        reference = make_dataset(sensors=('aerial',))
        torch.testing.assert_close(ds[0]['image_aerial'], reference[0]['image_aerial'])

    def test_h5_exact_name(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        path = h5_path(root, TILIA)
        # names that contain the patch name: a substring search would pick them
        for decoy in (f'X_{TILIA}_2019.h5', f'{TILIA}_B_2019.h5', f'{TILIA}.h5'):
            with (
                h5py.File(path) as src,
                h5py.File(root / 'sentinel-ts' / decoy, 'w') as dst,
            ):
                for key in src:
                    dst.create_dataset(key, data=src[key][()][:1])
        ds = make_dataset(root, sensors=('s2',))
        reference = make_dataset(sensors=('s2',))
        index = ds.names.index(TILIA)
        torch.testing.assert_close(ds[index]['image_s2'], reference[index]['image_s2'])

    def test_two_years(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        path = h5_path(root, TILIA)
        shutil.copy(path, root / 'sentinel-ts' / f'{TILIA}_2016.h5')
        with pytest.raises(ValueError, match=f'{TILIA} has several time-series files'):
            make_dataset(root)

    def test_missing_h5(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        os.remove(h5_path(root, TILIA))
        with pytest.raises(FileNotFoundError, match=f'no time-series file.*{TILIA}'):
            make_dataset(root)

    def test_missing_aerial(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        os.remove(root / 'aerial' / f'{TILIA}.tif')
        with pytest.raises(FileNotFoundError, match=f'no aerial image.*{TILIA}'):
            make_dataset(root)
        make_dataset(root, sensors=('s2',))

    def test_missing_label(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        labels = root / 'labels' / 'TreeSatBA_v9_60m_multi_labels.json'
        text = labels.read_text().replace(f'"{TILIA}.tif"', '"other.tif"')
        labels.write_text(text)
        with pytest.raises(KeyError, match=f'no labels in .*{TILIA}'):
            TreeSatAITimeSeries(root)

    def test_unknown_genus(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        labels = root / 'labels' / 'TreeSatBA_v9_60m_multi_labels.json'
        labels.write_text(labels.read_text().replace('"Tilia"', '"Tila"'))
        with pytest.raises(ValueError, match=f'Tila.*{TILIA}'):
            TreeSatAITimeSeries(root)

    @pytest.mark.parametrize(
        'kind,size', [('time series', 3000), ('aerial image', 2000)]
    )
    def test_truncated_file(self, kind: str, size: int, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        match kind:
            case 'time series':
                path = Path(h5_path(root, TILIA))
            case 'aerial image':
                path = root / 'aerial' / f'{TILIA}.tif'
        path.write_bytes(path.read_bytes()[:size])
        ds = make_dataset(root)
        with pytest.raises(OSError, match=f'cannot read {kind} .*{TILIA}'):
            ds[ds.names.index(TILIA)]

    def test_aerial_bands(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        path = root / 'aerial' / f'{TILIA}.tif'
        with rasterio.open(path) as src:
            profile = src.profile | {'count': 3}
            image = src.read()[:3]
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(image)
        ds = make_dataset(root)
        with pytest.raises(ValueError, match=rf'{TILIA}.tif has shape \(3, 32, 32\)'):
            ds[ds.names.index(TILIA)]

    @pytest.mark.parametrize(
        ('key', 'value', 'error', 'match'),
        [
            ('sen-1-des-data', None, KeyError, "no dataset 'sen-1-des-data'"),
            ('sen-2-products', None, KeyError, "no dataset 'sen-2-products'"),
            (
                'sen-2-data',
                np.zeros((3, 12, 6, 6), np.uint16),
                ValueError,
                r"'sen-2-data' has shape \(3, 12, 6, 6\), expected \(T, 10, 6, 6\)",
            ),
            (
                'sen-1-asc-data',
                np.zeros((3, 2, 5, 5), np.float32),
                ValueError,
                r'expected \(T, 2, 6, 6\)',
            ),
            (
                'sen-2-products',
                np.array([b'S2A_MSIL2A_20170113T103401_N0204_R108_T32UNU_x']),
                ValueError,
                'sen-2-products has shape',
            ),
            (
                'sen-1-asc-products',
                np.array([b'S1A_IW_GRDH_1SDV_missing'] * 30),
                ValueError,
                "product name 'S1A_IW_GRDH_1SDV_missing'",
            ),
        ],
    )
    def test_bad_h5(
        self,
        tmp_path: Path,
        key: str,
        value: np.ndarray | None,
        error: type[Exception],
        match: str,
    ) -> None:
        root = copy_data(tmp_path)
        path = h5_path(root, TILIA)
        with h5py.File(path, 'a') as f:
            if key == 'sen-1-asc-products':
                # as many names as time steps, none with a date
                value = value[: len(f['sen-1-asc-data'])]  # type: ignore[index]
            del f[key]
            if value is not None:
                f.create_dataset(key, data=value)
        ds = make_dataset(root)
        with pytest.raises(error, match=match) as info:
            ds[ds.names.index(TILIA)]
        assert TILIA in str(info.value)

    def test_mask_length(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        path = h5_path(root, TILIA)
        with h5py.File(path, 'a') as f:
            masks = f['sen-2-masks'][()]
            del f['sen-2-masks']
            f.create_dataset('sen-2-masks', data=masks[1:])
        ds = make_dataset(root, sensors=('s2',), s2_masks=True)
        with pytest.raises(ValueError, match=r'sen-2-masks has .* time steps'):
            ds[ds.names.index(TILIA)]
        # without the masks the file is fine
        make_dataset(root, sensors=('s2',))[ds.names.index(TILIA)]

    def test_transforms(self) -> None:
        def drop_aerial(sample: dict[str, Any]) -> dict[str, Any]:
            del sample['image_aerial']
            return sample

        ds = make_dataset(transforms=drop_aerial)
        assert 'image_aerial' not in ds[0]

    @pytest.mark.parametrize(
        'kwargs',
        [
            {'split': 'validation'},
            {'sensors': ()},
            {'sensors': ('aerial', 's1')},
            {'sensors': ('aerial',), 's2_masks': True},
            {'label_threshold': 1.0},
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            TreeSatAITimeSeries(DATA, **kwargs)

    def test_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match='Dataset not found') as info:
            TreeSatAITimeSeries(tmp_path, sensors=('s2',))
        message = str(info.value)
        assert TreeSatAITimeSeries.url + 'sentinel-ts.zip' in message
        assert 'aerial.zip' not in message
        assert str(tmp_path) in message

    def test_extract_present_archives(self, tmp_path: Path) -> None:
        root = tmp_path / 'data'
        root.mkdir()
        make_archives(tmp_path / 'remote', nested=True)
        for archive in ('split.zip', 'labels.zip', 'sentinel-ts.zip'):
            shutil.copy(tmp_path / 'remote' / archive, root)
        ds = make_dataset(root, sensors=('s2',))
        assert len(ds) == 4

    @pytest.mark.parametrize('nested', [True, False])
    def test_download(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nested: bool
    ) -> None:
        remote = tmp_path / 'remote'
        make_archives(remote, nested)
        downloaded: list[str] = []

        def download_url(url: str, root: str, filename: str) -> None:
            downloaded.append(filename)
            os.makedirs(root, exist_ok=True)
            shutil.copy(url, os.path.join(root, filename))

        monkeypatch.setattr(
            torchgeo_colearn.datasets.treesatai_ts, 'download_url', download_url
        )
        monkeypatch.setattr(TreeSatAITimeSeries, 'url', f'{remote}{os.sep}')
        root = tmp_path / 'data'
        ds = make_dataset(root, download=True)
        assert sorted(downloaded) == sorted(TreeSatAITimeSeries.archives.values())
        reference = make_dataset()
        sample, expected = ds[0], reference[0]
        for key in ('image_aerial', 'image_s2', 'doy_s1_des', 'label'):
            torch.testing.assert_close(sample[key], expected[key])
        # a second instance finds the extracted folders
        make_dataset(root)
        assert len(downloaded) == 4

    def test_bad_archive(self, tmp_path: Path) -> None:
        root = copy_data(tmp_path)
        shutil.rmtree(root / 'sentinel-ts')
        (root / 'sentinel-ts.zip').write_bytes(b'not a zip')
        with pytest.raises(OSError, match=r'sentinel-ts\.zip is not a readable zip'):
            TreeSatAITimeSeries(root)

    def test_plot(self) -> None:
        ds = make_dataset(s2_masks=True)
        sample = ds[0]
        sample['prediction'] = sample['label'].clone()
        fig = ds.plot(sample, suptitle='test')
        assert 'Prediction' in fig.texts[0].get_text()
        plt.close(fig)
        fig = ds.plot(sample, show_titles=False)
        plt.close(fig)


def make_archives(folder: Path, nested: bool) -> None:
    """Zip the fake folders as the Hugging Face archives, with or without the top folder."""
    for name in FOLDERS:
        if nested:
            shutil.make_archive(str(folder / name), 'zip', DATA, name)
        else:
            shutil.make_archive(str(folder / name), 'zip', os.path.join(DATA, name))
