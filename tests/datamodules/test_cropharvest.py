# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import glob
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from torchgeo_colearn.datamodules.cropharvest import CropHarvestDataModule
from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset

from ..fakes import fake_data_copy, fast_dev_run_args

GROUPS = {'s1': ['s1'], 's2': ['s2', 'ndvi']}

pytestmark = pytest.mark.filterwarnings('ignore:.*have no.*:UserWarning')


@pytest.fixture
def root(tmp_path: Path) -> str:
    return fake_data_copy('cropharvest', tmp_path)


def split_ids(dm: CropHarvestDataModule) -> tuple[set[str], set[str], set[str]]:
    ids = []
    for dataset in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        assert isinstance(dataset, TensorMultiModalDataset)
        assert dataset.ids is not None
        ids.append(set(dataset.ids))
    return ids[0], ids[1], ids[2]


class TestCropHarvestDataModule:
    @pytest.mark.parametrize('task,total', [('binary', 40), ('multiclass', 30)])
    def test_folds(self, root: str, task: str, total: int) -> None:
        tests = []
        for fold in range(10):
            dm = CropHarvestDataModule(root, task=task, fold=fold)  # type: ignore[arg-type]
            dm.setup('fit')
            train, val, test = split_ids(dm)
            assert not train & val and not train & test and not val & test
            assert len(train | val | test) == total
            tests.append(test)
        everything = set().union(*tests)
        assert len(everything) == total == sum(len(t) for t in tests)

    def test_val_is_test(self, root: str) -> None:
        dm = CropHarvestDataModule(root, fold=3, val_is_test=True)
        dm.setup('fit')
        train, val, test = split_ids(dm)
        assert val == test
        assert len(train) + len(test) == 40

    def test_seed_changes_folds(self, root: str) -> None:
        folds = []
        for seed in (10, 11):
            dm = CropHarvestDataModule(root, seed=seed)
            dm.setup('test')
            folds.append(split_ids(dm)[2])
        assert folds[0] != folds[1]

    def test_normalised_batches(self, root: str) -> None:
        dm = CropHarvestDataModule(root, modality_groups=GROUPS, batch_size=4)
        dm.setup('fit')
        assert dm.modalities == ('s1', 's2')
        batch = next(iter(dm.train_dataloader()))
        assert batch['image_s1'].shape == (4, 12, 2)
        assert batch['image_s2'].shape == (4, 12, 12)
        assert batch['label'].dtype == torch.int64
        assert len(batch['id']) == 4
        batch = dm.on_after_batch_transfer(batch, 0)
        assert batch['valid_s1'].shape == (4, 12)
        # the whole training split, normalised, has per-channel mean 0 and std 1
        train = dm.train_dataset
        assert isinstance(train, TensorMultiModalDataset)
        whole = dm.on_after_batch_transfer(train.batch(range(len(train))), 0)
        for key in ('image_s1', 'image_s2'):
            values = whole[key].flatten(0, 1)
            torch.testing.assert_close(
                values.mean(0), torch.zeros(values.shape[1]), atol=1e-4, rtol=0
            )
            torch.testing.assert_close(
                values.std(0, unbiased=False),
                torch.ones(values.shape[1]),
                atol=1e-4,
                rtol=0,
            )

    def test_modality_selection(self, root: str) -> None:
        dm = CropHarvestDataModule(
            root, modality_groups=GROUPS, modalities=['s2'], batch_size=4
        )
        dm.setup('fit')
        assert dm.modalities == ('s2',)
        batch = next(iter(dm.train_dataloader()))
        assert [k for k in batch if k.startswith('image_')] == ['image_s2']
        with pytest.raises(ValueError, match=r"available modalities: \['s1', 's2'\]"):
            CropHarvestDataModule(
                root, modality_groups=GROUPS, modalities=['ndvi']
            ).setup('fit')

    def test_default_modalities(self, root: str) -> None:
        dm = CropHarvestDataModule(root, batch_size=2)
        dm.setup('test')
        assert dm.modalities == ('s1', 's2', 'ndvi', 'weather', 'dem')
        batch = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
        assert batch['image_dem'].shape == (2, 2)
        assert torch.isfinite(batch['image_dem']).all()

    def test_class_weights(self, root: str) -> None:
        dm = CropHarvestDataModule(root, task='multiclass')
        dm.setup('fit')
        weights = dm.class_weights(10)
        assert weights.shape == (10,)
        assert (weights > 0).all()

    def test_class_weights_absent_class(self, root: str) -> None:
        path = os.path.join(root, 'labels.geojson')
        with open(path) as f:
            content: dict[str, Any] = json.load(f)
        for feature in content['features']:
            if feature['properties']['classification_label'] == 'other':
                feature['properties']['classification_label'] = 'sugar'
        with open(path, 'w') as f:
            json.dump(content, f)
        dm = CropHarvestDataModule(root, task='multiclass')
        dm.setup('fit')
        weights = dm.class_weights(10)
        assert weights.shape == (10,)
        assert weights[9] == 0 and (weights[:9] > 0).all()

    def test_binary_class_weights(self, root: str) -> None:
        dm = CropHarvestDataModule(root)
        dm.setup('fit')
        labels = dm.train_labels()
        counts = torch.bincount(labels, minlength=2).float()
        torch.testing.assert_close(dm.class_weights(), len(labels) / (2 * counts))

    def test_loaded_once(self, root: str, monkeypatch: pytest.MonkeyPatch) -> None:
        dm = CropHarvestDataModule(root)
        dm.setup('fit')
        monkeypatch.setattr(dm, 'load_dataset', lambda: pytest.fail('loaded twice'))
        dm.setup('test')
        assert len(dm.test_dataset) == 4  # type: ignore[arg-type]

    def test_state_dict_keeps_stats(self, root: str) -> None:
        dm = CropHarvestDataModule(root, modality_groups=GROUPS)
        dm.setup('fit')
        state = dm.state_dict()
        assert set(state['stats']) == {'s1', 's2'}
        assert len(state['stats']['s2']['mean']) == 12


