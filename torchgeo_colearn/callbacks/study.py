# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The shape of the opt-in test studies: start, study every test batch with the task, report once."""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from ..trainers.interface import ScenarioPredictor, check_predictor


class TestStudy(Callback, ABC):
    """A callback that studies the test batches with the task and reports at the end of testing.

    Subclasses implement :meth:`start` (forget an earlier test), :meth:`study` (device work on one
    normalised test batch) and :meth:`report` (on the process of rank 0, after testing).
    """

    def on_test_epoch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Start a new study (:meth:`start`).

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        self.start(check_predictor(pl_module), pl_module)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Study a test batch (:meth:`study`).

        Args:
            trainer: The trainer.
            pl_module: The task.
            outputs: Ignored.
            batch: The batch, on the device and normalised.
            batch_idx: Ignored.
            dataloader_idx: Ignored (all test dataloaders are pooled).
        """
        self.study(check_predictor(pl_module), batch)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report on the process of rank 0 (:meth:`report`).

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        if trainer.is_global_zero:
            self.report(trainer, pl_module)

    @abstractmethod
    def start(self, task: ScenarioPredictor, module: pl.LightningModule) -> None:
        """Forget an earlier test.

        Args:
            task: The task.
            module: The same task, as a LightningModule (its device).
        """

    @abstractmethod
    def study(self, task: ScenarioPredictor, batch: Mapping[str, Any]) -> None:
        """Study one test batch, on the device.

        Args:
            task: The task.
            batch: The batch, on the device and normalised.
        """

    @abstractmethod
    def report(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Write what the test showed (on the process of rank 0).

        Args:
            trainer: The trainer.
            module: The task.
        """
