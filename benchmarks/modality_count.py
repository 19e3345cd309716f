#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Training time of one MDiCo fit against the number of modalities M, on a benchmark config's real data.

Takes a method of a benchmark config (default: ``mdico`` of ``experiments/benchmarks/fuel_moisture.yaml``,
four sensors) and fits it on fold 0 with the first M modalities of its ``encoders`` (the datamodule gets
the same ``modalities``), for each M asked, a fixed number of epochs (no early stopping, so every M does
the same work per epoch; validation every epoch and a best checkpoint, as the runner does), one torch
thread. The Ms alternate, round after round; the report gives the median and range of the fit time and
of the time per epoch per M, and the per-round ratio to the smallest M, with the load average.

    OMP_NUM_THREADS=1 python benchmarks/modality_count.py [--config ...] [--method mdico]
        [--modalities 2 4] [--epochs 10] [--rounds 3]
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from timing import load_average, spread  # run as a file: this folder is on sys.path

from torchgeo_colearn.benchmark.config import load_config
from torchgeo_colearn.benchmark.runner import build_datamodule
from torchgeo_colearn.benchmark.validation import import_class

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join('experiments', 'benchmarks', 'fuel_moisture.yaml')


def fit_seconds(config: str, method: str, count: int, epochs: int) -> float:
    """Fit *method* with its first *count* modalities for *epochs* epochs.

    Args:
        config: Benchmark config path.
        method: Method name in the config.
        count: Number of modalities M (the first M of the method's ``encoders``).
        epochs: Training epochs.

    Returns:
        Wall time of ``trainer.fit`` in seconds (data setup included, as in a benchmark run).
    """
    benchmark = load_config(config)
    chosen = benchmark.method(method)
    modalities = list(chosen.init_args['encoders'])[:count]
    init_args = {
        **chosen.init_args,
        'encoders': {m: chosen.init_args['encoders'][m] for m in modalities},
    }
    datamodule = build_datamodule(
        benchmark, {**chosen.data_args, 'modalities': modalities}, fold=0
    )
    seed_everything(0, verbose=False)
    task = import_class(chosen.class_path)(**init_args)
    with tempfile.TemporaryDirectory(prefix='colearn-modality-count-') as workdir:
        trainer = Trainer(
            max_epochs=epochs,
            accelerator='cpu',
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[ModelCheckpoint(dirpath=workdir, monitor='val_loss')],
            default_root_dir=workdir,
        )
        start = time.perf_counter()
        trainer.fit(task, datamodule)
        return time.perf_counter() - start


def main() -> None:
    """Parse the arguments, run the interleaved rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--method', default='mdico')
    parser.add_argument('--modalities', type=int, nargs='+', default=[2, 4])
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter('ignore')
    torch.set_num_threads(1)
    os.chdir(REPO)  # the configs' data roots are relative to the repository
    load_before = load_average()
    seconds: dict[int, list[float]] = {m: [] for m in args.modalities}
    for _ in range(args.rounds):
        for count in args.modalities:
            seconds[count].append(
                fit_seconds(args.config, args.method, count, args.epochs)
            )
    smallest = min(args.modalities)
    print(
        f'{args.method} of {args.config}, fold 0, {args.epochs} epochs, {args.rounds} interleaved '
        f'rounds, 1 torch thread'
    )
    print('| M | fit (s), median [range] | s / epoch | ratio to M = ' + f'{smallest} |')
    print('|---:|---:|---:|---:|')
    for count, values in seconds.items():
        ratios = [v / b for v, b in zip(values, seconds[smallest], strict=True)]
        print(
            f'| {count} | {spread(values, 1)} | {statistics.median(values) / args.epochs:.2f} '
            f'| {spread(ratios, 2)} |'
        )
    print(f'load average before {load_before}, after {load_average()}')


if __name__ == '__main__':
    main()
