#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Largest absolute difference between exported single-modality models and the task, per case.

For each encoder family (TempCNN fed with missing time steps, so with validity masks; TempCNN without masks,
fill_nan off; MLP; a timm ResNet-18) and each task type, builds an untrained MDiCo task whose training inputs
are those of the synthetic datamodule, exports one modality to ONNX and TorchScript with `export_model`, and
compares the files (ONNX Runtime, torch.jit) with `task.predict_raw` on 64 random raw samples not seen by the
export (NaN time steps for the masked case). Prints a markdown table and the export times.

    OMP_NUM_THREADS=1 python benchmarks/export_differences.py
"""

import dataclasses
import os
import tempfile
import time
import warnings

import numpy as np
import onnxruntime
import torch

from torchgeo_colearn import CoLearnTask, SyntheticMultiSensorDataModule
from torchgeo_colearn.datasets.synthetic import ModalityKind
from torchgeo_colearn.deploy import training_inputs_of
from torchgeo_colearn.deploy.export import ExportFormat, example_input, export_model
from torchgeo_colearn.metrics import TaskType

ENCODERS = {
    's1': {'name': 'tempcnn', 'in_channels': 3, 'seq_len': None, 'pooling': 'mean'},
    's2': {'name': 'tempcnn', 'in_channels': 3, 'seq_len': 12},
    'dem': {'name': 'mlp', 'in_features': 16},
    'img': {'name': 'timm', 'in_channels': 4, 'model': 'resnet18'},
}
KINDS: dict[str, ModalityKind] = {
    's1': 'timeseries',
    's2': 'timeseries',
    'dem': 'vector',
    'img': 'image',
}
CASES: list[tuple[str, str, bool, TaskType]] = [
    ('TempCNN, masks (NaN steps)', 's1', True, 'multiclass'),
    ('TempCNN, no masks', 's2', False, 'multiclass'),
    ('MLP', 'dem', True, 'multiclass'),
    ('timm ResNet-18', 'img', True, 'multiclass'),
    ('TempCNN, masks (NaN steps)', 's1', True, 'binary'),
    ('TempCNN, masks (NaN steps)', 's1', True, 'multilabel'),
    ('TempCNN, masks (NaN steps)', 's1', True, 'regression'),
]


def build(task_type: TaskType, fill_nan: bool) -> CoLearnTask:
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=200, modality_kinds=KINDS, task=task_type, image_size=32
    )
    datamodule.setup('fit')
    task = CoLearnTask(
        encoders=ENCODERS,
        task=task_type,
        num_classes=4 if task_type == 'multiclass' else None,
        num_labels=5 if task_type == 'multilabel' else None,
    )
    record = training_inputs_of(task, datamodule)
    assert record is not None
    task.training_inputs = dataclasses.replace(record, fill_nan=fill_nan)
    return task.eval()


def main() -> None:
    torch.manual_seed(0)
    print(
        '| encoder | task | ONNX max abs diff | TorchScript max abs diff | ONNX export s | TorchScript export s |'
    )
    print('|---|---|---|---|---|---|')
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for family, modality, fill_nan, task_type in CASES:
            task = build(task_type, fill_nan)
            x = example_input(task, modality, 64) * 1.3
            if modality == 's1':
                x[::4, :3] = float('nan')
            expected = task.predict_raw({modality: x}).numpy()
            cells = []
            times = []
            formats: tuple[ExportFormat, ...] = ('onnx', 'torchscript')
            for format in formats:
                path = os.path.join(tmp, f'model.{format}')
                start = time.perf_counter()
                export_model(task, modality, path, format)
                times.append(time.perf_counter() - start)
                if format == 'onnx':
                    session = onnxruntime.InferenceSession(path)
                    output = session.run(None, {f'image_{modality}': x.numpy()})[0]
                else:
                    with torch.no_grad():
                        model = torch.jit.load(path)
                        output = model(x).numpy()
                cells.append(f'{np.abs(output - expected).max():.1e}')
            print(
                f'| {family} | {task_type} | {cells[0]} | {cells[1]} | {times[0]:.1f} | {times[1]:.1f} |'
            )


if __name__ == '__main__':
    main()
