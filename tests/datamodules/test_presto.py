# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
import shutil
from pathlib import Path

import pytest
import torch

from torchgeo_colearn.datamodules.presto import (
    AlgaeBloomsDataModule,
    FuelMoistureDataModule,
    PrestoDataModule,
)
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset
from torchgeo_colearn.main import main
from torchgeo_colearn.trainers.colearn import CoLearnTask

from ..fakes import FAKE_DATA, REAL_DATA, fast_dev_run_args

FUEL = os.path.join(FAKE_DATA, 'presto', 'fuel_moisture')
ALGAE = os.path.join(FAKE_DATA, 'presto', 'algae_blooms')
EXPERIMENTS = os.path.join(os.path.dirname(__file__), '..', '..', 'experiments')
REAL_FUEL = os.path.join(REAL_DATA, 'presto_fuel_moisture')
REAL_ALGAE = os.path.join(REAL_DATA, 'presto_algae_blooms')


def splits(
    dm: PrestoDataModule,
) -> tuple[TensorMultiModalDataset, TensorMultiModalDataset, TensorMultiModalDataset]:
    out = (dm.train_dataset, dm.val_dataset, dm.test_dataset)
    assert all(isinstance(d, TensorMultiModalDataset) for d in out)
    return out  # type: ignore[return-value]


def sites(dataset: TensorMultiModalDataset) -> set[str]:
    return set(dataset.attribute('site').tolist())


class TestFuelMoistureDataModule:
    def test_shipped_split_with_site_validation(self) -> None:
        validated: list[str] = []
        for fold in range(3):
            dm = FuelMoistureDataModule(root=FUEL, num_folds=3, fold=fold)
            dm.setup('fit')
            train, val, test = splits(dm)
            assert len(test) == 8 and sites(test) == {'Site 6, CA', 'Site 7, CA'}
            assert len(train) + len(val) == 32
            assert not sites(train) & sites(val)
            assert not (sites(train) | sites(val)) & sites(test)
            validated.extend(val.ids or [])
            assert dm.split_summary()['split'] == 'shipped'
        assert len(validated) == len(set(validated)) == 32

    def test_val_is_test(self) -> None:
        dm = FuelMoistureDataModule(root=FUEL, val_is_test=True)
        dm.setup('fit')
        train, val, test = splits(dm)
        assert (len(train), len(test)) == (32, 8) and val.ids == test.ids
        dm = FuelMoistureDataModule(root=FUEL, val_is_test=True, fold=1)
        with pytest.raises(ValueError, match='only fold 0'):
            dm.setup('fit')

    def test_site_grouped_kfold(self) -> None:
        tested: list[str] = []
        for fold in range(4):
            dm = FuelMoistureDataModule(
                root=FUEL, split='kfold', num_folds=4, fold=fold
            )
            dm.setup('fit')
            train, val, test = splits(dm)
            assert not sites(train) & sites(test) and not sites(val) & sites(test)
            assert not sites(train) & sites(val)
            tested.extend(test.ids or [])
            summary = dm.split_summary()
            assert summary['test']['groups'] == len(sites(test))
        assert len(tested) == len(set(tested)) == 40

    def test_four_sensors_normalised(self) -> None:
        dm = FuelMoistureDataModule(root=FUEL, batch_size=64, num_folds=3)
        dm.setup('fit')
        assert dm.modalities == ('s1', 's2', 'weather', 'topography')
        batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
        assert batch['image_s2'].shape[1:] == (3, 12)
        assert batch['image_topography'].shape[1:] == (2,)
        for modality in dm.modalities:
            x = batch[f'image_{modality}']
            channels = x.reshape(-1, x.shape[-1])
            assert torch.allclose(channels.mean(0), torch.zeros(x.shape[-1]), atol=1e-4)

    def test_shipped_needs_is_test(self, tmp_path: Path) -> None:
        root = tmp_path / 'data'
        shutil.copytree(FUEL, root)
        os.remove(root / 'is_test.npy')
        os.remove(root / 'train_test_split.json')
        dm = FuelMoistureDataModule(root=str(root))
        with pytest.raises(KeyError, match="no per-sample attribute 'is_test'"):
            dm.setup('fit')

    def test_bad_split(self) -> None:
        with pytest.raises(ValueError, match="split must be 'shipped' or 'kfold'"):
            FuelMoistureDataModule(root=FUEL, split='random')


