# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import glob
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import pytest
import torch
import yaml
from torch import Tensor

from torchgeo_colearn.channel_stats import modality_stats
from torchgeo_colearn.datamodules.treesatai_ts import (
    PadTimeSeries,
    TreeSatAITimeSeriesDataModule,
)
from torchgeo_colearn.datasets.treesatai_ts import TreeSatAITimeSeries

from ..fakes import fast_dev_run_args

DATA = os.path.join('tests', 'data', 'treesatai_ts')
CONFIG = os.path.join('experiments', 'treesatai_ts.yaml')

pytestmark = pytest.mark.filterwarnings('ignore:1 of 5 patches:UserWarning')


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A copy of the fake data, since the datamodule writes its statistics under the root."""
    for folder in ('aerial', 'labels', 'sentinel-ts', 'split'):
        shutil.copytree(os.path.join(DATA, folder), tmp_path / folder)
    return str(tmp_path)


def series(length: int, channels: int = 2, name: str = 'p') -> dict[str, Any]:
    return {
        'image_s1': torch.arange(length * channels, dtype=torch.float32).view(
            length, channels
        ),
        'valid_s1': torch.ones(length, dtype=torch.bool),
        'doy_s1': torch.arange(1, length + 1),
        'image_dem': torch.ones(3),
        'label': torch.tensor([1.0, 0.0]),
        'year': torch.tensor(2018),
        'id': name,
    }


def reverse_lines(path: str) -> None:
    with open(path, 'rb') as f:
        lines = f.read().splitlines(keepends=True)
    with open(path, 'wb') as f:
        f.writelines(reversed([line.rstrip(b'\n') + b'\n' for line in lines]))


def replace_bytes(path: str, old: bytes, new: bytes) -> None:
    with open(path, 'rb') as f:
        content = f.read()
    assert content.count(old) == 1
    with open(path, 'wb') as f:
        f.write(content.replace(old, new))


def raise_first_s2_value(path: str) -> None:
    with h5py.File(path, 'r+') as f:
        f['sen-2-data'][0, 0, 0, 0] += 1000


class TestPadTimeSeries:
    @pytest.mark.parametrize('pad_side', ['left', 'right'])
    def test_batch_max(self, pad_side: Any) -> None:
        batch = PadTimeSeries(pad_side=pad_side)([series(2), series(4), series(3)])
        assert list(batch) == list(series(1))
        assert batch['image_s1'].shape == (3, 4, 2)
        assert batch['valid_s1'].sum(1).tolist() == [2, 4, 3]
        first = batch['image_s1'][0]
        steps = slice(2, 4) if pad_side == 'left' else slice(0, 2)
        padding = slice(0, 2) if pad_side == 'left' else slice(2, 4)
        torch.testing.assert_close(first[steps], series(2)['image_s1'])
        assert first[padding].isnan().all()
        assert batch['valid_s1'][0, steps].all()
        assert not batch['valid_s1'][0, padding].any()
        assert batch['doy_s1'][0, steps].tolist() == [1, 2]
        assert batch['doy_s1'][0, padding].tolist() == [0, 0]
        assert batch['doy_s1'].dtype == torch.int64
        assert batch['image_dem'].shape == (3, 3)
        assert batch['year'].tolist() == [2018] * 3
        assert batch['id'] == ['p'] * 3

    def test_fixed_length(self) -> None:
        batch = PadTimeSeries({'s1': 6})([series(2), series(4)])
        assert batch['image_s1'].shape == (2, 6, 2)
        assert batch['valid_s1'].sum().item() == 6

    def test_too_long(self) -> None:
        with pytest.raises(ValueError, match="sample 'long' has 5 s1 time steps"):
            PadTimeSeries({'s1': 4})([series(2), series(5, name='long')])

    def test_empty_series(self) -> None:
        batch = PadTimeSeries()([series(0), series(0)])
        assert batch['image_s1'].shape == (2, 1, 2)
        assert not batch['valid_s1'].any()

    @pytest.mark.parametrize('kwargs', [{'max_len': {'s1': 0}}, {'pad_side': 'both'}])
    def test_invalid(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            PadTimeSeries(**kwargs)


class TestTreeSatAITimeSeriesDataModule:
    def test_fit(self, root: str) -> None:
        dm = TreeSatAITimeSeriesDataModule(
            root, sensors=('aerial', 's1_des', 's2'), s2_masks=True, batch_size=2
        )
        dm.setup('fit')
        assert dm.modalities == ('aerial', 's1_des', 's2')
        assert len(dm.train_dataset) == 4  # type: ignore[arg-type]
        assert len(dm.val_dataset) == 2  # type: ignore[arg-type]
        assert dm.test_dataset is None
        batch = next(iter(dm.train_dataloader()))
        assert batch['image_aerial'].shape == (2, 4, 32, 32)
        length = batch['valid_s2'].shape[1]
        assert batch['image_s2'].shape == (2, length, 12, 6, 6)
        assert batch['valid_s2'].any(1).all()
        # the fake series differ in length, so some batch holds padding
        assert any(not b['valid_s2'].all() for b in dm.train_dataloader())
        assert batch['label'].shape == (2, 15)
        assert len(dm.val_dataloader()) == 1

    def test_series_without_acquisition_is_absent(self, root: str) -> None:
        name = TreeSatAITimeSeries(root, 'train', sensors=('s1_des',)).names[0]
        (path,) = glob.glob(os.path.join(root, 'sentinel-ts', f'{name}_*.h5'))
        with h5py.File(path, 'r+') as f:
            for key in ('sen-1-des-data', 'sen-1-des-products'):
                empty = f[key][:0]
                del f[key]
                f[key] = empty
        dm = TreeSatAITimeSeriesDataModule(
            root, sensors=('aerial', 's1_des', 's2'), batch_size=4
        )
        dm.setup('fit')
        assert dm.incomplete_modalities == ('s1_des',)
        (batch,) = dm.train_dataloader()
        batch = dm.on_after_batch_transfer(batch, 0)
        absent = [i == name for i in batch['id']]
        assert batch['present_s1_des'].tolist() == [not a for a in absent]
        assert 'present_s2' not in batch and 'present_aerial' not in batch
        row = absent.index(True)
        assert batch['image_s1_des'][row].eq(0).all()
        assert not batch['valid_s1_des'][row].any()
        assert torch.isfinite(batch['image_s1_des']).all()

    def test_modality_info(self, root: str) -> None:
        dm = TreeSatAITimeSeriesDataModule(
            root, sensors=('aerial', 's1_des', 's2'), s2_masks=True, max_len={'s2': 9}
        )
        dm.setup('fit')
        info = dm.modality_info()
        assert info['aerial'].shape == (4, 32, 32)
        assert info['aerial'].bands == ('IR', 'G', 'B', 'R')
        assert info['s1_des'].shape == (None, 2, 6, 6)
        assert info['s2'].shape == (9, 12, 6, 6)
        assert info['s2'].bands[-2:] == ('snow_probability', 'cloud_probability')
        assert info['s2'].units[-3:] == ('L2A reflectance x 10^4', '%', '%')
        assert dm.classes is not None and len(dm.classes) == 15

    def test_stats_cached(self, root: str) -> None:
        dm = TreeSatAITimeSeriesDataModule(root, sensors=('aerial', 's1_asc'))
        dm.setup('fit')
        path = dm.stats_path()
        assert path is not None and os.path.dirname(path) == root
        assert os.path.basename(path).startswith(
            'colearn_stats_aerial-s1_asc_threshold0.07_'
        )
        with open(path) as f:
            cached = json.load(f)
        # training patches only, NaN (missing backscatter and padding) left out
        train = dm.train_dataset
        assert isinstance(train, TreeSatAITimeSeries)
        # aerial: (N, 4, H, W); s1_asc: all time steps of all patches, (sum T, 2, 6, 6)
        aerial = torch.stack([train[i]['image_aerial'] for i in range(len(train))])
        s1_asc = torch.cat([train[i]['image_s1_asc'] for i in range(len(train))])
        assert s1_asc.isnan().any()
        stats = modality_stats([{'image_aerial': aerial, 'image_s1_asc': s1_asc}])
        for modality, (mean, std) in stats.items():
            torch.testing.assert_close(
                torch.tensor(cached['stats'][modality]['mean']), mean
            )
            torch.testing.assert_close(
                torch.tensor(cached['stats'][modality]['std']), std
            )
        # a new datamodule reads the cache instead of recomputing
        cached['stats']['s1_asc']['mean'] = [100.0, 200.0]
        with open(path, 'w') as f:
            json.dump(cached, f)
        again = TreeSatAITimeSeriesDataModule(root, sensors=('aerial', 's1_asc'))
        again.setup('test')
        assert again.normalizer is not None
        assert again.normalizer.stats('s1_asc')[0].tolist() == [100.0, 200.0]

    def test_stats_path_depends_on_config(self, root: str) -> None:
        paths = set()
        for kwargs in (
            {'sensors': ('s2',)},
            {'sensors': ('s2',), 's2_masks': True},
            {'sensors': ('s2',), 'label_threshold': 0.2},
            {'sensors': ('aerial', 's2')},
            {'sensors': ('aerial', 's2'), 'modalities': ['s2']},
            {'sensors': ('s2',), 'stats': 'robust'},
        ):
            dm = TreeSatAITimeSeriesDataModule(root, **kwargs)
            dm.setup('test')
            paths.add(dm.stats_path())
        assert len(paths) == 6

    @pytest.mark.parametrize('what', ['split list', 'labels', 'time series'])
    def test_stats_cache_follows_content(
        self,
        root: str,
        what: str,
        edit_in_place: Callable[[str, Callable[[str], None]], None],
    ) -> None:
        dm = TreeSatAITimeSeriesDataModule(root, sensors=('s2',))
        dm.setup('fit')
        assert dm.normalizer is not None
        old_path, old_mean = dm.stats_path(), dm.normalizer.stats('s2')[0]
        train = dm.train_dataset
        assert isinstance(train, TreeSatAITimeSeries)
        split_list, labels = train.list_files()
        match what:
            case 'split list':  # the same patches, in another order
                edit_in_place(split_list, reverse_lines)
            case 'labels':  # a share that still keeps the genus
                edit_in_place(labels, lambda p: replace_bytes(p, b'0.82', b'0.83'))
            case 'time series':
                edit_in_place(train.files()[0], raise_first_s2_value)
        again = TreeSatAITimeSeriesDataModule(root, sensors=('s2',))
        again.setup('fit')
        assert again.stats_path() != old_path
        assert again.normalizer is not None
        new_mean = again.normalizer.stats('s2')[0]
        assert torch.equal(new_mean, old_mean) == (what != 'time series')

    def test_test_stage(self, root: str) -> None:
        dm = TreeSatAITimeSeriesDataModule(root, sensors=('s2',), max_len={'s2': 9})
        dm.setup('test')
        assert dm.val_dataset is None
        assert dm.predict_dataset is dm.test_dataset
        batch = next(iter(dm.test_dataloader()))
        assert batch['image_s2'].shape[:2] == (2, 9)

    def test_after_batch_transfer(self, root: str) -> None:
        dm = TreeSatAITimeSeriesDataModule(root, sensors=('aerial', 's2'), batch_size=4)
        dm.setup('fit')
        batch = next(iter(dm.val_dataloader()))
        raw = {k: v.clone() if isinstance(v, Tensor) else v for k, v in batch.items()}
        # training: the aerial images may be flipped, the time series never
        dm.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
        out = dm.on_after_batch_transfer(batch, 0)
        assert dm.normalizer is not None
        mean, std = dm.normalizer.stats('s2')
        expected = (raw['image_s2'] - mean.view(1, 1, -1, 1, 1)) / std.view(
            1, 1, -1, 1, 1
        )
        torch.testing.assert_close(out['image_s2'], expected.nan_to_num(0.0))
        torch.testing.assert_close(out['valid_s2'], raw['valid_s2'])
        assert not out['image_s2'].isnan().any()
        assert out['image_s2'][~out['valid_s2']].eq(0).all()
        assert torch.equal(out['doy_s2'], raw['doy_s2'])

    def test_aerial_flipped_in_training_only(self, root: str) -> None:
        torch.manual_seed(0)
        dm = TreeSatAITimeSeriesDataModule(root, sensors=('aerial',), batch_size=4)
        dm.setup('fit')
        batch = next(iter(dm.val_dataloader()))

        def normalised(training: bool) -> Tensor:
            dm.trainer = SimpleNamespace(training=training)  # type: ignore[assignment]
            copy = {
                k: v.clone() if isinstance(v, Tensor) else v for k, v in batch.items()
            }
            out: Tensor = dm.on_after_batch_transfer(copy, 0)['image_aerial']
            return out

        reference = normalised(False)
        assert all(torch.equal(normalised(False), reference) for _ in range(4))
        assert any(not torch.equal(normalised(True), reference) for _ in range(8))

    def test_modality_selection(self, root: str) -> None:
        dm = TreeSatAITimeSeriesDataModule(
            root, sensors=('aerial', 's2'), modalities=['s2'], batch_size=2
        )
        dm.setup('fit')
        assert dm.modalities == ('s2',)
        batch = next(iter(dm.train_dataloader()))
        assert set(batch) == {'image_s2', 'valid_s2', 'doy_s2', 'label', 'id', 'year'}
        assert dm.normalizer is not None and dm.normalizer.modalities == ('s2',)

    def test_labels_checked(self, root: str) -> None:
        dm = TreeSatAITimeSeriesDataModule(root, sensors=('s2',))
        dm.num_classes = 16
        with pytest.raises(ValueError, match='multi-hot labels of width 15'):
            dm.setup('fit')

    def test_class_weights(self, root: str) -> None:
        dm = TreeSatAITimeSeriesDataModule(root)
        dm.setup('fit')
        labels = dm.train_labels()
        assert dm.train_dataset is not None
        expected = torch.stack([dm.train_dataset[i]['label'] for i in range(4)])
        torch.testing.assert_close(labels, expected)
        weights = dm.class_weights()
        assert weights.shape == (15,)
        assert weights[TreeSatAITimeSeries.classes.index('Alnus')] == 0
        assert weights[TreeSatAITimeSeries.classes.index('Tilia')] > 0

    def test_invalid_max_len(self) -> None:
        with pytest.raises(ValueError, match='max_len keys'):
            TreeSatAITimeSeriesDataModule(
                DATA, sensors=('aerial', 's2'), max_len={'s1_asc': 9}
            )

    def test_download_in_prepare_data(self, tmp_path: Path) -> None:
        dm = TreeSatAITimeSeriesDataModule(str(tmp_path), sensors=('s2',))
        dm.prepare_data()  # download=False: nothing to do
        with pytest.raises(FileNotFoundError, match=r'sentinel-ts\.zip'):
            dm.setup('fit')


def experiment_args(root: str, tmp_path: Path) -> list[str]:
    """Command-line arguments running the headline experiment on the fake data."""
    with open(CONFIG) as f:
        encoders = yaml.safe_load(f)['model']['init_args']['encoders']
    # a ResNet-18 instead of the ResNet-50 keeps the run short on a CPU
    encoders['aerial']['model'] = 'resnet18'
    # 4 fake training patches: the batch of 128 would leave no full training batch
    args = fast_dev_run_args(
        CONFIG, root, tmp_path / 'logs', batch_size=2, num_workers=0
    )
    return [*args, '--model.init_args.encoders', json.dumps(encoders)]


def test_experiment_config(capsys: pytest.CaptureFixture[str]) -> None:
    from torchgeo_colearn.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(['fit', '--config', CONFIG, '--print_config'])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    model, data = config['model']['init_args'], config['data']['init_args']
    assert config['data']['class_path'].endswith('TreeSatAITimeSeriesDataModule')
    assert (model['task'], model['num_labels'], model['embed_dim']) == (
        'multilabel',
        15,
        64,
    )
    assert model['encoders']['aerial']['model'] == 'resnet50'
    assert model['encoders']['s2']['pooling'] == 'mean'
    # the masks are appended to the 10 bands
    assert data['s2_masks'] is True
    assert model['encoders']['s2']['in_channels'] == [12, 6, 6]
    assert sorted(data['sensors']) == sorted(model['encoders'])


@pytest.mark.usefixtures('tiny_timm')
def test_experiment_fast_dev_run(root: str, tmp_path: Path) -> None:
    from torchgeo.main import main as torchgeo_main

    from torchgeo_colearn.main import main

    args = experiment_args(root, tmp_path)
    main(['fit', *args])
    assert glob.glob(os.path.join(root, 'colearn_stats_aerial-s2_masks_*.json'))
    main(['test', *args])
    torchgeo_main(['fit', *args])
