# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Training on two CPU processes (gloo) equals training on one with the batches of both."""

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from torchgeo_colearn.datamodules import SyntheticMultiSensorDataModule
from torchgeo_colearn.distributed import (
    computed_on_rank_zero,
    gather_batches,
    sum_across_processes,
    world_size,
)
from torchgeo_colearn.losses import ContrastiveReduction, contrastive_loss
from torchgeo_colearn.presence import Presence
from torchgeo_colearn.trainers import CoLearnTask

#: Seconds a two-process test may take before its processes are killed (spawning imports torch).
TIMEOUT = 240

MODALITIES = ('a', 'b', 'c')


def free_ports() -> tuple[int, int]:
    """Return two distinct TCP ports that are free now (ephemeral ones, picked by the OS)."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(('127.0.0.1', 0))
        b.bind(('127.0.0.1', 0))
        return a.getsockname()[1], b.getsockname()[1]


def run_two_processes(worker: Callable[..., None], *args: Any) -> None:
    """Run ``worker(rank, *args)`` in two spawned processes; kill both after :data:`TIMEOUT`.

    A failure in a worker is raised here with its traceback.
    """
    context = mp.start_processes(  # type: ignore[attr-defined]
        worker, args=args, nprocs=2, join=False, start_method='spawn'
    )
    deadline = time.monotonic() + TIMEOUT
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f'the two processes did not finish in {TIMEOUT} s')


class Embeddings(nn.Module):
    """One linear map per modality: (N, 5) inputs to (N, 4) shared embeddings."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.maps = nn.ModuleDict({m: nn.Linear(5, 4) for m in MODALITIES})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {m: f(x) for m, f in self.maps.items()}


def loss_and_gradients(
    model: nn.Module, x: Tensor, reduction: ContrastiveReduction
) -> tuple[Tensor, list[Tensor]]:
    """The contrastive loss of a batch and the gradients of the model's parameters."""
    model.zero_grad()
    loss = contrastive_loss(model(x), 0.5, reduction)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]


def contrastive_checks(rank: int, port: int) -> None:
    """On each of 2 processes: the loss and DDP-averaged gradients of B samples vs one process's 2B."""
    batch = 4
    x = torch.randn(2 * batch, 5, generator=torch.Generator().manual_seed(1))
    model = Embeddings()
    # the reference: one process, the 2B samples (not initialised yet: no gathering)
    reductions: tuple[ContrastiveReduction, ...] = ('mean', 'sum_ordered')
    reference = {r: loss_and_gradients(model, x, r) for r in reductions}
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=60),
    )
    try:
        assert world_size() == 2
        parallel = DistributedDataParallel(model)
        local = x[rank * batch : (rank + 1) * batch]
        for reduction, (loss, gradients) in reference.items():
            # this process's loss is the mean over its anchors; the mean over processes is the 2B loss
            mine, averaged = loss_and_gradients(parallel, local, reduction)
            torch.testing.assert_close(
                sum_across_processes(mine) / 2, loss, atol=1e-5, rtol=0
            )
            # DDP averages the gradients of the processes: the gradient of the 2B loss
            for got, expected in zip(averaged, gradients):
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        # samples that lack a modality: rank 1 holds no sample of the pairs with 'b', yet it joins
        # every gather and its backward (no deadlock), and both processes get finite gradients
        holds_b = torch.tensor([True, False, True, False]) & (rank == 0)
        presence = Presence(batch, {'b': holds_b})
        parallel.zero_grad()
        embeddings = parallel(local)
        shared = {m: presence.select(z, (m,)) for m, z in embeddings.items()}
        partial = contrastive_loss(shared, 0.5, 'mean', presence)
        partial.backward()
        assert torch.isfinite(partial)
        assert all(torch.isfinite(p.grad).all() for p in parallel.parameters())  # type: ignore[arg-type]
        # batches of different sizes gather in rank order; each process gets its rows' summed gradient
        rows = torch.full((rank + 2, 3), float(rank + 1), requires_grad=True)
        gathered, offset = gather_batches(rows)
        assert offset == 2 * rank
        torch.testing.assert_close(
            gathered, torch.tensor([[1.0] * 3] * 2 + [[2.0] * 3] * 3)
        )
        # process r's loss weighs row i by (r + 1) * i: row i's gradient sums to 3 * i
        (gathered.sum(1) * (rank + 1) * torch.arange(5.0)).sum().backward()
        expected = 3 * torch.arange(5.0)[offset : offset + rank + 2]
        torch.testing.assert_close(rows.grad, expected.unsqueeze(1).expand(-1, 3))
        # rank 0 computes, every process gets its value
        assert computed_on_rank_zero(lambda: rank + 10) == 10
    finally:
        dist.destroy_process_group()


