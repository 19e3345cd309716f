#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Training throughput of CoLearnTask: end-to-end fit, bare-loop floor, and another revision's code.

For each case (LFMC with the setup of ``experiments/benchmarks/lfmc.yaml``, fold 0, at each batch size;
optionally synthetic time series with M modalities of the same encoders) it measures, in ONE interleaved
run, repetition after repetition:

* ``fit``: the end-to-end Lightning fit as ``colearn benchmark`` runs it (early stopping, best
  checkpoint, validation every epoch; no logger), training samples / fit wall time; also the training
  phase alone (the training batches and their hooks, without validation and setup);
* ``floor``: a bare PyTorch loop over the same model, loss and fused Adam on the same training batches,
  pre-made (loaded, normalised and checked once): forward, loss, backward, optimiser step, the same number
  of epochs;

for the code of this working tree (``new``) and of a git revision (``base``, checked out with
``git worktree add`` into a temporary folder), each in its own worker process that imports its own
package. It prints samples/s per measure (median and min-max over the repetitions), and the ratios per
repetition (new/base, fit/floor), with the machine, thread count and load average before and after.

    python benchmarks/throughput.py [--repeats 5] [--epochs 3] [--baseline REV] [--threads 1]
        [--batch-sizes 32 128 512] [--modalities 2 3 4 5] [--profile {new,base}]

