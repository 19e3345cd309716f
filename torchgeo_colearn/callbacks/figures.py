# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Where the callbacks' figures go: a PNG file and, with a TensorBoard logger, ``add_figure``."""

import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure


def tensorboard_writer(trainer: pl.Trainer) -> Any:
    """Return the SummaryWriter of the trainer's first TensorBoard logger, if any.

    Args:
        trainer: The trainer.

    Returns:
        A ``torch.utils.tensorboard.SummaryWriter`` or None.
    """
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def output_folder(trainer: pl.Trainer, output_dir: str | None) -> str:
    """Return (and create) the folder of a callback's result files.

    Args:
        trainer: The trainer.
        output_dir: The folder the user chose, or None for the trainer's log directory.

    Returns:
        The folder path.
    """
    folder = output_dir or trainer.log_dir or trainer.default_root_dir
    os.makedirs(folder, exist_ok=True)
    return folder


def write_figure(figure: Figure, path: str, trainer: pl.Trainer, tag: str) -> None:
    """Save a figure as a file and send it to TensorBoard.

    Args:
        figure: The figure.
        path: PNG path.
        trainer: The trainer, whose TensorBoard logger (if any) receives the figure.
        tag: TensorBoard tag, e.g. ``'test/scenarios'``.
    """
    figure.savefig(path)
    writer = tensorboard_writer(trainer)
    if writer is not None:
        writer.add_figure(tag, figure, trainer.global_step, close=False)
