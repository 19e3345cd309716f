# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Standalone single-modality models: ONNX and TorchScript files that take raw sensor values."""

import json
import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

import numpy as np
import torch
from torch import Tensor
from torch.export import Dim
from torch.jit import TracerWarning  # type: ignore[attr-defined]

from .. import __version__
from ..batch import channel_axis, image_key
from .inputs import (
    RawInputModel,
    checkpoint_parser,
    class_path,
    load_task,
    require_training_inputs,
)

if TYPE_CHECKING:
    from ..trainers.base import MultiModalTask

#: The file formats of :func:`export_model`.
ExportFormat: TypeAlias = Literal['onnx', 'torchscript']

#: Key of the metadata in an ONNX file (``metadata_props``) and name of the TorchScript extra file.
METADATA_KEY = 'torchgeo_colearn'

#: Name of the output of the exported models.
OUTPUT_NAME = 'prediction'

#: Size of a free axis (time steps, image size) in the example input when nothing fixes it.
_FREE_SIZE = 8

#: Batch sizes on which :func:`export_model` compares the exported model with the task.
CHECK_BATCH_SIZES = (1, 3)

#: What the output of each task type holds.
OUTPUT_MEANING = {
    'binary': 'probability of the positive class (sigmoid), shape (B,)',
    'multiclass': 'class probabilities (softmax) in the order of classes, shape (B, K)',
    'multilabel': 'label probabilities (sigmoid) in the order of classes, shape (B, L)',
    'regression': 'value in target units, shape (B,)',
}


def example_input(task: 'MultiModalTask', modality: str, batch_size: int) -> Tensor:
    """Make raw values of the trained shape around the training statistics.

    Args:
        task: A task with recorded training inputs.
        modality: The modality.
        batch_size: Number of samples.

    Returns:
        float32 values mean + std * N(0, 1) per channel, shape (B, *sample shape), the free axes
        of the encoder taken from the recorded sample shape (else 8).
    """
    record = require_training_inputs(task)
    encoder_shape = exported_shape(task, modality)
    info = record.modalities.get(modality)
    shape: list[int] = []
    for axis, want in enumerate(encoder_shape):
        recorded = None if info is None else info.shape[axis]
        shape.append(want or recorded or _FREE_SIZE)
    mean, std = record.stats[modality]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *shape, generator=generator)
    view = [1] * x.ndim
    view[channel_axis(len(shape)) + 1] = -1
    return x * std.view(view) + mean.view(view)


def exported_shape(task: 'MultiModalTask', modality: str) -> tuple[int | None, ...]:
    """Return the sample shape an exported model accepts, ``None`` for its dynamic axes.

    The encoder's free axes stay free, except the height and width of images, which take the recorded
    training size when there is one: ONNX Runtime does not run every CNN at other sizes than the one
    it was exported with, and maps predict tiles of the training size anyway.

    Args:
        task: A task with recorded training inputs.
        modality: The modality.

    Returns:
        The shape of one sample.
    """
    shape = task.encoder_of(modality).input_shape
    info = require_training_inputs(task).modalities.get(modality)
    spatial = range(len(shape) - 2, len(shape)) if len(shape) >= 3 else range(0)
    return tuple(
        info.shape[axis]
        if size is None and axis in spatial and info is not None
        else size
        for axis, size in enumerate(shape)
    )


def export_metadata(
    task: 'MultiModalTask', modality: str, checkpoint: str | None = None
) -> dict[str, Any]:
    """Describe an exported single-modality model.

    Args:
        task: A task with recorded training inputs.
        modality: The exported modality.
        checkpoint: The checkpoint it comes from, if any (its file name is kept).

    Returns:
        ``modality``; ``input`` (name, dtype, shape with ``null`` for dynamic axes, bands, units,
        time steps, missing values); ``normalization`` (the baked-in statistics); ``output`` (name,
        shape, meaning); ``task_type``, ``classes``, ``method``, ``training_data``,
        ``package_version``, ``torch_version`` and ``checkpoint``.
    """
    record = require_training_inputs(task)
    info = record.modalities.get(modality)
    mean, std = record.stats[modality]
    width = task.output_dim
    return {
        'modality': modality,
        'input': {
            'name': image_key(modality),
            'dtype': 'float32',
            'shape': [None, *exported_shape(task, modality)],
            'bands': None if info is None else list(info.bands),
            'units': None if info is None else list(info.units),
            'time_steps': None if info is None else info.time_steps,
            'missing_values': (
                'NaN or inf; '
                + (
                    'set to the channel mean after normalisation, time steps without a finite '
                    'value ignored'
                    if record.fill_nan
                    else 'not filled: the prediction becomes NaN'
                )
            ),
        },
        'normalization': {
            'mean': mean.tolist(),
            'std': std.tolist(),
            'fill_nan': record.fill_nan,
            'applied_inside_the_model': True,
        },
        'output': {
            'name': OUTPUT_NAME,
            'shape': [None]
            if task.task_type in ('binary', 'regression')
            else [None, width],
            'meaning': OUTPUT_MEANING[task.task_type],
        },
        'task_type': task.task_type,
        'classes': None if record.classes is None else list(record.classes),
        'method': class_path(task),
        'training_data': {'datamodule': record.datamodule, 'arguments': record.data},
        'package_version': __version__,
        'torch_version': torch.__version__,
        'checkpoint': None if checkpoint is None else os.path.basename(checkpoint),
    }


