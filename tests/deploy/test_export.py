# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import glob
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import numpy_helper

from torchgeo_colearn.deploy.export import (
    METADATA_KEY,
    OUTPUT_NAME,
    ExportFormat,
    example_input,
    export_model,
    read_metadata,
)
from torchgeo_colearn.main import main

from ..fakes import synthetic_args
from .conftest import synthetic_task

#: Exported models must reproduce the task within this (float32 arithmetic, other kernels).
TOLERANCE = 1e-5

pytestmark = pytest.mark.filterwarnings(
    'ignore:.*have no.*:UserWarning', 'ignore::FutureWarning'
)


def run_exported(
    path: str, format: ExportFormat, x: torch.Tensor, name: str
) -> np.ndarray:
    """Run an exported file the way a user would, without this package."""
    match format:
        case 'onnx':
            session = onnxruntime.InferenceSession(path)
            assert [i.name for i in session.get_inputs()] == [name]
            assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
            output: np.ndarray = session.run(None, {name: x.numpy()})[0]
            return output
        case 'torchscript':
            model = torch.jit.load(path)
            with torch.no_grad():
                result: np.ndarray = model(x).numpy()
            return result


@pytest.mark.parametrize('format', ['onnx', 'torchscript'])
@pytest.mark.parametrize(
    'family,modality,fill_nan',
    [
        ('tempcnn with masks', 's1', True),
        ('tempcnn without masks', 's2', False),
        ('mlp', 'dem', True),
        ('timm', 'img', True),
    ],
)
def test_encoder_families(
    family: str,
    modality: str,
    fill_nan: bool,
    format: ExportFormat,
    tmp_path: Path,
    tiny_timm: None,
) -> None:
    task = synthetic_task(fill_nan=fill_nan, modalities=('s1', 's2', 'dem', 'img'))
    path = str(tmp_path / f'model.{format}')
    metadata = export_model(task, modality, path, format)
    assert metadata['check']['max_abs_diff'] < TOLERANCE
    if family == 'timm':
        # images keep the training size (the encoder takes any): what ONNX Runtime runs reliably
        assert metadata['input']['shape'] == [None, 4, 8, 8]
    # a batch size and values the export never saw
    x = example_input(task, modality, 5) * 1.5
    if family == 'tempcnn with masks':
        x[1, :2] = float('nan')  # missing steps: masked out of the mean
        x[2, 3, 0] = float('nan')  # a missing value: set to the channel mean
        x = torch.cat([x, x[:, :3]], 1)  # another number of time steps
    expected = task.predict_raw({modality: x}).numpy()
    output = run_exported(path, format, x, f'image_{modality}')
    assert output.shape == expected.shape
    assert np.abs(output - expected).max() < TOLERANCE
    assert read_metadata(path) == {k: v for k, v in metadata.items() if k != 'check'}


@pytest.mark.parametrize('format', ['onnx', 'torchscript'])
@pytest.mark.parametrize('task_type', ['binary', 'multilabel', 'regression'])
def test_task_types(task_type: str, format: ExportFormat, tmp_path: Path) -> None:
    task = synthetic_task(task_type)  # type: ignore[arg-type]
    path = str(tmp_path / f'model.{format}')
    metadata = export_model(task, 's1', path, format)
    x = example_input(task, 's1', 4)
    expected = task.predict_raw({'s1': x}).numpy()
    output = run_exported(path, format, x, 'image_s1')
    assert np.abs(output - expected).max() < TOLERANCE
    assert metadata['task_type'] == task_type
    width = {'binary': None, 'multilabel': 4, 'regression': None}[task_type]
    assert metadata['output']['shape'] == ([None] if width is None else [None, width])
    if task_type == 'regression':
        # values in target units: the target statistics are part of the model
        assert metadata['output']['meaning'].startswith('value in target units')


def test_metadata(tmp_path: Path) -> None:
    task = synthetic_task('multiclass')
    path = str(tmp_path / 'model.onnx')
    metadata = export_model(task, 's1', path, checkpoint='/somewhere/best.ckpt')
    assert metadata['modality'] == 's1'
    assert metadata['input']['name'] == 'image_s1'
    assert metadata['input']['shape'] == [
        None,
        None,
        3,
    ]  # batch and time steps are dynamic
    assert metadata['input']['bands'] == ['channel_0', 'channel_1', 'channel_2']
    assert metadata['input']['units'] == ['arbitrary'] * 3
    assert metadata['input']['time_steps'] == '6 synthetic steps'
    assert metadata['output']['shape'] == [None, 3]
    assert metadata['task_type'] == 'multiclass'
    assert metadata['classes'] is None
    assert metadata['method'] == 'torchgeo_colearn.trainers.colearn.CoLearnTask'
    assert metadata['training_data']['datamodule'].endswith(
        'SyntheticMultiSensorDataModule'
    )
    assert metadata['training_data']['arguments']['num_samples'] == 60
    assert metadata['checkpoint'] == 'best.ckpt'
    record = task.training_inputs
    assert record is not None
    assert metadata['normalization']['mean'] == record.stats['s1'][0].tolist()
    proto = onnx.load(path)
    keys = [p.key for p in proto.metadata_props]
    assert keys == [METADATA_KEY]
    # only what the modality's prediction uses: s2 (as large as s1), dem, the auxiliary head and the
    # discriminators are left out
    exported = sum(numpy_helper.to_array(t).size for t in proto.graph.initializer)
    total = sum(t.numel() for t in (*task.parameters(), *task.buffers()))
    assert 0 < exported < total / 2


def test_bad_format_and_metadata(tmp_path: Path) -> None:
    task = synthetic_task()
    with pytest.raises(ValueError, match='format must be one of'):
        export_model(task, 's1', str(tmp_path / 'm.x'), 'tflite')  # type: ignore[arg-type]
    plain = str(tmp_path / 'plain.onnx')
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], 'g', [], [])), plain)
    with pytest.raises(ValueError, match='not written by colearn export'):
        read_metadata(plain)
    scripted = str(tmp_path / 'plain.pt')
    torch.jit.save(torch.jit.script(torch.nn.Identity()), scripted)
    with pytest.raises(ValueError, match='not written by colearn export'):
        read_metadata(scripted)


def test_cli_from_colearn_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = {'max_epochs': 1, 'limit_train_batches': 1, 'limit_val_batches': 1}
    main(['fit', *synthetic_args(tmp_path, **trainer)])
    (checkpoint,) = glob.glob(str(tmp_path / '**' / '*.ckpt'), recursive=True)
    output = str(tmp_path / 's1.pt')
    main(
        [
            'export',
            '--ckpt_path',
            checkpoint,
            '--modality',
            's1',
            '--format',
            'torchscript',
            '--output',
            output,
        ]
    )
    assert f'Wrote {output} (torchscript' in capsys.readouterr().out
    metadata = read_metadata(output)
    assert metadata['modality'] == 's1' and metadata['checkpoint'] == os.path.basename(
        checkpoint
    )
    with pytest.raises(SystemExit):
        main(['export', '--ckpt_path', checkpoint, '--modality', 's1'])
