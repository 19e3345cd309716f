# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Train one unit of the grid (a Lightning task or an estimator) and score it on the test or validation split."""

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from threadpoolctl import threadpool_limits

from ..callbacks.progress import EpochProgress
from ..scenarios import COUNT, scores_by_scenario
from ..trainers.base import MultiModalTask
from .config import Benchmark, Method, deep_merge, restrict_to
from .estimator import Estimator
from .records import Unit, code_hash, code_version, run_path, unit_path, write_json
from .search_space import with_parameters
from .tuning import objective
from .validation import import_class

#: Loggers silenced during the grid (Lightning prints a few lines and a tip per fit and test otherwise).
QUIET_LOGGERS = ('lightning.pytorch', 'lightning.fabric', 'lightning')

#: How a run shows its progress: one line per run (the grid prints it), plus one line per epoch, or
#: Lightning's progress bar.
Progress = Literal['run', 'epoch', 'bar']


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Silence Lightning's per-fit output and collect the warnings raised meanwhile.

    Yields:
        The list that receives the distinct warning messages.
    """
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    messages: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            yield messages
        for item in caught:
            text = f'{item.category.__name__}: {item.message}'
            if text not in messages:
                messages.append(text)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def build_datamodule(
    benchmark: Benchmark, data_args: Mapping[str, Any], fold: int
) -> LightningDataModule:
    """Instantiate the benchmark's datamodule for one fold.

    Args:
        benchmark: The benchmark.
        data_args: The method's (and part's) overrides of ``data.init_args``.
        fold: Test fold.

    Returns:
        The datamodule (not set up).
    """
    arguments = deep_merge(benchmark.data['init_args'], data_args)
    datamodule: LightningDataModule = import_class(benchmark.data['class_path'])(
        **{**arguments, 'fold': fold}
    )
    return datamodule


def split_summary(datamodule: LightningDataModule) -> Any:
    """Return the datamodule's description of its folds, when it has one.

    Args:
        datamodule: A set-up datamodule.

    Returns:
        What its ``split_summary()`` returns (samples and groups per split), or None.
    """
    summary = getattr(datamodule, 'split_summary', None)
    return summary() if callable(summary) else None


def _epoch_of(checkpoint: str) -> int | None:
    """Read the epoch from a Lightning checkpoint file name (``epoch=7-step=56.ckpt``).

    Args:
        checkpoint: Checkpoint path, or ''.

    Returns:
        The epoch (0-based), or None.
    """
    name = os.path.basename(checkpoint)
    if not name.startswith('epoch='):
        return None
    return int(name.split('-')[0].removeprefix('epoch='))


def best_checkpoint(workdir: str, monitor: str) -> ModelCheckpoint:
    """Return the callback that keeps a run's best model.

    Weights only: the runner reloads the best checkpoint to score it (and as a teacher), never to
    resume training, and the optimiser's state would triple the size of every save.

    Args:
        workdir: Folder of the checkpoint.
        monitor: The logged value to minimise.

    Returns:
        A ModelCheckpoint keeping the single best epoch.
    """
    return ModelCheckpoint(
        dirpath=workdir,
        monitor=monitor,
        mode='min',
        save_top_k=1,
        save_weights_only=True,
    )


def _fit_task(
    benchmark: Benchmark,
    method: Method,
    unit: Unit,
    model: MultiModalTask,
    datamodule: LightningDataModule,
    split: Literal['val', 'test'],
    output: str,
    progress: Progress,
) -> dict[str, Any]:
    """Fit a task with early stopping, reload its best checkpoint and score a split.

    Args:
        benchmark: The benchmark.
        method: The method.
        unit: The unit.
        model: The task.
        datamodule: The datamodule.
        split: 'test' (runs) or 'val' (trials).
        output: The benchmark output folder (a teacher's best checkpoint is kept there).
        progress: 'epoch' prints a line per epoch, 'bar' shows Lightning's progress bar.

    Returns:
        ``results``, ``epochs``, ``best_epoch`` and ``split`` (the datamodule's split summary).

    Raises:
        RuntimeError: If scoring returned no scenario score.
    """
    with tempfile.TemporaryDirectory(prefix='colearn-benchmark-') as workdir:
        monitor = str(getattr(model, 'monitor', 'val_loss'))
        checkpoint = best_checkpoint(workdir, monitor)
        stopping = EarlyStopping(
            monitor,
            patience=method.runner['patience'],
            min_delta=method.runner['min_delta'],
            mode='min',
        )
        lines = (
            [EpochProgress('always', f'    {unit.label()} ')]
            if progress == 'epoch'
            else []
        )
        settings = {
            'enable_progress_bar': progress == 'bar',
            'enable_model_summary': False,
            'num_sanity_val_steps': 0,
            **method.trainer,
        }
        trainer = Trainer(
            **settings,
            logger=False,
            callbacks=[stopping, checkpoint, *lines],
            default_root_dir=workdir,
        )
        trainer.fit(model, datamodule)
        best = checkpoint.best_model_path or None
        score = trainer.test if split == 'test' else trainer.validate
        logged = score(model, datamodule, ckpt_path=best, verbose=False)
        results = {
            name: {metric: value for metric, value in scores.items() if metric != COUNT}
            for name, scores in scores_by_scenario(logged[0], split).items()
        }
        if not results:
            msg = f'trainer.{score.__name__} returned no {split}/<scenario>/<metric> score: {sorted(logged[0])}'
            raise RuntimeError(msg)
        if (
            unit.kind == 'run'
            and best
            and any(m.teacher == method.name for m in benchmark.methods)
        ):
            target = run_path(
                output, method.name, unit.fold, unit.seed, 'ckpt', unit.part
            )
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(best, target)
        return {
            'results': results,
            'epochs': trainer.current_epoch,
            'best_epoch': _epoch_of(best or ''),
            'modalities': list(model.modalities),
            'split': split_summary(datamodule),
        }


@dataclass(frozen=True)
class Job:
    """A unit to run and what it runs with.

    Attributes:
        benchmark: The benchmark.
        unit: The unit.
        settings: What the unit depends on (its record's ``config``; see
            :func:`~torchgeo_colearn.benchmark.records.fingerprint`).
        parameters: Tuned init arguments of the unit (dotted paths), set over the method's.
        output: The benchmark output folder.
        progress: See :data:`Progress`.
    """

    benchmark: Benchmark
    unit: Unit
    settings: Mapping[str, Any]
    parameters: Mapping[str, Any]
    output: str
    progress: Progress = 'run'


def train_and_score(job: Job) -> dict[str, Any]:
    """Train one unit and score it: a run scores the test fold, a trial the validation split.

    Args:
        job: The unit and what it runs with.

    Returns:
        ``results`` (scenario mapped to metric mapped to value) and what else the record keeps
        (``epochs``, ``best_epoch``, ``split``, or the estimator's summary).

    Raises:
        FileNotFoundError: If a student's teacher checkpoint is missing.
        TypeError: If the class is neither a task nor an estimator.
    """
    benchmark, unit, output = job.benchmark, job.unit, job.output
    method = benchmark.method(unit.method)
    seed_everything(unit.seed, workers=True, verbose=False)
    init_args, data_args = restrict_to(method, unit.part)
    init_args = with_parameters(init_args, job.parameters)
    datamodule = build_datamodule(benchmark, data_args, unit.fold)
    if method.teacher is not None:
        teacher = run_path(output, method.teacher, unit.fold, unit.seed, 'ckpt')
        if not os.path.exists(teacher):
            msg = (
                f'teacher checkpoint {teacher} is missing (teacher {method.teacher!r} failed, or its '
                'checkpoint was deleted: delete its JSON file to re-run it)'
            )
            raise FileNotFoundError(msg)
        init_args['teacher_checkpoint'] = teacher
    cls = import_class(method.class_path)
    split: Literal['val', 'test'] = 'test' if unit.kind == 'run' else 'val'
    if issubclass(cls, MultiModalTask):
        return _fit_task(
            benchmark,
            method,
            unit,
            cls(**init_args),
            datamodule,
            split,
            output,
            job.progress,
        )
    estimator = cls(**init_args)
    if not isinstance(estimator, Estimator):
        msg = (
            f'methods.{method.name}: {method.class_path} is neither a MultiModalTask nor an Estimator '
            '(fit, score, summary)'
        )
        raise TypeError(msg)
    with threadpool_limits(method.runner['threads']):
        estimator.fit(datamodule, unit.seed)
        results = estimator.score(datamodule, split)
    return {
        'results': results,
        **estimator.summary(),
        'split': split_summary(datamodule),
    }


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's CPU threads for a block.

    Args:
        threads: Threads, or None to keep the current setting.

    Yields:
        Nothing.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def execute(job: Job) -> dict[str, Any]:
    """Run one unit and write its record; a failure is recorded, never raised.

    Args:
        job: The unit and what it runs with.

    Returns:
        The record: the unit's keys, ``config``, ``parameters``, ``code_version``, ``code_hash``,
        ``status`` ('ok' or 'failed'), ``seconds``, ``warnings``; when ok ``results`` and the training
        facts, when failed ``error`` and ``traceback``.
    """
    benchmark, unit = job.benchmark, job.unit
    record: dict[str, Any] = {
        **unit.__dict__,
        'config': dict(job.settings),
        'parameters': dict(job.parameters),
        'code_version': code_version(),
        'code_hash': code_hash(),
    }
    start = time.perf_counter()
    with (
        quiet() as messages,
        torch_threads(benchmark.method(unit.method).runner['threads']),
    ):
        try:
            record.update(train_and_score(job))
            if unit.kind == 'trial':
                assert benchmark.tuning is not None
                record['value'] = objective(record, benchmark.tuning.metric)
            record['status'] = 'ok'
        except Exception as error:  # noqa: BLE001 (a failed unit is recorded, the grid goes on)
            record.update(
                status='failed',
                error=f'{type(error).__name__}: {error}',
                traceback=traceback.format_exc(),
            )
    record['seconds'] = round(time.perf_counter() - start, 1)
    record['warnings'] = messages
    write_json(unit_path(job.output, unit), record)
    sys.stdout.flush()
    return record
