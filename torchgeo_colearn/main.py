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
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from torchgeo.datamodules import BaseDataModule
from torchgeo.trainers import BaseTask

import torchgeo_colearn.callbacks
import torchgeo_colearn.datamodules
import torchgeo_colearn.trainers  # noqa: F401

from . import __version__
from .callbacks import ScenarioPredictionWriter, ScenarioReport

#: Subcommands handled outside LightningCLI, mapped to the module whose ``main(argv)`` runs them.
EXTRA_COMMANDS = {
    'demo': 'torchgeo_colearn.demo',
    'benchmark': 'torchgeo_colearn.benchmark',
    'export': 'torchgeo_colearn.deploy.export',
    'map': 'torchgeo_colearn.deploy.mapping',
}


class ColearnCLI(LightningCLI):
    """LightningCLI with the scenario report and the prediction writer always attached.

    The task scores every inference scenario itself; the report (tables, figure, terminal) and the
    prediction writer are configured under the top-level ``evaluation:`` and ``prediction:`` keys (not
    under ``trainer.callbacks``, where they would run twice), e.g. ``--evaluation.output_dir results``
    or ``--prediction.scenarios '[s1]' --prediction.output preds.csv``. ``predict`` writes batch by batch
    and keeps no prediction in memory.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the ``evaluation`` and ``prediction`` callback groups.

        Args:
            parser: The parser of a subcommand.
        """
        parser.add_lightning_class_args(ScenarioReport, 'evaluation')
        parser.add_lightning_class_args(ScenarioPredictionWriter, 'prediction')
        # The table is printed by after_test, below Lightning's own results table.
        parser.set_defaults({'evaluation.print_table': False})

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        """Build a subcommand's parser; ``predict`` returns nothing (the writer has written it).

        Args:
            klass: The trainer class.
            subcommand: The subcommand name.
            **kwargs: Passed to LightningCLI.

        Returns:
            The parser.
        """
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == 'predict':
            parser.set_defaults(return_predictions=False)
        return parser

    def after_test(self) -> None:
        """End ``colearn test`` with the scenario table."""
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, ScenarioReport) and callback.results:
                callback.print_table()


def main(args: ArgsType = None) -> LightningCLI | None:
    """Run ``colearn``: LightningCLI's fit/validate/test/predict, plus ``demo`` and ``benchmark``.

    Built like TorchGeo's ``torchgeo`` command: any :class:`~torchgeo.trainers.BaseTask` and
    :class:`~torchgeo.datamodules.BaseDataModule` subclass can be given by class path or short name, the
    seed defaults to 0 and a config saved in the log directory may be overwritten.

    Args:
        args: Command-line arguments, or None to read ``sys.argv``.

    Returns:
        The LightningCLI instance (its ``trainer``, ``model`` and ``datamodule``), or None for ``demo``
        and ``benchmark``.
    """
    argv = (
        list(sys.argv[1:] if args is None else args)
        if not isinstance(args, dict)
        else None
    )
    if argv and argv[0] in EXTRA_COMMANDS:
        importlib.import_module(EXTRA_COMMANDS[argv[0]]).main(argv[1:])
        return None

    # Same raster I/O settings as the torchgeo command.
    os.environ.setdefault('GDAL_DISABLE_READDIR_ON_OPEN', 'EMPTY_DIR')
    return ColearnCLI(
        model_class=BaseTask,
        datamodule_class=BaseDataModule,
        seed_everything_default=0,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={'overwrite': True},
        parser_kwargs={'version': __version__},
        args=args,
    )


def run() -> None:
    """Entry point of the ``colearn`` console script and ``python -m torchgeo_colearn``."""
    main()
