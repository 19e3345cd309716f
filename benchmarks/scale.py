#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Training throughput of CoLearnTask's step at CropHarvest scale, data resident in memory or on a GPU.

A synthetic dataset of CropHarvest's size and shapes (70,000 samples of 12 monthly steps: Sentinel-1, 2
channels; Sentinel-2 B2-B12 and NDVI, 12 channels; with M = 4 also ERA5, 2 channels, and SRTM, 2
channels repeated over the steps; random values, 10 classes) is held as one tensor per modality on the
device. CoLearnTask with the encoders of ``experiments/cropharvest_multiclass.yaml`` (TempCNN, 3
convolutions of 128 filters, kernel 5, dense 512, d = 64, Adam) runs its training step on batches drawn
from a random permutation of the resident samples: indexing the batch, the input checks, the forward pass,
the four MDiCo loss terms, backward and the optimiser step (Lightning's loop around the step is left
out: ``benchmarks/throughput.py`` measures it).

With ``--missing``, a share of the samples lacks Sentinel-2 (``present_s2``): the step then runs the
per-modality terms of samples with gaps (docs/missing_modalities.md).

All cases (M x missing rate x batch size x threads) run in ONE interleaved sequence, repetition after repetition, so
that a change of load hits them alike. It prints samples/s per case (median and min-max over the
repetitions), the implied seconds per 70,000-sample epoch, the 2-thread / 1-thread ratio and the ratio to
the complete data (missing rate 0) per repetition, and the machine, torch version and load average before and after.

    python benchmarks/scale.py [--samples 70000] [--modalities 2 4] [--batch-sizes 256 1024]
        [--threads 1 2] [--missing 0 0.3] [--steps 20] [--repeats 3] [--device cpu|cuda]
        [--precision 32|bf16-mixed]
