# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import dataclasses
from pathlib import Path

import pytest
import torch

from torchgeo_colearn import CoLearnTask, SyntheticMultiSensorDataModule
from torchgeo_colearn.datasets.cropharvest_layout import TIME_STEPS
from torchgeo_colearn.deploy import (
    CHECKPOINT_KEY,
    RawInputModel,
    TrainingInputs,
    load_task,
    training_inputs_of,
)
from torchgeo_colearn.deploy.inputs import FORMAT_VERSION

from .conftest import cropharvest_datamodule, cropharvest_task, synthetic_task

pytestmark = pytest.mark.filterwarnings('ignore:.*have no.*:UserWarning')


class TestRecord:
    def test_fit_records_and_checkpoint_restores(
        self, cropharvest_checkpoint: str
    ) -> None:
        checkpoint = torch.load(cropharvest_checkpoint, weights_only=False)
        saved = checkpoint[CHECKPOINT_KEY]
        assert saved['format'] == FORMAT_VERSION
        assert saved['task'] == 'torchgeo_colearn.trainers.colearn.CoLearnTask'
        assert saved['datamodule'].endswith('CropHarvestDataModule')
        assert saved['classes'] == ['non_crop', 'crop']
        assert saved['data']['modality_groups']['s2'] == ['s2', 'ndvi']
        assert saved['data']['split']['num_folds'] == 5
        assert saved['fill_nan'] is True
        assert saved['modalities']['s2']['bands'][-1] == 'NDVI'
        assert saved['modalities']['s1'] == {
            'shape': [12, 2],
            'bands': ['VV', 'VH'],
            'units': ['dB', 'dB'],
            'time_steps': TIME_STEPS,
        }
        assert saved['modalities']['dem']['shape'] == [2]
        # the statistics are those the datamodule saved in the same checkpoint
        assert saved['stats'] == checkpoint['CropHarvestDataModule']['stats']
        task = load_task(cropharvest_checkpoint)
        assert isinstance(task, CoLearnTask) and not task.training
        assert task.training_inputs is not None
        assert task.training_inputs.to_json() == saved

    def test_json_round_trip(self) -> None:
        record = synthetic_task().training_inputs
        assert record is not None
        again = TrainingInputs.from_json(record.to_json())
        assert again.to_json() == record.to_json()
        assert again.modalities == record.modalities

    def test_newer_format(self) -> None:
        record = synthetic_task().training_inputs
        assert record is not None
        values = {**record.to_json(), 'format': FORMAT_VERSION + 1}
        with pytest.raises(ValueError, match='upgrade'):
            TrainingInputs.from_json(values)

    def test_data_arguments_that_survive_json(self) -> None:
        task = synthetic_task()
        dm = SyntheticMultiSensorDataModule(num_samples=30)
        dm.setup('fit')
        dm.kwargs['transforms'] = len  # not JSON: left out of the record
        record = training_inputs_of(task, dm)
        assert record is not None
        assert 'transforms' not in record.data and record.data['num_samples'] == 30

    def test_datamodule_without_normalizer(self) -> None:
        assert training_inputs_of(synthetic_task(), object()) is None

    def test_no_datamodule_no_record(self) -> None:
        task = cropharvest_task()
        task.setup('fit')
        assert task.training_inputs is None

    def test_missing_statistics(self) -> None:
        record = synthetic_task().training_inputs
        assert record is not None
        with pytest.raises(KeyError, match='no training statistics'):
            record.normalizer(['s9'])


