# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Where the units of a grid run: one after the other in this process, or as Ray tasks."""

import os
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Literal

from typing_extensions import override

from .config import Method
from .records import Unit
from .runner import Job, execute

#: Executors selectable on the command line.
ExecutorName = Literal['serial', 'ray']


class Executor(ABC):
    """Runs units submitted by :func:`~torchgeo_colearn.benchmark.grid.run_grid` and hands back their records."""

    #: Name shown in the grid's first line.
    name: str

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Queue a unit.

        Args:
            job: The unit and what it runs with (see
                :func:`~torchgeo_colearn.benchmark.runner.execute`).
        """

    @abstractmethod
    def completed(self) -> list[tuple[Unit, dict[str, Any]]]:
        """Wait until at least one queued unit is done.

        Returns:
            The units done since the last call, with their records.
        """

    @abstractmethod
    def running(self) -> bool:
        """Tell whether units are queued or running.

        Returns:
            True while :meth:`completed` has more to return.
        """

    def has_room(self) -> bool:
        """Tell whether the executor takes another unit now.

        Returns:
            True by default (every ready unit is submitted at once).
        """
        return True

    def close(self) -> None:
        """Release what the executor holds."""


class SerialExecutor(Executor):
    """Run the units one after the other in this process, in submission order."""

    name = 'serial'

    def __init__(self) -> None:
        """Initialize a new SerialExecutor instance."""
        self.queue: list[Job] = []

    @override
    def submit(self, job: Job) -> None:
        """Queue a unit; :meth:`completed` runs it."""
        self.queue.append(job)

    def completed(self) -> list[tuple[Unit, dict[str, Any]]]:
        """Run the first queued unit.

        Returns:
            That unit and its record.
        """
        job = self.queue.pop(0)
        return [(job.unit, execute(job))]

    def has_room(self) -> bool:
        """Take one unit at a time, so that units run in plan order.

        Returns:
            True when the queue is empty.
        """
        return not self.queue

    def running(self) -> bool:
        """Tell whether units are queued.

        Returns:
            True if the queue is not empty.
        """
        return bool(self.queue)


def resources(method: Method) -> dict[str, float]:
    """Return the Ray resources of one unit of a method.

    Args:
        method: The method.

    Returns:
        ``num_cpus``: the runner's ``threads`` (1 by default); ``num_gpus``: the trainer's ``devices`` when
        its accelerator is 'gpu' or 'cuda' (an integer, or the length of a device list), else 0.
    """
    devices = method.trainer.get('devices', 1)
    gpus = 0
    if method.trainer.get('accelerator') in ('gpu', 'cuda'):
        gpus = (
            len(devices)
            if isinstance(devices, list)
            else int(devices)
            if isinstance(devices, int)
            else 1
        )
    return {'num_cpus': float(method.runner['threads'] or 1), 'num_gpus': float(gpus)}


def _execute_in(folder: str, job: Job) -> dict[str, Any]:
    """Run a unit from the driver's working directory (configs name data by relative paths).

    Args:
        folder: The driver's working directory.
        job: The unit and what it runs with.

    Returns:
        The record.
    """
    os.chdir(folder)
    return execute(job)


class RayExecutor(Executor):
    """Run every unit as a Ray task with the CPUs and GPUs of its method (:func:`resources`).

    Every task writes its record into the same output folder, so on a cluster the output folder, the data
    and the working directory must be on a file system that every node sees under the same path.
    """

    name = 'ray'

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        """Connect to a Ray cluster, or start a local one.

        Args:
            address: Address of a running cluster (``ray start --head`` prints it; 'auto' finds a local
                one), or None to start a local instance.
            num_cpus: CPUs of a local instance (default: all).
        """
        import ray

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            environment = (
                {'PYTHONPATH': os.environ['PYTHONPATH']}
                if 'PYTHONPATH' in os.environ
                else {}
            )
            ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                include_dashboard=False,
                log_to_driver=True,
                runtime_env={'env_vars': environment},
            )
        self.task = ray.remote(_execute_in)
        self.futures: dict[Any, Unit] = {}

    @override
    def submit(self, job: Job) -> None:
        """Start a unit as a Ray task ('bar' progress becomes 'run': a worker has no terminal)."""
        options = resources(job.benchmark.method(job.unit.method))
        progress = 'run' if job.progress == 'bar' else job.progress
        future = self.task.options(**options).remote(
            os.getcwd(),
            replace(
                job,
                settings=dict(job.settings),
                parameters=dict(job.parameters),
                progress=progress,
            ),
        )
        self.futures[future] = job.unit

    def completed(self) -> list[tuple[Unit, dict[str, Any]]]:
        """Wait for at least one task.

        Returns:
            The finished tasks' units and records.
        """
        ready, _ = self.ray.wait(list(self.futures), num_returns=1)
        return [(self.futures.pop(f), self.ray.get(f)) for f in ready]

    def running(self) -> bool:
        """Tell whether tasks are running.

        Returns:
            True if a submitted task has not been handed back yet.
        """
        return bool(self.futures)

    def close(self) -> None:
        """Shut down the local Ray instance this executor started."""
        if self.started:
            self.ray.shutdown()


def make_executor(
    name: ExecutorName, address: str | None = None, num_cpus: int | None = None
) -> Executor:
    """Build an executor by name.

    Args:
        name: 'serial' or 'ray'.
        address: Ray cluster address (ray only).
        num_cpus: CPUs of a local Ray instance (ray only).

    Returns:
        The executor.
    """
    match name:
        case 'serial':
            return SerialExecutor()
        case 'ray':
            return RayExecutor(address, num_cpus)