def _exported_program(
    model: RawInputModel, example: Tensor
) -> torch.export.ExportedProgram:
    """Export the raw-input model with a dynamic batch axis and the free axes of :func:`exported_shape`.

    Args:
        model: The model, in evaluation mode.
        example: An example input.

    Returns:
        The exported program.
    """
    shape = exported_shape(model.task, model.modality)
    dynamic = {0: Dim.DYNAMIC} | {
        axis + 1: Dim.DYNAMIC for axis, size in enumerate(shape) if size is None
    }
    with torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes={'x': dynamic})


def _save_onnx(
    program: torch.export.ExportedProgram, path: str, name: str, metadata: str
) -> Callable[[np.ndarray], np.ndarray]:
    """Write an exported program as ONNX with the metadata in ``metadata_props``.

    Args:
        program: The exported program.
        path: The output file.
        name: The name of the input.
        metadata: The metadata, JSON.

    Returns:
        A function running the written file with ONNX Runtime.
    """
    import onnx
    import onnxruntime

    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        input_names=[name],
        output_names=[OUTPUT_NAME],
        verbose=False,
    )
    assert onnx_program is not None
    proto = onnx_program.model_proto
    onnx.helper.set_model_props(proto, {METADATA_KEY: metadata})
    onnx.save(proto, path)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])

    def run(x: np.ndarray) -> np.ndarray:
        output: np.ndarray = session.run(None, {name: x})[0]
        return output

    return run


def _save_torchscript(
    model: RawInputModel, example: Tensor, path: str, metadata: str
) -> Callable[[np.ndarray], np.ndarray]:
    """Trace the raw-input model as frozen TorchScript with the metadata as an extra file.

    The eager model is traced (not the exported graph, whose sizes the tracer would freeze), so the
    batch axis stays dynamic. PyTorch deprecates TorchScript in favour of :mod:`torch.export`; its
    warnings are silenced here.

    Args:
        model: The raw-input model, in evaluation mode.
        example: An example input, to trace the model.
        path: The output file.
        metadata: The metadata, JSON, saved as the extra file ``torchgeo_colearn``.

    Returns:
        A function running the written file.
    """
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', TracerWarning)
        # Lightning's own flag for tracing: its properties (e.g. `trainer`) then stay quiet
        model.task._jit_is_scripting = True
        try:
            traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
        finally:
            model.task._jit_is_scripting = False
        frozen = torch.jit.freeze(traced.eval())
        torch.jit.save(frozen, path, _extra_files={METADATA_KEY: metadata})
        loaded = torch.jit.load(path)  # type: ignore[no-untyped-call]

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            output: np.ndarray = loaded(torch.from_numpy(x)).numpy()
        return output

    return run


