#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Training throughput of CoLearnTask on LFMC with the setup of experiments/lfmc.yaml, on CPU.

Builds the model, datamodule and callbacks from the experiment config, trains for a few epochs with
Lightning and prints the training samples per second end to end (data, model and Lightning loop,
validation and checkpointing included), and how the time splits into data (fetch, transfer,
normalisation), forward+backward+optimiser step, and the rest. Reads the real table when it is present,
else the fake one of the tests.

    python benchmarks/lfmc_throughput.py [--epochs 5] [--threads N]
"""

import argparse
import os
import tempfile
import time
import warnings
from typing import Any

import lightning
import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import instantiate_class

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'experiments', 'lfmc.yaml')
FAKE_ROOT = os.path.join(REPO, 'tests', 'data', 'lfmc')


class PhaseTimer(Callback):
    """Accumulate the time of the training batches, split into data and step."""

    def __init__(self) -> None:
        super().__init__()
        self.data = 0.0
        self.step = 0.0
        self.samples = 0
        self._mark = 0.0

    def on_train_epoch_start(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Lightning fetches, transfers and normalises (on_after_batch_transfer) before this hook
        now = time.perf_counter()
        self.data += now - self._mark
        self._mark = now
        self.samples += len(batch['label'])

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        now = time.perf_counter()
        self.step += now - self._mark
        self._mark = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=5, help='training epochs')
    parser.add_argument(
        '--threads', type=int, default=None, help='torch CPU threads (default: torch)'
    )
    parser.add_argument('--config', default=CONFIG, help='experiment config')
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore', message='.*dropped \\d+ row')
    warnings.filterwarnings('ignore', message='.*does not have many workers')

    with open(args.config) as f:
        config = yaml.safe_load(f)
    data = config['data']
    real_root = os.path.join(REPO, data['init_args']['root'])
    has_real = os.path.exists(os.path.join(real_root, 'training_features.csv'))
    data['init_args']['root'] = real_root if has_real else FAKE_ROOT
    lightning.seed_everything(config.get('seed_everything', 0), verbose=False)
    model = instantiate_class((), config['model'])
    datamodule = instantiate_class((), data)
    timer = PhaseTimer()
    callbacks = [
        instantiate_class((), c) for c in config['trainer'].get('callbacks', [])
    ]

    with tempfile.TemporaryDirectory() as root_dir:
        trainer = Trainer(
            accelerator='cpu',
            devices=1,
            max_epochs=args.epochs,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root_dir,
            callbacks=[*callbacks, timer],
        )
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer.fit(model, datamodule)
        total = time.perf_counter() - start
        cpu = time.process_time() - start_cpu

    rest = total - timer.data - timer.step
    print(
        f'data: {data["init_args"]["root"]} ({"real" if has_real else "fake"}), '
        f'{trainer.current_epoch} epochs, {timer.samples} training samples, '
        f'{torch.get_num_threads()} torch threads'
    )
    print(f'training samples/s end to end: {timer.samples / total:.0f}')
    # on a shared machine the wall time includes waiting for a core; the CPU time does not
    print(
        f'training samples per CPU second of the process: {timer.samples / cpu:.0f} '
        f'({cpu / total:.2f} cores busy on average)'
    )
    print(
        f'training samples/s in the training batches: '
        f'{timer.samples / (timer.data + timer.step):.0f}'
    )
    for name, seconds in (
        ('data (fetch, transfer, normalise)', timer.data),
        ('forward+backward+optimiser', timer.step),
        ('rest (setup, validation, checkpoints, hooks)', rest),
    ):
        print(f'  {name:45s} {seconds:7.2f} s  {100 * seconds / total:5.1f} %')


if __name__ == '__main__':
    main()