``--profile new`` (or ``base``) instead times the phases of one fit of the first case with this tree's
(or the revision's) code: data, input checks, model, logging, metric updates, backward, optimiser,
Lightning's own hooks, validation, checkpoints, against the bare loop's time for the same steps.
"""

import argparse
import collections
import contextlib
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

if __package__:  # imported as benchmarks.throughput (the tests)
    from .timing import cpu_model, load_average, spread
else:  # run as a script, or as a worker
    from timing import cpu_model, load_average, spread  # type: ignore[no-redef]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join('experiments', 'benchmarks', 'lfmc.yaml')

#: The last revision with the unfused MDiCo model (main's HEAD when the fused model was written).
DEFAULT_BASELINE = 'ed4f1f6'

#: Marks the worker's result lines among whatever else it prints.
RESULT = 'THROUGHPUT-RESULT '

#: The measures of one repetition, in the order they run.
MEASURES = (('new', 'fit'), ('new', 'floor'), ('base', 'fit'), ('base', 'floor'))


# --------------------------------------------------------------------------------------------------
# Worker: builds a case with the package on its PYTHONPATH and measures it
# --------------------------------------------------------------------------------------------------


def merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return *base* updated with *update*, nested mappings merged key by key.

    Args:
        base: The shared settings.
        update: The overrides.

    Returns:
        A new dict.
    """
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            value = merged(old, value)
        out[key] = value
    return out


def import_class(path: str) -> Any:
    """Import a class from its dotted path.

    Args:
        path: E.g. 'torchgeo_colearn.trainers.colearn.CoLearnTask'.

    Returns:
        The class.
    """
    module, _, name = path.rpartition('.')
    return getattr(importlib.import_module(module), name)


def build(case: Mapping[str, Any]) -> tuple[Any, Any, Mapping[str, Any]]:
    """Build the task, the datamodule and the trainer settings of a case.

    Args:
        case: ``data`` ('lfmc' or 'synthetic'), ``batch_size``, ``modalities`` (synthetic), ``root``
            (LFMC data folder, absolute) and ``config`` (benchmark YAML, absolute).

    Returns:
        The task, the datamodule and the benchmark's trainer settings (patience, min_delta).
    """
    from lightning import seed_everything

    # The YAML is read here rather than through the package's benchmark runner, whose API differs
    # between the revisions this script compares: the 'mdico' method's class and arguments over the
    # shared model arguments, the data section, and the trainer section (patience, min_delta).
    with open(case['config']) as f:
        config = yaml.safe_load(f)
    method = config['methods']['mdico']
    seed_everything(0, verbose=False)
    init_args = merged(config.get('model', {}), method.get('init_args', {}))
    data = config['data']
    data_args = {
        **merged(data.get('init_args', {}), method.get('data', {})),
        'root': case['root'],
        'batch_size': case['batch_size'],
        'fold': 0,
    }
    settings = merged(config.get('trainer', {}), method.get('trainer', {}))
    datamodule_class = import_class(data['class_path'])
    if case['data'] == 'synthetic':
        from torchgeo_colearn.datamodules.synthetic import (
            SyntheticMultiSensorDataModule,
        )

        # LFMC-sized: as many samples, 4 steps, the same encoders (3 channels per step)
        names = [f'ts{i}' for i in range(case['modalities'])]
        encoder = next(iter(init_args['encoders'].values()))
        init_args['encoders'] = {n: {**encoder, 'in_channels': 3} for n in names}
        datamodule_class = SyntheticMultiSensorDataModule
        data_args = {
            'num_samples': 2578,
            'modalities': dict.fromkeys(names, 'timeseries'),
            'task': 'regression',
            'seq_len': 4,
            'batch_size': case['batch_size'],
            'num_folds': 10,
            'fold': 0,
        }
    task = import_class(method['class_path'])(**init_args)
    return task, datamodule_class(**data_args), settings


class PhaseTimer(Callback):
    """Count the training samples and time the training phase (without validation) of a fit."""

    def __init__(self) -> None:
        """Initialize a new PhaseTimer instance."""
        self.samples = 0
        self.train_seconds = 0.0
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_start(
        self, trainer: Trainer, module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.samples += len(batch['label'])

    def on_validation_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.train_seconds += time.perf_counter() - self._start

    def on_validation_end(self, trainer: Trainer, module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, module: LightningModule) -> None:
        self.train_seconds += time.perf_counter() - self._start


def trainer_for(
    settings: Mapping[str, Any],
    epochs: int,
    workdir: str,
    callbacks: Sequence[Callback],
) -> Trainer:
    """Return a Trainer configured like ``colearn benchmark``'s fit (CPU, no logger).

    Args:
        settings: The benchmark's trainer settings (patience, min_delta).
        epochs: Maximum epochs.
        workdir: Checkpoint folder.
        callbacks: Extra callbacks.

    Returns:
        The trainer.
    """
    # the revision's own checkpoint callback (weights only), or the one runners built before it
    try:
        best_checkpoint = import_class(
            'torchgeo_colearn.benchmark.runner.best_checkpoint'
        )
        checkpoint = best_checkpoint(workdir, 'val_loss')
    except (ImportError, AttributeError):
        checkpoint = ModelCheckpoint(
            dirpath=workdir, monitor='val_loss', mode='min', save_top_k=1
        )
    stopping = EarlyStopping(
        'val_loss',
        patience=settings['patience'],
        min_delta=settings['min_delta'],
        mode='min',
    )
    return Trainer(
        max_epochs=epochs,
        accelerator='cpu',
        devices=1,
        logger=False,
        callbacks=[stopping, checkpoint, *callbacks],
        default_root_dir=workdir,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def measure_fit(case: Mapping[str, Any], epochs: int) -> dict[str, float]:
    """Time the end-to-end Lightning fit of a case.

    Args:
        case: The case (see :func:`build`).
        epochs: Training epochs.

    Returns:
        Training samples, fit seconds and training-phase seconds.
    """
    task, datamodule, settings = build(case)
    timer = PhaseTimer()
    with tempfile.TemporaryDirectory(prefix='colearn-throughput-') as workdir:
        trainer = trainer_for(settings, epochs, workdir, [timer])
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer.fit(task, datamodule)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - start_cpu
    return {
        'samples': timer.samples,
        'seconds': seconds,
        'cpu_seconds': cpu_seconds,
        'train_seconds': timer.train_seconds,
    }


class Stopwatch(Callback):
    """Time the phases of a fit: wrappers on the task's and datamodule's methods, and batch hooks.

    Only public methods and hooks are wrapped (those the revision has), so that it runs on any
    revision: the phases nest as printed by :meth:`table`.
    """

    def __init__(self) -> None:
        """Initialize a new Stopwatch instance."""
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.steps = 0
        #: 'train' inside a training batch, 'val' inside validation, else 'fit'.
        self.phase = 'fit'
        self._mark = 0.0
        self._batch_start = 0.0
        self._validation_start = 0.0

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Accumulate the time of ``owner.name`` under '<phase>:<label>', if it exists.

        Args:
            owner: An object.
            name: One of its methods.
            label: The phase.
        """
        original = getattr(owner, name, None)
        if original is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            key = f'{self.phase}:{label}'
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - start

        setattr(owner, name, timed)

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_start(
        self, trainer: Trainer, module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self.seconds['data'] += now - self._mark
        self._batch_start = now
        self.steps += 1
        self.phase = 'train'

    def on_train_batch_end(
        self,
        trainer: Trainer,
        module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._mark = time.perf_counter()
        self.seconds['batch'] += self._mark - self._batch_start
        self.phase = 'fit'

    def on_validation_start(self, trainer: Trainer, module: LightningModule) -> None:
        self._validation_start = time.perf_counter()
        self.phase = 'val'

    def on_validation_end(self, trainer: Trainer, module: LightningModule) -> None:
        self.seconds['validation'] += time.perf_counter() - self._validation_start
        self.phase = 'fit'

    def table(self, total: float, floor_step: float) -> str:
        """Format the phases.

        Args:
            total: Fit seconds.
            floor_step: Seconds per step of the bare loop.

        Returns:
            One line per phase: seconds, milliseconds per training step, share of the fit.
        """
        t = self.seconds
        # before the one-pass step, training_losses encoded the inputs itself
        model = t['train:training_losses'] or t['train:encode'] + t['train:losses']
        inside_step = t['train:modality_inputs'] + model + t['train:log']
        step = t['train:training_step']
        update = (
            t['train:optimizer_step']
            - step
            - t['train:backward']
            - t['train:zero_grad']
        )
        epoch_end = t['fit:epoch_end'] + t['val:epoch_end']
        checkpoint = t['fit:checkpoint'] + t['val:checkpoint']
        rows = [
            ('fit', total),
            ('  data setup (datamodule.setup)', t['fit:setup']),
            ('  training batches (hooks included)', t['data'] + t['batch']),
            ('    data: fetch, transfer, hooks', t['data'] - t['fit:normalise']),
            ('    data: normalise (on_after_batch_transfer)', t['fit:normalise']),
            ('    training_step', step),
            ('      input checks (modality_inputs)', t['train:modality_inputs']),
            ('      model forward + loss', model),
            ('      self.log', t['train:log']),
            ('      rest: metric/score updates, loss sums', step - inside_step),
            ('    zero_grad', t['train:zero_grad']),
            ('    backward', t['train:backward']),
            ('    optimiser update', update),
            ('    Lightning around the step', t['batch'] - t['train:optimizer_step']),
            ('  validation (steps, metrics, hooks)', t['validation']),
            ('    of which validation_step', t['val:validation_step']),
            ('  epoch-end hooks (metrics compute, logging)', epoch_end),
            ('  checkpoint saving', checkpoint),
            (
                '  rest of the fit loop',
                total
                - t['fit:setup']
                - t['data']
                - t['batch']
                - t['validation']
                - epoch_end
                - checkpoint,
            ),
            ('bare-loop floor, same steps', floor_step * self.steps),
        ]
        return '\n'.join(
            f'  {name:48s} {seconds:7.2f} s  {1000 * seconds / self.steps:6.2f} ms/step  '
            f'{100 * seconds / total:5.1f} %'
            for name, seconds in rows
        )


def profile_fit(case: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """Time the phases of an end-to-end fit, and the bare-loop floor, of a case.

    Args:
        case: The case (see :func:`build`).
        epochs: Training epochs (fit) and passes (floor).

    Returns:
        Training steps and the table of phases as text.
    """
    floor = measure_floor(case, epochs)
    task, datamodule, settings = build(case)
    watch = Stopwatch()
    for name in ('modality_inputs', 'encode', 'losses', 'training_losses', 'log'):
        watch.wrap(task, name, name)
    for name in ('training_step', 'validation_step', 'backward', 'optimizer_step'):
        watch.wrap(task, name, name)
    watch.wrap(task, 'optimizer_zero_grad', 'zero_grad')
    watch.wrap(task, 'on_train_epoch_end', 'epoch_end')
    watch.wrap(task, 'on_validation_epoch_end', 'epoch_end')
    watch.wrap(datamodule, 'setup', 'setup')
    watch.wrap(datamodule, 'on_after_batch_transfer', 'normalise')
    with tempfile.TemporaryDirectory(prefix='colearn-throughput-') as workdir:
        trainer = trainer_for(settings, epochs, workdir, [watch])
        watch.wrap(trainer, 'save_checkpoint', 'checkpoint')
        start = time.perf_counter()
        trainer.fit(task, datamodule)
        total = time.perf_counter() - start
    floor_step = floor['seconds'] / (floor['samples'] / case['batch_size'])
    return {'samples': watch.steps, 'text': watch.table(total, floor_step)}


def premade_batches(task: Any, datamodule: Any) -> list[tuple[Any, Any]]:
    """Load, normalise and check every training batch once, as the fit would.

    Args:
        task: The task.
        datamodule: Its datamodule.

    Returns:
        (modality inputs, target) per training batch.
    """
    datamodule.setup('fit')
    batches = []
    for batch in datamodule.train_dataloader():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        inputs = task.modality_inputs(batch, require_all=True)
        batches.append((inputs, batch['label']))
    if task.task_type == 'regression' and hasattr(datamodule, 'target_stats'):
        mean, std = datamodule.target_stats()
        task.criterion.target_mean.fill_(mean)
        task.criterion.target_std.fill_(std)
    return batches


def task_optimizer(task: Any) -> torch.optim.Optimizer:
    """Return the optimiser that the task configures (without its learning-rate schedule).

    Args:
        task: The task.

    Returns:
        Its optimiser.
    """
    configured = task.configure_optimizers()
    optimizer: torch.optim.Optimizer = (
        configured['optimizer'] if isinstance(configured, dict) else configured
    )
    return optimizer


def floor_step(
    task: Any, optimizer: torch.optim.Optimizer, bf16: bool = False
) -> Callable[[Any, Any], None]:
    """Return the bare loop's step: forward and loss, backward, one optimiser update.

    Args:
        task: The task, in training mode.
        optimizer: Its optimiser.
        bf16: Run the forward under bfloat16 autocast.

    Returns:
        The step, called with one pre-made batch: (modality inputs, target).
    """

    def step(inputs: Any, target: Any) -> None:
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            # revisions with the one-pass step: losses(inputs, encode(inputs), target); before
            # it: training_losses(inputs, target), which encodes
            if hasattr(task, 'training_losses'):
                losses, _ = task.training_losses(inputs, target)
            else:
                losses, _ = task.losses(inputs, task.encode(inputs), target)
        optimizer.zero_grad(set_to_none=True)
        losses['loss'].backward()
        optimizer.step()

    return step


def measure_floor(case: Mapping[str, Any], epochs: int) -> dict[str, float]:
    """Time a bare loop over the model, loss and optimiser on pre-made batches.

    Args:
        case: The case (see :func:`build`).
        epochs: Passes over the training batches.

    Returns:
        Training samples and seconds.
    """
    task, datamodule, _ = build(case)
    batches = premade_batches(task, datamodule)
    task.train()
    step = floor_step(task, task_optimizer(task))
    for inputs, target in batches[:3]:  # warm-up, not timed
        step(inputs, target)
    samples = 0
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for inputs, target in batches:
            step(inputs, target)
            samples += len(target)
    return {
        'samples': samples,
        'seconds': time.perf_counter() - start,
        'cpu_seconds': time.process_time() - start_cpu,
    }


def worker(threads: int) -> None:
    """Serve measurement requests, one JSON object per line on stdin.

    Args:
        threads: Torch CPU threads.
    """
    import torchgeo_colearn

    torch.set_num_threads(threads)
    warnings.filterwarnings('ignore')
    logging.getLogger('lightning.pytorch').setLevel(logging.ERROR)
    print(
        RESULT
        + json.dumps(
            {
                'package': os.path.dirname(os.path.abspath(torchgeo_colearn.__file__)),
                'threads': torch.get_num_threads(),
                'torch': torch.__version__,
            }
        ),
        flush=True,
    )
    measures = {'fit': measure_fit, 'floor': measure_floor, 'profile': profile_fit}
    for line in sys.stdin:
        request = json.loads(line)
        result = measures[request['measure']](request['case'], request['epochs'])
        print(RESULT + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------
# Orchestrator: one worker per revision, interleaved measures, the report
# --------------------------------------------------------------------------------------------------


def worker_call(script: str, root: str, threads: int, *args: str) -> dict[str, Any]:
    """Return the subprocess arguments that run *script* as a worker over the package at *root*.

    Args:
        script: Path of the benchmark script whose ``--worker`` mode runs.
        root: Repository root whose ``torchgeo_colearn`` the worker imports.
        threads: CPU threads of the worker's math libraries.
        *args: The worker's own options.

    Returns:
        ``args``, ``cwd`` and ``env`` for :class:`subprocess.Popen` or :func:`subprocess.run`.
    """
    env = {
        **os.environ,
        'PYTHONPATH': root,
        'OMP_NUM_THREADS': str(threads),
        'MKL_NUM_THREADS': str(threads),
    }
    command = [sys.executable, os.path.abspath(script), '--worker', *args]
    return {'args': command, 'cwd': root, 'env': env}


class Worker:
    """A worker process importing the package from one source tree."""

    def __init__(self, root: str, threads: int) -> None:
        """Start the worker.

        Args:
            root: Repository root whose ``torchgeo_colearn`` the worker imports.
            threads: Torch CPU threads.

        Raises:
            RuntimeError: If the worker imported the package from elsewhere.
        """
        self.process = subprocess.Popen(
            **worker_call(__file__, root, threads, '--threads', str(threads)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = self._read()
        expected = os.path.join(os.path.realpath(root), 'torchgeo_colearn')
        if os.path.realpath(self.info['package']) != expected:
            msg = f'worker for {root} imported {self.info["package"]}, not {expected}'
            raise RuntimeError(msg)

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(RESULT):
                result: dict[str, Any] = json.loads(line[len(RESULT) :])
                return result
        msg = f'worker exited with code {self.process.wait()}'
        raise RuntimeError(msg)

    def run(self, case: Mapping[str, Any], measure: str, epochs: int) -> dict[str, Any]:
        """Run one measure.

        Args:
            case: The case.
            measure: 'fit' or 'floor'.
            epochs: Epochs (fit) or passes (floor).

        Returns:
            The worker's result.
        """
        assert self.process.stdin is not None
        request = {'case': dict(case), 'measure': measure, 'epochs': epochs}
        self.process.stdin.write(json.dumps(request) + '\n')
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        """Stop the worker."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[str]:
    """Check a revision out into a temporary worktree.

    Args:
        revision: Any git revision.

    Yields:
        The worktree's root.
    """
    with tempfile.TemporaryDirectory(prefix='colearn-baseline-') as folder:
        path = os.path.join(folder, 'repo')
        subprocess.run(
            ['git', 'worktree', 'add', '--detach', '--quiet', path, revision],
            cwd=REPO,
            check=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ['git', 'worktree', 'remove', '--force', path], cwd=REPO, check=True
            )


def describe(root: str) -> str:
    """Return a git description of a tree: commit and whether it has local changes.

    Args:
        root: A repository root.

    Returns:
        E.g. '02d5a88' or '02d5a88+changes'.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ['git', *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    commit = git('rev-parse', '--short', 'HEAD')
    return commit + (
        '+changes' if git('status', '--porcelain', '--untracked-files=no') else ''
    )


def report(
    case: Mapping[str, Any], results: Mapping[tuple[str, str], list[dict[str, Any]]]
) -> None:
    """Print the samples/s and ratios of one case.

    Args:
        case: The case.
        results: (code, measure) mapped to the results of every repetition.
    """

    def rates(code: str, measure: str, seconds: str) -> list[float]:
        return [r['samples'] / r[seconds] for r in results[code, measure]]

    wall = {
        'new fit (end to end)': rates('new', 'fit', 'seconds'),
        'new fit, training phase': rates('new', 'fit', 'train_seconds'),
        'new floor (bare loop)': rates('new', 'floor', 'seconds'),
        'base fit (end to end)': rates('base', 'fit', 'seconds'),
        'base fit, training phase': rates('base', 'fit', 'train_seconds'),
        'base floor (bare loop)': rates('base', 'floor', 'seconds'),
    }
    # On a shared machine the wall time includes waiting for a core; the process CPU time does not.
    cpu = {
        f'{code} {measure}': rates(code, measure, 'cpu_seconds')
        for code in ('new', 'base')
        for measure in ('fit', 'floor')
    }
    print(f'\n{case["name"]}: {len(wall["new fit (end to end)"])} repetitions')
    print('  samples/s (wall time), median [min-max]:')
    for name, values in wall.items():
        print(f'    {name:28s} {spread(values, 0)}')
    print('  ratios (wall time), per repetition, median [min-max]:')
    for name, a, b in (
        ('new floor / base floor', 'new floor (bare loop)', 'base floor (bare loop)'),
        ('new fit / base fit', 'new fit (end to end)', 'base fit (end to end)'),
        ('new fit / new floor', 'new fit (end to end)', 'new floor (bare loop)'),
        (
            'new training phase / new floor',
            'new fit, training phase',
            'new floor (bare loop)',
        ),
        ('base fit / base floor', 'base fit (end to end)', 'base floor (bare loop)'),
        ('new fit / base floor', 'new fit (end to end)', 'base floor (bare loop)'),
    ):
        values = [x / y for x, y in zip(wall[a], wall[b])]
        print(f'    {name:34s} {spread(values, 2)}')
    print('  the same ratios by process CPU time:')
    for a, b in (
        ('new floor', 'base floor'),
        ('new fit', 'base fit'),
        ('new fit', 'new floor'),
        ('base fit', 'base floor'),
    ):
        values = [x / y for x, y in zip(cpu[a], cpu[b])]
        print(f'    {a + " / " + b:34s} {spread(values, 2)}')


def cases_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Return the cases to measure.

    Args:
        args: The command-line arguments.

    Returns:
        One dict per case.
    """
    common = {
        'config': os.path.join(REPO, args.config),
        'root': os.path.abspath(os.path.join(REPO, args.root)),
    }
    cases = [
        {**common, 'name': f'LFMC, batch {b}', 'data': 'lfmc', 'batch_size': b}
        for b in args.batch_sizes
    ]
    cases += [
        {
            **common,
            'name': f'synthetic, M = {m}, batch {args.batch_sizes[0]}',
            'data': 'synthetic',
            'modalities': m,
            'batch_size': args.batch_sizes[0],
        }
        for m in args.modalities
    ]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=5, help='repetitions')
    parser.add_argument(
        '--epochs', type=int, default=3, help='fit epochs and floor passes'
    )
    parser.add_argument(
        '--baseline',
        default=DEFAULT_BASELINE,
        help=f'git revision to compare with (default: {DEFAULT_BASELINE}, the unfused model)',
    )
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument(
        '--batch-sizes', type=int, nargs='+', default=[32], help='LFMC batch sizes'
    )
    parser.add_argument(
        '--modalities',
        type=int,
        nargs='*',
        default=[],
        help='also synthetic cases with these numbers of modalities (2 to 5)',
    )
    parser.add_argument(
        '--config', default=CONFIG, help='benchmark YAML, from the repo'
    )
    parser.add_argument(
        '--root', default=os.path.join('..', 'shared', 'data', 'lfmc'), help='LFMC data'
    )
    parser.add_argument(
        '--profile',
        choices=['new', 'base'],
        help='instead, time the phases of one fit of the first case',
    )
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.threads)
        return
    if not os.path.exists(os.path.join(REPO, args.root, 'training_features.csv')):
        parser.error(f'no LFMC table under {args.root} (relative to the repository)')
    cases = cases_of(args)
    if args.profile is not None:
        with contextlib.ExitStack() as stack:
            root = REPO
            if args.profile == 'base':
                root = stack.enter_context(checkout(args.baseline))
            profiled = Worker(root, args.threads)
            result = profiled.run(cases[0], 'profile', args.epochs)
            profiled.close()
            print(
                f'{args.profile} ({describe(root)}), {cases[0]["name"]}: '
                f'{result["samples"]} training steps, {args.epochs} epochs, '
                f'{args.threads} thread(s)'
            )
        print(result['text'])
        return
    load_before = load_average()
    with checkout(args.baseline) as baseline:
        workers = {
            'new': Worker(REPO, args.threads),
            'base': Worker(baseline, args.threads),
        }
        print(
            f'new: {describe(REPO)}; base: {args.baseline} ({describe(baseline)}); '
            f'{cpu_model()}, {os.cpu_count()} CPUs; torch {workers["new"].info["torch"]}, '
            f'{workers["new"].info["threads"]} thread(s); {args.epochs} epochs (fit) / passes '
            f'(floor); order per repetition: '
            + ', '.join(f'{code} {measure}' for code, measure in MEASURES)
        )
        print(f'load average before: {load_before}')
        try:
            for case in cases:
                results: dict[tuple[str, str], list[dict[str, Any]]] = {
                    key: [] for key in MEASURES
                }
                for _ in range(args.repeats):
                    for code, measure in MEASURES:
                        results[code, measure].append(
                            workers[code].run(case, measure, args.epochs)
                        )
                report(case, results)
        finally:
            for process in workers.values():
                process.close()
    print(f'\nload average after: {load_average()}')


if __name__ == '__main__':
    main()