def export_model(
    task: 'MultiModalTask',
    modality: str,
    output: str,
    format: ExportFormat = 'onnx',
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Write a standalone model that predicts from one modality's raw values.

    The model is the task's :class:`~torchgeo_colearn.deploy.RawInputModel` for *modality*
    (normalisation with the training statistics, the task's ``encode``, ``predict_from`` and
    ``postprocess``), captured with :func:`torch.export.export` with a dynamic batch axis (and the
    free axes of :func:`exported_shape`, e.g. the time steps of a masked-mean TempCNN), so it holds only
    what that modality's prediction uses. ONNX files keep the metadata (:func:`export_metadata`, JSON) under
    ``metadata_props['torchgeo_colearn']``, TorchScript files in the extra file
    ``torchgeo_colearn``; :func:`read_metadata` reads both. The written file is run on batches of
    :data:`CHECK_BATCH_SIZES` samples and compared with :meth:`predict_raw`; the largest absolute
    difference is returned under ``check``.

    Args:
        task: A task with recorded training inputs.
        modality: The modality to deploy with.
        output: The file to write.
        format: ``'onnx'`` (needs the ``onnx`` extra: onnx, onnxruntime, onnxscript) or
            ``'torchscript'``.
        checkpoint: The checkpoint the task comes from, named in the metadata.

    Returns:
        The metadata, with ``check``: ``{'batch_sizes', 'max_abs_diff'}``.

    Raises:
        ValueError: If *format* is unknown.
        KeyError: If *modality* is not a training modality.
        RuntimeError: If the task has no recorded training normalisation.
    """
    if format not in get_args(ExportFormat):
        msg = f'format must be one of {get_args(ExportFormat)}, got {format!r}'
        raise ValueError(msg)
    task = task.eval()
    model = RawInputModel(task, modality).eval()
    metadata = export_metadata(task, modality, checkpoint)
    example = example_input(task, modality, 2)
    program = _exported_program(model, example)
    text = json.dumps(metadata)
    match format:
        case 'onnx':
            run = _save_onnx(program, output, image_key(modality), text)
        case 'torchscript':
            run = _save_torchscript(model, example, output, text)
    differences = []
    for size in CHECK_BATCH_SIZES:
        x = example_input(task, modality, size)
        expected = task.predict_raw({modality: x}).numpy()
        differences.append(float(np.abs(run(x.numpy()) - expected).max()))
    metadata['check'] = {
        'batch_sizes': list(CHECK_BATCH_SIZES),
        'max_abs_diff': max(differences),
    }
    return metadata


def read_metadata(path: str) -> dict[str, Any]:
    """Read the metadata of a model written by :func:`export_model`.

    Args:
        path: An ``.onnx`` file or a TorchScript file.

    Returns:
        The metadata (:func:`export_metadata`).

    Raises:
        ValueError: If the file holds no torchgeo-colearn metadata.
    """
    text: str | bytes | None = None
    if path.endswith('.onnx'):
        import onnx

        model = onnx.load(path, load_external_data=False)
        text = next(
            (p.value for p in model.metadata_props if p.key == METADATA_KEY), None
        )
    else:
        files = {METADATA_KEY: ''}
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            torch.jit.load(path, _extra_files=files)  # type: ignore[no-untyped-call]
        text = files[METADATA_KEY] or None
    if text is None:
        msg = f'{path} holds no {METADATA_KEY} metadata: it was not written by colearn export'
        raise ValueError(msg)
    metadata: dict[str, Any] = json.loads(text)
    return metadata


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``colearn export``: write a single-modality model of a checkpoint.

    Args:
        argv: Arguments after ``export``; see ``colearn export --help``.

    Returns:
        The metadata of the written model.
    """
    parser = checkpoint_parser(
        'colearn export',
        (
            'Write a standalone model that predicts from the raw values of one modality: only '
            "that modality's part of the network, the training normalisation built in, a dynamic "
            'batch size, and metadata (modality, input shape, band names, units, task type, '
            'classes, package version, training data) inside the file. See docs/deploy.md.'
        ),
        'the modality to deploy with, e.g. s1',
        'the file to write, e.g. model.onnx',
    )
    parser.add_argument(
        '--format',
        default='onnx',
        choices=get_args(ExportFormat),
        help='onnx (needs pip install torchgeo-colearn[onnx]) or torchscript',
    )
    args = parser.parse_args(argv)
    task = load_task(args.ckpt_path)
    metadata = export_model(
        task, args.modality, args.output, args.format, args.ckpt_path
    )
    shape = ', '.join('*' if d is None else str(d) for d in metadata['input']['shape'])
    print(
        f'Wrote {args.output} ({args.format}, {os.path.getsize(args.output) / 1e6:.2f} MB): '
        f'{metadata["input"]["name"]} ({shape}) raw values -> {OUTPUT_NAME}: '
        f'{metadata["output"]["meaning"]}. Largest difference from the task on random inputs: '
        f'{metadata["check"]["max_abs_diff"]:.2e}.'
    )
    return metadata