def experiment_args(config: str, root: str, tmp_path: Path) -> list[str]:
    # 32 fake training samples: the default batch of 128 would leave no full training batch
    path = os.path.join('experiments', config)
    return fast_dev_run_args(path, root, tmp_path, batch_size=4)


@pytest.mark.parametrize(
    'config,task',
    [
        ('cropharvest_binary.yaml', 'binary'),
        ('cropharvest_multiclass.yaml', 'multiclass'),
    ],
)
def test_experiment_config(
    config: str,
    task: str,
    root: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from torchgeo_colearn.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                'fit',
                *experiment_args(config, 'data/cropharvest', tmp_path),
                '--print_config',
            ]
        )
    assert exit_info.value.code == 0
    config_text = capsys.readouterr().out
    assert (
        'class_path: torchgeo_colearn.datamodules.cropharvest.CropHarvestDataModule'
        in config_text
    )
    assert f'task: {task}' in config_text
    assert 'root: data/cropharvest' in config_text
    assert ('num_classes: 10' in config_text) == (task == 'multiclass')


@pytest.mark.parametrize(
    'config', ['cropharvest_binary.yaml', 'cropharvest_multiclass.yaml']
)
def test_experiment_fast_dev_run(config: str, root: str, tmp_path: Path) -> None:
    from torchgeo.main import main as torchgeo_main

    from torchgeo_colearn.main import main

    args = experiment_args(config, root, tmp_path)
    main(['fit', *args])
    assert len(glob.glob(os.path.join(root, 'colearn_cache_*.pt'))) == 1
    main(['test', *args])
    torchgeo_main(['fit', *args])


def test_modality_info(root: str) -> None:
    dm = CropHarvestDataModule(
        root, modality_groups={**GROUPS, 'dem': ['dem']}, modalities=['s2', 'dem']
    )
    dm.setup('fit')
    info = dm.modality_info()
    assert list(info) == ['s2', 'dem']
    assert info['s2'].shape == (12, 12)
    assert info['s2'].bands == (
        'B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B8A', 'B9', 'B11', 'B12', 'NDVI'
    )  # fmt: skip
    assert info['s2'].units[0] == 'reflectance x 10^4' and info['s2'].units[-1] == '1'
    assert info['dem'].shape == (2,) and info['dem'].time_steps is None
    assert dm.classes == ('non_crop', 'crop')
    # every base modality on its own by default
    default = CropHarvestDataModule(root)
    default.setup('fit')
    assert list(default.modality_info()) == ['s1', 's2', 'ndvi', 'weather', 'dem']
    assert default.modality_info()['weather'].units == ('K', 'm')