def test_single_process_collectives_are_identities() -> None:
    x = torch.randn(3, 2)
    assert world_size() == 1
    assert gather_batches(x) == (x, 0)
    assert sum_across_processes(x) is x
    assert computed_on_rank_zero(lambda: 7) == 7


# --------------------------------------------------------------------------------------------------
# Lightning's DDP: fit and test on two processes, test the checkpoint on one
# --------------------------------------------------------------------------------------------------


def datamodule(batch_size: int) -> SyntheticMultiSensorDataModule:
    """200 samples: 120 for training, 40 for validation, 40 for testing."""
    return SyntheticMultiSensorDataModule(
        num_samples=200,
        modality_kinds={'ts': 'timeseries', 'vec': 'vector'},
        seq_len=6,
        batch_size=batch_size,
        augment=False,
    )


def task() -> CoLearnTask:
    return CoLearnTask(
        encoders={
            'ts': {
                'name': 'tempcnn',
                'in_channels': 3,
                'seq_len': 6,
                'hidden_dim': 8,
                'dense_dim': 16,
            },
            'vec': {'name': 'mlp', 'in_features': 16, 'hidden_dims': [16]},
        },
        num_classes=4,
        embed_dim=8,
    )


class SampleIds(Callback):
    """Record the ids of the training samples of each epoch."""

    def __init__(self) -> None:
        self.ids: list[list[str]] = []

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.ids.append([])

    def on_train_batch_start(
        self, trainer: Trainer, module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.ids[-1].extend(batch['id'])


def trainer(root: str, devices: int, callbacks: Sequence[Callback] = ()) -> Trainer:
    return Trainer(
        accelerator='cpu',
        devices=devices,
        strategy='ddp' if devices > 1 else 'auto',
        max_epochs=2,
        logger=False,
        callbacks=[ModelCheckpoint(dirpath=root, monitor='val_loss'), *callbacks],
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def lightning_checks(rank: int, port: int, root: str) -> None:
    """One process of a two-process Lightning job started as torchrun does (Lightning does not spawn)."""
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        WORLD_SIZE='2',
        NODE_RANK='0',
        LOCAL_RANK=str(rank),
        RANK=str(rank),
    )
    # Lightning's distributed sampler needs the same PL_GLOBAL_SEED everywhere; the random state
    # differs: DDP copies rank 0's weights, the datamodule draws rank 0's permutation
    seed_everything(0, verbose=False)
    torch.manual_seed(rank)
    seen = SampleIds()
    fit = trainer(root, devices=2, callbacks=[seen])
    data = datamodule(batch_size=10)
    fit.fit(task(), data)
    # every epoch, the two processes trained on 120 distinct samples
    both: list[Any] = [None, None]
    dist.all_gather_object(both, seen.ids)
    for first, second in zip(*both, strict=True):
        assert len(set(first) | set(second)) == len(first) + len(second) == 120
    # the rank-0 statistics are every process's
    stats = [torch.cat(pair) for pair in data._stats.values()]  # type: ignore[union-attr]
    total = sum_across_processes(torch.cat(stats))
    torch.testing.assert_close(total, 2 * torch.cat(stats))
    (logged,) = fit.test(ckpt_path='best', datamodule=data, verbose=False)
    if rank == 0:
        with open(os.path.join(root, 'ddp.json'), 'w') as f:
            json.dump({'best': fit.checkpoint_callback.best_model_path, **logged}, f)  # type: ignore[union-attr]


def worker(rank: int, ports: tuple[int, int], root: str) -> None:
    """The checks of one of the two processes (spawning them costs more than the checks)."""
    torch.set_num_threads(1)
    contrastive_checks(rank, ports[0])
    lightning_checks(rank, ports[1], root)


def test_two_processes_equal_one_with_both_batches(tmp_path: Path) -> None:
    """The gathered contrastive loss, Lightning's DDP fit and test, the checkpoint in one process."""
    run_two_processes(worker, free_ports(), str(tmp_path))
    with open(tmp_path / 'ddp.json') as f:
        ddp = json.load(f)
    # one process, the checkpoint of the two: each test batch of 20 is the two processes' batches of 10
    # (the distributed sampler deals the batches in turn), so the loss and scores are the same
    model = CoLearnTask.load_from_checkpoint(ddp.pop('best'))
    (single,) = trainer(str(tmp_path / 'single'), devices=1).test(
        model, datamodule(batch_size=20), verbose=False
    )
    assert set(single) == set(ddp)
    assert single['test/ts/count'] == 40
    assert single == pytest.approx(ddp, abs=1e-5)