class TestAlgaeBloomsDataModule:
    def test_multiclass(self) -> None:
        dm = AlgaeBloomsDataModule(root=ALGAE, num_folds=4)
        dm.setup('fit')
        train, val, test = splits(dm)
        assert (len(train) + len(val), len(test)) == (20, 10)
        assert dm.classes == ('1', '2', '3', '4', '5')
        assert dm.train_labels().dtype == torch.int64
        assert dm.class_weights(5).shape == (5,)

    def test_regression_and_latlon_folds(self) -> None:
        dm = AlgaeBloomsDataModule(
            root=ALGAE,
            task='regression',
            split='kfold',
            num_folds=3,
            group_by='latlon_block',
            block_size=10.0,
        )
        dm.setup('fit')
        assert dm.train_labels().dtype == torch.float32
        assert dm.classes is None
        summary = dm.split_summary()
        assert summary['group_by'] == 'latlon_block' and summary['block_size'] == 10.0


class TestExperiments:
    def args(self, name: str, root: str, tmp_path: Path) -> list[str]:
        config = os.path.join(EXPERIMENTS, f'{name}.yaml')
        return fast_dev_run_args(config, root, tmp_path, num_folds=3, batch_size=8)

    def test_fuel_moisture(self, tmp_path: Path) -> None:
        args = self.args('fuel_moisture', FUEL, tmp_path)
        cli = main(['fit', *args])
        assert cli is not None and isinstance(cli.model, CoLearnTask)
        assert cli.model.modalities == ('s1', 's2', 'weather', 'topography')
        main(['test', *args])

    def test_algae_blooms(self, tmp_path: Path) -> None:
        cli = main(['fit', *self.args('algae_blooms', ALGAE, tmp_path)])
        assert cli is not None and cli.trainer.state.finished


@pytest.mark.skipif(
    not os.path.isdir(REAL_FUEL), reason='real fuel-moisture data absent'
)
def test_real_fuel_moisture_splits() -> None:
    dm = FuelMoistureDataModule(root=REAL_FUEL, val_is_test=True)
    dm.setup('fit')
    summary = dm.split_summary()
    assert summary['train'] == {'groups': 100, 'samples': 1578}
    assert summary['test'] == {'groups': 50, 'samples': 735}
    dm = FuelMoistureDataModule(root=REAL_FUEL)
    dm.setup('fit')
    summary = dm.split_summary()
    assert summary['val']['groups'] == 10
    assert summary['train']['samples'] + summary['val']['samples'] == 1578
    dm = FuelMoistureDataModule(root=REAL_FUEL, split='kfold')
    dm.setup('fit')
    summary = dm.split_summary()
    assert summary['test']['groups'] == 15
    assert 200 < summary['test']['samples'] < 260


@pytest.mark.skipif(
    not os.path.isdir(REAL_ALGAE), reason='real algae-bloom data absent'
)
def test_real_algae_blooms_splits() -> None:
    dm = AlgaeBloomsDataModule(root=REAL_ALGAE, val_is_test=True)
    dm.setup('fit')
    train, _, test = splits(dm)
    assert (len(train), len(test)) == (777, 345)


def test_modality_info() -> None:
    dm = FuelMoistureDataModule(root=FUEL, num_folds=3, modalities=['s2', 'topography'])
    dm.setup('fit')
    info = dm.modality_info()
    assert list(info) == ['s2', 'topography']
    steps = dm.sample_shape('s2')[0]
    assert info['s2'].shape == (steps, 12) and info['s2'].bands[-1] == 'NDVI'
    assert info['s2'].time_steps == f'{steps} monthly composites'
    assert info['topography'].bands == ('elevation', 'slope')
    assert info['topography'].units == ('m', 'degrees')
