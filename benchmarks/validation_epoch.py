#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Validation-epoch time of ``colearn fit`` on LFMC: this working tree against a git revision.

Each side builds ``colearn fit --config experiments/lfmc.yaml`` (fold 0, no logger, no progress bar)
through its own package's CLI, with every callback that ``colearn fit`` attaches (the 0.1 release's
always-attached scenario evaluation re-encoded every validation batch), sets the data up once, runs one
validation epoch to warm up, then times ``trainer.validate`` epochs. The two sides alternate, round after
round, in worker processes that import their own package; the report gives the median and range per
side, the per-round ratio base/new, the thread count and the load average before and after.

    OMP_NUM_THREADS=1 python benchmarks/validation_epoch.py [--baseline 96206ac] [--rounds 5] [--epochs 10]
"""

import argparse
import json
import os
import statistics
import subprocess
import time

from throughput import REPO, checkout, describe, worker_call
from timing import cpu_model, load_average, spread

#: The 0.1 release: the last revision before one encoder pass per batch.
DEFAULT_BASELINE = '96206ac'

#: Marks the worker's result line among whatever else it prints.
RESULT = 'VALIDATION-RESULT '


def worker(epochs: int) -> None:
    """Time validation epochs with the package on ``PYTHONPATH``; print them as JSON.

    Args:
        epochs: Timed validation epochs after one warm-up epoch.
    """
    import torch

    from torchgeo_colearn.main import ColearnCLI

    torch.set_num_threads(1)
    root = os.path.join(REPO, '..', 'shared', 'data', 'lfmc')
    args = [
        '--config=experiments/lfmc.yaml',
        f'--data.init_args.root={root}',
        '--trainer.logger=false',
        '--trainer.enable_progress_bar=false',
        '--trainer.enable_model_summary=false',
    ]
    cli = ColearnCLI(args=args, run=False, save_config_callback=None)
    cli.datamodule.setup('fit')
    seconds = []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
        if epoch:
            seconds.append(time.perf_counter() - start)
    print(RESULT + json.dumps(seconds), flush=True)


def run_worker(root: str, epochs: int) -> list[float]:
    """Run one worker over the package checked out at *root*.

    Args:
        root: Repository root whose ``torchgeo_colearn`` the worker imports.
        epochs: Timed validation epochs.

    Returns:
        The validation-epoch times in seconds.
    """
    done = subprocess.run(
        **worker_call(__file__, root, 1, '--epochs', str(epochs)),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        msg = f'the worker over {root} failed:\n{done.stderr[-3000:]}'
        raise RuntimeError(msg)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    return list(json.loads(lines[-1][len(RESULT) :]))


def main() -> None:
    """Parse the arguments and run the interleaved comparison (or a worker)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--baseline', default=DEFAULT_BASELINE, help='git revision')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--epochs', type=int, default=10, help='timed epochs per round')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.epochs)
        return
    load_before = load_average()
    times: dict[str, list[float]] = {'new': [], 'base': []}
    ratios = []
    with checkout(args.baseline) as base_root:
        for _ in range(args.rounds):
            new = statistics.median(run_worker(REPO, args.epochs))
            base = statistics.median(run_worker(base_root, args.epochs))
            times['new'].append(new)
            times['base'].append(base)
            ratios.append(base / new)
        base_name = describe(base_root)
    print(
        f'CPU: {cpu_model()}; 1 torch thread; {args.rounds} rounds x {args.epochs} epochs'
    )
    print(f'new = {describe(REPO)}; base = {base_name}')
    for side, values in times.items():
        print(f'{side}: validation epoch {spread(values, 3)} s')
    print(f'base / new: {spread(ratios, 2)}')
    print(f'load average before {load_before}, after {load_average()}')


if __name__ == '__main__':
    main()
