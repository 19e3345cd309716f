# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The ``colearn`` command line interface."""

import importlib
import os
import sys
from typing import Any

# Importing the task, datamodule and callback packages registers their classes, so that configs
# can use short class names.
import torchgeo.datamodules
import torchgeo.trainers  # noqa: F401
from lightning.pytorch.cli import ArgsType, LightningCLI
from torchgeo.datamodules import BaseDataModule
from torchgeo.trainers import BaseTask

import torchgeo_colearn.callbacks
import torchgeo_colearn.datamodules
import torchgeo_colearn.trainers  # noqa: F401

from . import __version__

#: Subcommands handled outside LightningCLI, mapped to the module whose ``main(argv)`` runs them.
EXTRA_COMMANDS = {
    'demo': 'torchgeo_colearn.demo',
    'benchmark': 'torchgeo_colearn.benchmark',
}


def main(args: ArgsType = None) -> Any:
    """Run ``colearn``: LightningCLI's fit/validate/test/predict, plus ``demo`` and ``benchmark``.

    Built like TorchGeo's ``torchgeo`` command: any :class:`~torchgeo.trainers.BaseTask` and
    :class:`~torchgeo.datamodules.BaseDataModule` subclass can be given by class path or short name, the
    seed defaults to 0 and a config saved in the log directory may be overwritten.

    Args:
        args: Command-line arguments, or None to read ``sys.argv``.

    Returns:
        The LightningCLI instance, or the result of an extra subcommand.
    """
    argv = (
        list(sys.argv[1:] if args is None else args)
        if not isinstance(args, dict)
        else None
    )
    if argv and argv[0] in EXTRA_COMMANDS:
        return importlib.import_module(EXTRA_COMMANDS[argv[0]]).main(argv[1:])

    # Same raster I/O settings as the torchgeo command.
    os.environ.setdefault('GDAL_DISABLE_READDIR_ON_OPEN', 'EMPTY_DIR')
    return LightningCLI(
        model_class=BaseTask,
        datamodule_class=BaseDataModule,
        seed_everything_default=0,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={'overwrite': True},
        parser_kwargs={'version': __version__},
        args=args,
    )
