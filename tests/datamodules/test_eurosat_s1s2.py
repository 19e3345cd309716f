# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Tests of the EuroSAT S1+S2 datamodule."""

import glob
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rasterio
import torch
from torch import Tensor

from torchgeo_colearn.datamodules.eurosat_s1s2 import EuroSATS1S2DataModule
from torchgeo_colearn.transforms import ModalityNormalizer

from ..fakes import fake_data_copy, fast_dev_run_args

FAKE_SIZE = 16  # the fake patches are 16 x 16 pixels, the real ones 64 x 64


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A writable copy of the fake data (the statistics cache is written there)."""
    return fake_data_copy('eurosat_s1s2', tmp_path)


def fake_datamodule(root: str, **kwargs: Any) -> EuroSATS1S2DataModule:
    """The datamodule on the 16 x 16 fake patches."""
    return EuroSATS1S2DataModule(root, patch_size=FAKE_SIZE, **kwargs)


def whole_training_batch(datamodule: EuroSATS1S2DataModule) -> dict[str, Tensor]:
    """The 4 fake training samples as one normalised batch."""
    batch = next(iter(datamodule.train_dataloader()))
    out: dict[str, Tensor] = datamodule.on_after_batch_transfer(batch, 0)
    return out


def test_normalised_batches(root: str) -> None:
    datamodule = fake_datamodule(root, batch_size=4, augment=False)
    datamodule.setup('fit')
    assert datamodule.modalities == ('s1', 's2')
    batch = whole_training_batch(datamodule)
    assert batch['image_s1'].shape == (4, 2, 16, 16)
    assert batch['image_s2'].shape == (4, 13, 16, 16)
    assert batch['label'].shape == (4,)
    assert sorted(batch['id']) == sorted(datamodule.train_dataset.ids)  # type: ignore[union-attr]
    # statistics of the training split: each band of the whole split has mean 0 and std 1
    for key, channels in (('image_s1', 2), ('image_s2', 13)):
        x = batch[key].transpose(0, 1).reshape(channels, -1)
        torch.testing.assert_close(x.mean(1), torch.zeros(channels), atol=1e-4, rtol=0)
        torch.testing.assert_close(
            x.std(1, unbiased=False), torch.ones(channels), atol=1e-4, rtol=0
        )

    val = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    assert val['image_s2'].shape == (2, 13, 16, 16)


def test_stats_cache(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    datamodule = fake_datamodule(root, batch_size=4, augment=False)
    datamodule.setup('fit')
    path = datamodule.stats_path()
    assert path is not None
    assert re.fullmatch(
        re.escape(os.path.join(root, 'eurosat_s1s2_stats_s1-all_s2-all_'))
        + r'[0-9a-f]{16}\.json',
        path,
    )
    with open(path) as f:
        cached = json.load(f)
    assert len(cached['stats']['s1']['mean']) == 2
    assert len(cached['stats']['s2']['std']) == 13
    assert cached['warnings'] == []

    # a second datamodule reads the cache instead of streaming the training split again
    def fail() -> None:
        raise AssertionError('statistics recomputed')

    monkeypatch.setattr(EuroSATS1S2DataModule, 'compute_stats', lambda self: fail())
    cached['stats']['s1']['mean'] = [100.0, 200.0]
    with open(path, 'w') as f:
        json.dump(cached, f)
    reused = fake_datamodule(root, batch_size=2)
    reused.setup('test')
    assert reused.normalizer is not None
    mean, _ = reused.normalizer.stats('s1')
    torch.testing.assert_close(mean, torch.tensor([100.0, 200.0]))
    batch = next(iter(reused.test_dataloader()))
    assert reused.on_after_batch_transfer(batch, 0)['image_s1'].shape == (2, 2, 16, 16)
    assert reused.state_dict()['stats']['s1']['mean'] == [100.0, 200.0]


def stats_after_setup(root: str) -> tuple[str | None, Tensor]:
    """The cache file and the S2 means of a datamodule set up for fitting."""
    datamodule = fake_datamodule(root, batch_size=2)
    datamodule.setup('fit')
    assert datamodule.normalizer is not None
    return datamodule.stats_path(), datamodule.normalizer.stats('s2')[0]


def test_stats_cache_follows_pixels(
    root: str, edit_in_place: Callable[[str, Callable[[str], None]], None]
) -> None:
    old_path, old_mean = stats_after_setup(root)
    path = os.path.join(root, 'eurosat_s2', 'all_imgs', 'Forest', 'Forest_7.tif')

    def brighten(tif: str) -> None:
        with rasterio.open(tif, 'r+') as f:
            band = f.read(1)
            band[0, 0] += 5000
            f.write(band, 1)

    edit_in_place(path, brighten)
    new_path, new_mean = stats_after_setup(root)
    assert new_path != old_path and os.path.exists(new_path or '')
    assert new_mean[0] > old_mean[0]


def test_stats_cache_follows_split_lists(root: str) -> None:
    old_path, old_mean = stats_after_setup(root)
    # Forest_12 moves from the validation to the training split, SeaLake_3 the other way
    for sensor in ('eurosat_s1', 'eurosat_s2'):
        for split, swap in (
            ('train', ('SeaLake_3', 'Forest_12')),
            ('val', ('Forest_12', 'SeaLake_3')),
        ):
            path = os.path.join(root, sensor, f'eurosat-{split}.txt')
            with open(path) as f:
                content = f.read()
            with open(path, 'w') as f:
                f.write(content.replace(*swap))
    new_path, new_mean = stats_after_setup(root)
    assert new_path != old_path
    assert not torch.equal(new_mean, old_mean)


def test_band_selection(root: str) -> None:
    datamodule = fake_datamodule(
        root, bands_s1=['VV'], bands_s2=['B04', 'B03', 'B02'], batch_size=2
    )
    datamodule.setup('validate')
    path = datamodule.stats_path()
    assert path is not None and '_stats_s1-VV_s2-B04-B03-B02_' in path
    batch = datamodule.on_after_batch_transfer(
        next(iter(datamodule.val_dataloader())), 0
    )
    assert batch['image_s1'].shape == (2, 1, 16, 16)
    assert batch['image_s2'].shape == (2, 3, 16, 16)


def test_predict(root: str) -> None:
    datamodule = fake_datamodule(root, batch_size=2)
    datamodule.setup('predict')
    batch = next(iter(datamodule.predict_dataloader()))
    assert sorted(batch['id']) == ['AnnualCrop_5', 'Residential_11']


def test_shared_flips(root: str) -> None:
    torch.manual_seed(0)
    datamodule = fake_datamodule(root, batch_size=4)
    datamodule.setup('fit')
    # identity statistics, so that the output shows the flips only
    datamodule.normalizer = ModalityNormalizer(
        {'s1': (torch.zeros(2), torch.ones(2)), 's2': (torch.zeros(13), torch.ones(13))}
    )
    datamodule.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    flipped = 0
    for _ in range(5):
        batch = next(iter(datamodule.train_dataloader()))
        batch['image_s2'][:, :2] = batch['image_s1']
        original = batch['image_s1'].clone()
        out = datamodule.on_after_batch_transfer(batch, 0)
        torch.testing.assert_close(out['image_s2'][:, :2], out['image_s1'])
        flipped += int(not torch.equal(out['image_s1'], original))
    assert flipped > 0


def test_missing_data(tmp_path: Path) -> None:
    datamodule = fake_datamodule(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'eurosat_s1\.zip'):
        datamodule.setup('fit')


def experiment_args(root: str, tmp_path: Path) -> list[str]:
    """Command-line arguments running the headline experiment on the fake data."""
    # 4 fake training samples: the default batch of 64 would leave no full training batch
    config = os.path.join('experiments', 'eurosat_sar.yaml')
    return fast_dev_run_args(
        config, root, tmp_path, batch_size=2, num_workers=0, patch_size=FAKE_SIZE
    )


def test_experiment_config(
    root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchgeo_colearn.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(['fit', *experiment_args(root, tmp_path), '--print_config'])
    assert exit_info.value.code == 0
    config = capsys.readouterr().out
    assert (
        'class_path: torchgeo_colearn.datamodules.eurosat_s1s2.EuroSATS1S2DataModule'
        in config
    )
    assert 'num_classes: 10' in config
    assert f'root: {root}' in config


@pytest.mark.usefixtures('tiny_timm')
def test_experiment_fast_dev_run(root: str, tmp_path: Path) -> None:
    from torchgeo.main import main as torchgeo_main

    from torchgeo_colearn.main import main

    args = experiment_args(root, tmp_path)
    main(['fit', *args])
    assert (
        len(glob.glob(os.path.join(root, 'eurosat_s1s2_stats_s1-all_s2-all_*.json')))
        == 1
    )
    main(['test', *args])
    torchgeo_main(['fit', *args])


def test_modality_info(root: str) -> None:
    datamodule = fake_datamodule(root, bands_s2=['B04', 'B03', 'B02'])
    datamodule.setup('fit')
    info = datamodule.modality_info()
    assert info['s1'].shape == (2, FAKE_SIZE, FAKE_SIZE)
    assert info['s1'].bands == ('VV', 'VH') and info['s1'].units == ('dB', 'dB')
    assert info['s2'].bands == ('B04', 'B03', 'B02')
    assert info['s2'].units == ('reflectance x 10^4',) * 3
    assert datamodule.classes is not None and len(datamodule.classes) == 10


def test_predict_split(root: str) -> None:
    datamodule = fake_datamodule(root, predict_split='val')
    datamodule.setup('predict')
    assert datamodule.predict_dataset is datamodule.val_dataset is not None


def test_setup_reads_no_split_for_gaps(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both images of every pair are required: nothing to look for, no extra read of the data
    def read(*args: object) -> None:
        raise AssertionError('the splits were read to find missing modalities')

    monkeypatch.setattr('torchgeo_colearn.datamodules.base.select_samples', read)
    datamodule = fake_datamodule(root, batch_size=4, augment=False)
    datamodule.setup('fit')
    assert datamodule.incomplete_modalities == ()
    assert not any(k.startswith('present_') for k in whole_training_batch(datamodule))
