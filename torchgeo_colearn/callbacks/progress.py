# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""One line per training epoch for logs that are not a terminal."""

import sys
import time
from typing import Literal, TypeAlias

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

#: When :class:`EpochProgress` prints: 'auto' when standard output is not a terminal.
ProgressMode: TypeAlias = Literal['auto', 'always', 'never']

#: Logged epoch values shown, as (logged key, shown name).
SHOWN = (('train_loss_epoch', 'train_loss'), ('val_loss', 'val_loss'))


class EpochProgress(Callback):
    """Print one line per training epoch: the epoch, the losses and the time it took.

    Progress bars redraw one terminal line; in the log of a batch job or a pipe they show nothing
    until the end. With ``mode='auto'`` (the default of ``colearn``) this callback prints, when
    standard output is not a terminal, e.g.::

        epoch 3/59: train_loss 5.1234, val_loss 5.3456 (4.2 s)

    Epochs are numbered from 0 to ``max_epochs - 1``, as in Lightning's progress bar and checkpoint
    names.

    The line of an epoch is printed once its validation and its epoch-end logging are done (when the
    next epoch starts, or when training ends); the time runs from the start of the epoch to then.
    ``colearn benchmark --progress epoch`` prefixes each line with the run's name.
    """

    def __init__(self, mode: ProgressMode = 'auto', prefix: str = '') -> None:
        """Initialize a new EpochProgress instance.

        Args:
            mode: 'auto' (print when standard output is not a terminal), 'always' or 'never'.
            prefix: Text before each line, e.g. ``'    mdico fold=0 seed=0 '``.

        Raises:
            ValueError: On another mode.
        """
        super().__init__()
        if mode not in ('auto', 'always', 'never'):
            msg = f"mode must be 'auto', 'always' or 'never', got {mode!r}"
            raise ValueError(msg)
        self.mode = mode
        self.prefix = prefix
        self._epoch: int | None = None
        self._started = 0.0

    @property
    def enabled(self) -> bool:
        """Whether lines are printed."""
        match self.mode:
            case 'always':
                return True
            case 'never':
                return False
            case 'auto':
                return not sys.stdout.isatty()

    def _report(self, trainer: pl.Trainer) -> None:
        """Print the line of the epoch in progress, if any.

        Args:
            trainer: The trainer.
        """
        if self._epoch is None:
            return
        metrics = trainer.callback_metrics
        values = [
            f'{name} {float(metrics[key]):.4f}' for key, name in SHOWN if key in metrics
        ]
        last = (trainer.max_epochs or -1) - 1
        total = f'/{last}' if last >= 0 else ''
        elapsed = time.perf_counter() - self._started
        print(
            f'{self.prefix}epoch {self._epoch}{total}: {", ".join(values)} ({elapsed:.1f} s)',
            flush=True,
        )
        self._epoch = None

    def on_train_epoch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Print the previous epoch's line and start timing this one.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        if not (self.enabled and trainer.is_global_zero):
            return
        self._report(trainer)
        self._epoch = trainer.current_epoch
        self._started = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print the last epoch's line.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        if self.enabled and trainer.is_global_zero:
            self._report(trainer)