"""

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from torchgeo_colearn.trainers import CoLearnTask

if __package__:  # imported as benchmarks.scale (the tests)
    from .timing import cpu_model, load_average, spread
else:  # run as a script
    from timing import cpu_model, load_average, spread  # type: ignore[no-redef]

#: Modality mapped to its channels, in the order M takes them (CropHarvest's sensors).
CHANNELS = {'s1': 2, 's2': 12, 'era5': 2, 'srtm': 2}

#: Monthly steps of a CropHarvest sample.
STEPS = 12

#: Classes of the synthetic labels.
CLASSES = 10

#: The encoder of every modality (experiments/cropharvest_multiclass.yaml), less its input channels.
ENCODER = {
    'name': 'tempcnn',
    'seq_len': STEPS,
    'hidden_dim': 128,
    'num_layers': 3,
    'kernel_size': 5,
    'dense_dim': 512,
    'dropout': 0.2,
}

Precision = Literal['32', 'bf16-mixed']

#: A measured case: M, the share of samples lacking s2, the batch size and the threads.
Key = tuple[int, float, int, int]


@dataclass
class Case:
    """The resident data, the task and its optimiser for M modalities."""

    modalities: int
    missing: float
    data: dict[str, Tensor]
    task: CoLearnTask
    optimizer: torch.optim.Optimizer


def make_case(
    modalities: int, samples: int, device: torch.device, missing: float = 0.0
) -> Case:
    """Build the resident data, the task and its optimiser.

    Args:
        modalities: M, 2 to 4.
        samples: Number of samples.
        device: Where the data and the model live.
        missing: Share of the samples that lack s2 (``present_s2`` False, values zero), in [0, 1).

    Returns:
        The case.
    """
    names = list(CHANNELS)[:modalities]
    generator = torch.Generator().manual_seed(modalities)
    data = {
        f'image_{m}': torch.randn(samples, STEPS, CHANNELS[m], generator=generator)
        for m in names
    }
    data['label'] = torch.randint(0, CLASSES, (samples,), generator=generator)
    if missing:
        present = torch.rand(samples, generator=generator) >= missing
        data['present_s2'] = present
        data['image_s2'][~present] = 0.0
    torch.manual_seed(0)
    task = CoLearnTask(
        encoders={m: {**ENCODER, 'in_channels': CHANNELS[m]} for m in names},
        num_classes=CLASSES,
        embed_dim=64,
        scheduler='none',
    ).to(device)
    task.train()
    return Case(
        modalities,
        missing,
        {k: v.to(device) for k, v in data.items()},
        task,
        torch.optim.Adam(task.parameters(), lr=1e-3),
    )


def train_step(case: Case, indices: Tensor, precision: Precision) -> None:
    """Run one training step on the resident samples at *indices*.

    Args:
        case: The case.
        indices: (B,) sample indices, on the data's device.
        precision: '32' or 'bf16-mixed' (autocast to bfloat16, as Lightning's precision plugin).
    """
    task = case.task
    batch = {k: v[indices] for k, v in case.data.items()}
    device = indices.device.type
    with torch.autocast(device, torch.bfloat16, enabled=precision == 'bf16-mixed'):
        inputs = task.modality_inputs(batch, require_all=True, defer_nan_check=True)
        terms, _ = task.losses(inputs, task.encode(inputs), batch['label'])
    case.optimizer.zero_grad(set_to_none=True)
    terms['loss'].backward()
    case.optimizer.step()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously).

    Args:
        device: The device.
    """
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(
    case: Case,
    batch_size: int,
    steps: int,
    threads: int,
    precision: Precision,
    warmup: int = 2,
) -> dict[str, float]:
    """Time training steps of a case.

    Args:
        case: The case.
        batch_size: Samples per step.
        steps: Timed steps.
        threads: Torch CPU threads.
        precision: '32' or 'bf16-mixed'.
        warmup: Untimed steps first (allocations, kernel choice).

    Returns:
        Samples, wall seconds and process CPU seconds of the timed steps.
    """
    torch.set_num_threads(threads)
    label = case.data['label']
    order = torch.randperm(label.shape[0], device=label.device)
    # the permutation wraps around when the steps ask for more than one epoch
    starts = [
        (i * batch_size) % (label.shape[0] - batch_size + 1)
        for i in range(warmup + steps)
    ]
    for start in starts[:warmup]:
        train_step(case, order[start : start + batch_size], precision)
    synchronize(label.device)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for start in starts[warmup:]:
        train_step(case, order[start : start + batch_size], precision)
    synchronize(label.device)
    return {
        'samples': steps * batch_size,
        'seconds': time.perf_counter() - start_wall,
        'cpu_seconds': time.process_time() - start_cpu,
    }


def report(results: Mapping[Key, list[dict[str, float]]], samples: int) -> str:
    """Format the table of a run.

    Args:
        results: (M, missing rate, batch size, threads) mapped to the measures of every repetition.
        samples: Samples of an epoch.

    Returns:
        One row per case: samples/s (wall and by process CPU time), seconds per epoch, and per
        repetition the ratio to one thread (for more threads) and to the complete data (for a
        missing rate above 0).
    """
    rows = [
        (
            f'| M | s2 missing | batch | threads | samples/s, median [min-max] '
            f'| epoch of {samples} (s) | samples per CPU-s | vs 1 thread | vs complete |'
        ),
        '|---|---|---|---|---|---|---|---|---|',
    ]

    def ratio(rates: list[float], key: Key, differs: bool) -> str:
        other = results.get(key)
        if not differs or other is None:
            return '-'
        return spread(
            [r * o['seconds'] / o['samples'] for r, o in zip(rates, other)], 2
        )

    for (m, missing, batch, threads), measures in results.items():
        rates = [r['samples'] / r['seconds'] for r in measures]
        cpu = [r['samples'] / r['cpu_seconds'] for r in measures]
        rows.append(
            f'| {m} | {missing:.0%} | {batch} | {threads} | {spread(rates, 0)} '
            f'| {samples / statistics.median(rates):.1f} | {statistics.median(cpu):.0f} '
            f'| {ratio(rates, (m, missing, batch, 1), threads != 1)} '
            f'| {ratio(rates, (m, 0.0, batch, threads), missing != 0)} |'
        )
    return '\n'.join(rows)


def machine(device: torch.device) -> str:
    """Describe the device: the CPU model and core count, or the GPU's name.

    Args:
        device: The device.

    Returns:
        A short description.
    """
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{cpu_model()}, {os.cpu_count()} CPUs'


def cases(args: argparse.Namespace) -> Iterator[tuple[Key, Case]]:
    """Yield every measured case, in the order of one repetition.

    Args:
        args: The command-line arguments.

    Yields:
        (M, missing rate, batch size, threads) and its case.
    """
    device = torch.device(args.device)
    threads = args.threads if device.type == 'cpu' else [1]
    for m in args.modalities:
        for missing in args.missing:
            case = make_case(m, args.samples, device, missing)
            for batch in args.batch_sizes:
                for count in threads:
                    yield (m, missing, batch, count), case


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its table.

    Args:
        argv: Command-line arguments (default: ``sys.argv``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--samples', type=int, default=70_000, help='samples')
    parser.add_argument('--modalities', type=int, nargs='+', default=[2, 4])
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[256, 1024])
    parser.add_argument(
        '--threads', type=int, nargs='+', default=[1, 2], help='torch CPU threads'
    )
    parser.add_argument(
        '--missing',
        type=float,
        nargs='+',
        default=[0.0],
        help='shares of the samples that lack s2',
    )
    parser.add_argument('--steps', type=int, default=20, help='timed steps per case')
    parser.add_argument('--repeats', type=int, default=3, help='repetitions')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--precision', choices=['32', 'bf16-mixed'], default='32')
    args = parser.parse_args(argv)
    if not all(2 <= m <= len(CHANNELS) for m in args.modalities):
        parser.error(f'--modalities must be 2 to {len(CHANNELS)}')
    if max(args.batch_sizes) > args.samples:
        parser.error('a batch size exceeds --samples')
    if not all(0 <= rate < 1 for rate in args.missing):
        parser.error('--missing rates must lie in [0, 1)')
    warnings.filterwarnings('ignore')
    load_before = load_average()
    plan = list(cases(args))
    results: dict[Key, list[dict[str, float]]] = {key: [] for key, _ in plan}
    for _ in range(args.repeats):
        for key, case in plan:
            results[key].append(
                measure(case, key[2], args.steps, key[3], args.precision)
            )
    print(
        f'{machine(torch.device(args.device))}; torch {torch.__version__}; device '
        f'{args.device}, precision {args.precision}; {args.samples} resident samples; '
        f'{args.steps} timed steps per case and repetition, {args.repeats} repetitions, '
        f'interleaved'
    )
    print(f'load average before: {load_before}; after: {load_average()}')
    print(report(results, args.samples))


if __name__ == '__main__':
    main()