class TestPredictRaw:
    def test_equals_normalised_prediction(self, cropharvest_root: str) -> None:
        dm = cropharvest_datamodule(cropharvest_root)
        dm.setup('fit')
        task = cropharvest_task()
        task.training_inputs = training_inputs_of(task, dm)
        task.eval()
        dataset = dm.test_dataset
        raw = dataset.tensors['image_s2'][:6].clone()  # type: ignore[union-attr]
        raw[0, 3] = float('nan')  # a missing month
        assert dm.normalizer is not None
        batch = dm.normalizer({'image_s2': raw.clone()})
        with torch.no_grad():
            expected = task(batch)['s2']
        predicted = task.predict_raw({'s2': raw})
        torch.testing.assert_close(predicted, expected)
        assert predicted.shape == (6,)
        # raw values fed as if normalised give other predictions: the normalisation matters
        with torch.no_grad():
            unnormalised = task({'image_s2': raw.nan_to_num()})['s2']
        assert (unnormalised - expected).abs().max() > 1e-3

    def test_valid_mask_equals_missing_steps(self) -> None:
        task = synthetic_task()
        x = torch.randn(4, 6, 3)
        valid = torch.ones(4, 6, dtype=torch.bool)
        valid[1, :2] = False
        missing = x.clone()
        missing[1, :2] = float('nan')
        torch.testing.assert_close(
            task.predict_raw({'s1': x}, {'s1': valid}),
            task.predict_raw({'s1': missing}),
        )

    def test_fused_scenario_and_restored_mode(self) -> None:
        task = synthetic_task().train()
        x = {'s1': torch.randn(3, 6, 3), 's2': torch.randn(3, 6, 3)}
        assert task.predict_raw(x).shape == (3, 3)
        assert task.training

    def test_raw_input_model(self) -> None:
        task = synthetic_task('regression')
        x = torch.randn(5, 16) * 3 + 1
        model = RawInputModel(task, 'dem').eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), task.predict_raw({'dem': x}))
        with pytest.raises(KeyError, match='unknown modality'):
            RawInputModel(task, 's9')

    def test_no_record(self) -> None:
        with pytest.raises(RuntimeError, match='training normalisation'):
            cropharvest_task().predict_raw({'s1': torch.zeros(2, 12, 2)})

    def test_wrong_shape_names_the_bands(self, cropharvest_root: str) -> None:
        dm = cropharvest_datamodule(cropharvest_root)
        dm.setup('fit')
        task = cropharvest_task()
        task.training_inputs = training_inputs_of(task, dm)
        with pytest.raises(ValueError, match=r'\(B, 12, 2\).*VV \[dB\], VH \[dB\]'):
            task.predict_raw({'s1': torch.zeros(2, 12, 3)})

    def test_wrong_shape_without_description(self) -> None:
        task = synthetic_task()
        assert task.training_inputs is not None
        task.training_inputs = dataclasses.replace(task.training_inputs, modalities={})
        with pytest.raises(ValueError, match=r'expected \(B, 6, 3\)'):
            task.predict_raw({'s2': torch.zeros(2, 5, 3)})

    def test_bad_inputs(self) -> None:
        task = synthetic_task()
        with pytest.raises(ValueError, match='at least one modality'):
            task.predict_raw({})
        with pytest.raises(KeyError, match='unknown modalities'):
            task.predict_raw({'s9': torch.zeros(2, 3)})
        with pytest.raises(TypeError, match='must be a tensor'):
            task.predict_raw({'dem': [[0.0] * 16]})  # type: ignore[dict-item]

    def test_missing_values_without_fill(self) -> None:
        task = synthetic_task(fill_nan=False)
        x = torch.randn(2, 16)
        x[0, 3] = float('nan')
        with pytest.raises(ValueError, match='holds NaN'):
            task.predict_raw({'dem': x})


class TestLoadTask:
    def test_class_path_of_the_cli(
        self, cropharvest_checkpoint: str, tmp_path: Path
    ) -> None:
        checkpoint = torch.load(cropharvest_checkpoint, weights_only=False)
        del checkpoint[CHECKPOINT_KEY]
        # what LightningCLI (colearn fit) saves
        checkpoint['hyper_parameters']['_class_path'] = (
            'torchgeo_colearn.trainers.colearn.CoLearnTask'
        )
        checkpoint['hyper_parameters']['_instantiator'] = (
            'lightning.pytorch.cli.instantiate_module'
        )
        path = str(tmp_path / 'cli.ckpt')
        torch.save(checkpoint, path)
        task = load_task(path)
        assert isinstance(task, CoLearnTask)
        assert task.training_inputs is None

    def test_no_class_path(self, cropharvest_checkpoint: str, tmp_path: Path) -> None:
        checkpoint = torch.load(cropharvest_checkpoint, weights_only=False)
        del checkpoint[CHECKPOINT_KEY]
        path = str(tmp_path / 'plain.ckpt')
        torch.save(checkpoint, path)
        with pytest.raises(ValueError, match='does not name the class'):
            load_task(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match='checkpoint not found'):
            load_task(str(tmp_path / 'nothing.ckpt'))
