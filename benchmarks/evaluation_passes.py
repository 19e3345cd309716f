#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Cost of scoring every inference scenario in one pass vs one pass per scenario.

For M = 2 and M = 4 modalities of the synthetic benchmark, with CoLearnTask (untrained; the timing does
not depend on the weights) and the paper's TempCNN sizes (128 filters, dense 512, d = 64; the demo's
MLP for the vector modality), it times on the test fold:

* ``forward``: one pass predicting each modality alone (the task's ``forward``), no scoring: the
  reference cost of one forward pass;
* ``one pass``: one pass scoring all the scenarios (:class:`ScenarioScores`, as the callback does);
* ``per scenario``: one pass per scenario, each predicting and scoring only that scenario.

Each measurement covers the data loading, transfer and normalisation, the model and the metrics (update
and final compute). Two scenario sets: the M single modalities, and all 2^M - 1 subsets (CoLearnTask
fuses by averaging the main-head logits). It also times ``trainer.test`` with the
:class:`ScenarioEvaluation` callback scoring all the subsets against one ``trainer.test`` run per subset
(the task's own test step runs in every run, as it would for a user scoring scenarios one by one).

    python benchmarks/evaluation_passes.py [--device cuda] [--num-samples 10000] [--repeats 3]
"""

import argparse
import itertools
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from lightning.pytorch import Trainer

from torchgeo_colearn.callbacks.evaluation import ScenarioEvaluation, ScenarioScores
from torchgeo_colearn.datamodules.synthetic import SyntheticMultiSensorDataModule
from torchgeo_colearn.datasets.synthetic import ModalityKind
from torchgeo_colearn.demo import demo_encoders
from torchgeo_colearn.trainers.base import Scenario, scenario_name
from torchgeo_colearn.trainers.colearn import CoLearnTask

#: The modalities of each benchmark size.
MODALITIES: dict[int, dict[str, ModalityKind]] = {
    2: {'s1': 'timeseries', 's2': 'timeseries'},
    4: {'s1': 'timeseries', 's2': 'timeseries', 's3': 'timeseries', 'dem': 'vector'},
}


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def run_pass(
    datamodule: SyntheticMultiSensorDataModule,
    device: torch.device,
    step: Callable[[dict[str, Any]], Any],
) -> None:
    """Iterate once over the test fold: fetch, transfer, normalise, then *step*."""
    for batch in datamodule.test_dataloader():
        batch = {
            k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }
        step(datamodule.on_after_batch_transfer(batch, 0))


def score_pass(
    task: CoLearnTask,
    datamodule: SyntheticMultiSensorDataModule,
    device: torch.device,
    scenarios: Sequence[Scenario],
) -> None:
    """One pass scoring *scenarios*, then the final compute."""
    scores = ScenarioScores(
        scenarios, task.task_type, task.num_classes, task.num_labels
    ).to(device)
    run_pass(
        datamodule,
        device,
        lambda batch: scores.update(
            task.predict_scenarios(batch, scenarios), batch['label']
        ),
    )
    scores.compute()


def score_each(
    task: CoLearnTask,
    datamodule: SyntheticMultiSensorDataModule,
    device: torch.device,
    scenarios: Sequence[Scenario],
) -> None:
    """One scoring pass per scenario."""
    for scenario in scenarios:
        score_pass(task, datamodule, device, [scenario])


def timed(function: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Best wall time of *repeats* calls after one warm-up call, in seconds."""
    function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def trainer_test(
    task: CoLearnTask,
    datamodule: SyntheticMultiSensorDataModule,
    accelerator: str,
    scenarios: Sequence[Scenario],
    root: str,
) -> None:
    """One ``trainer.test`` with the callback scoring *scenarios* (no files, figures or table)."""
    callback = ScenarioEvaluation(
        scenarios=[scenario_name(s) for s in scenarios],
        stages=['test'],
        print_table=False,
        figures=False,
        max_embedding_samples=0,
    )
    trainer = Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        callbacks=[callback],
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.test(task, datamodule, verbose=False)


def trainer_test_each(
    task: CoLearnTask,
    datamodule: SyntheticMultiSensorDataModule,
    accelerator: str,
    scenarios: Sequence[Scenario],
    root: str,
) -> None:
    """One ``trainer.test`` per scenario."""
    for scenario in scenarios:
        trainer_test(task, datamodule, accelerator, [scenario], root)


def benchmark(
    num_modalities: int, args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    modalities = MODALITIES[num_modalities]
    datamodule = SyntheticMultiSensorDataModule(
        num_samples=args.num_samples,
        modalities=modalities,
        batch_size=args.batch_size,
        seed=0,
    )
    datamodule.setup('test')
    encoders = demo_encoders(modalities)
    for config in encoders.values():
        if config['name'] == 'tempcnn':
            config.update(hidden_dim=args.hidden_dim, dense_dim=args.dense_dim)
    task = CoLearnTask(encoders=encoders, num_classes=4, embed_dim=args.embed_dim)
    task.to(device).eval()
    singles = [(m,) for m in modalities]
    subsets = [
        s
        for k in range(1, num_modalities + 1)
        for s in itertools.combinations(modalities, k)
    ]
    rows = []
    with torch.inference_mode():
        forward = timed(
            partial(run_pass, datamodule, device, task.forward), device, args.repeats
        )
        for label, scenarios in (
            ('single modalities', singles),
            ('all subsets', subsets),
        ):
            one = timed(
                partial(score_pass, task, datamodule, device, scenarios),
                device,
                args.repeats,
            )
            per = timed(
                partial(score_each, task, datamodule, device, scenarios),
                device,
                args.repeats,
            )
            rows.append(
                {
                    'M': num_modalities,
                    'scenarios': f'{label} ({len(scenarios)})',
                    'forward_s': forward,
                    'one_pass_s': one,
                    'per_scenario_s': per,
                    'one_pass/forward': one / forward,
                    'per_scenario/one_pass': per / one,
                }
            )
    accelerator = 'gpu' if device.type == 'cuda' else 'cpu'
    with tempfile.TemporaryDirectory() as root:
        one = timed(
            partial(trainer_test, task, datamodule, accelerator, subsets, root),
            device,
            args.repeats,
        )
        per = timed(
            partial(trainer_test_each, task, datamodule, accelerator, subsets, root),
            device,
            args.repeats,
        )
    rows.append(
        {
            'M': num_modalities,
            'scenarios': f'trainer.test, all subsets ({len(subsets)})',
            'forward_s': float('nan'),
            'one_pass_s': one,
            'per_scenario_s': per,
            'one_pass/forward': float('nan'),
            'per_scenario/one_pass': per / one,
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--num-samples', type=int, default=10000)
    parser.add_argument(
        '--hidden-dim', type=int, default=128, help='TempCNN filters (paper: 128)'
    )
    parser.add_argument(
        '--dense-dim', type=int, default=512, help='TempCNN dense layer (paper: 512)'
    )
    parser.add_argument(
        '--embed-dim', type=int, default=64, help='d, the size of each part (paper: 64)'
    )
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore')
    logging.getLogger('lightning.pytorch').setLevel(logging.WARNING)
    device = torch.device(args.device)
    print(
        f'device {device}, {args.num_samples} samples ({args.num_samples // 5} in the test fold), '
        f'batch {args.batch_size}, TempCNN {args.hidden_dim}/{args.dense_dim}, d {args.embed_dim}, '
        f'best of {args.repeats}, torch threads {torch.get_num_threads()}'
    )
    rows = [row for m in (2, 4) for row in benchmark(m, args, device)]
    header = list(rows[0])
    print(' | '.join(header))
    for row in rows:
        print(
            ' | '.join(
                f'{v:.3f}' if isinstance(v, float) else str(v) for v in row.values()
            )
        )


if __name__ == '__main__':
    main()
