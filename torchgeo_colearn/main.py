# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The ``colearn`` command line interface."""

import importlib
import logging
import os
import sys
import warnings
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
from .callbacks import EpochProgress, ScenarioPredictionWriter, ScenarioReport
from .trainers.checkpoints import (
    check_checkpoint_content,
    is_checkpoint_file,
    read_checkpoint,
)

#: Subcommands handled outside LightningCLI, mapped to the module whose ``main(argv)`` runs them.
EXTRA_COMMANDS = {
    'demo': 'torchgeo_colearn.demo',
    'benchmark': 'torchgeo_colearn.benchmark',
    'export': 'torchgeo_colearn.deploy.export',
    'map': 'torchgeo_colearn.deploy.mapping',
}

#: Listed by ``colearn --help`` below LightningCLI's subcommands.
EXTRA_HELP = (
    'other subcommands: '
    '`colearn demo` trains MDiCo and single-modality models on the built-in synthetic benchmark and '
    'compares them per inference modality; '
    '`colearn benchmark --config experiments/benchmarks/<name>.yaml` runs a cross-validated comparison of '
    'methods (resumable), with a generated report. See `colearn demo --help` and `colearn benchmark --help`.'
)


#: Lightning's advertisements, logged at every training (e.g. "Tip: ... try installing litlogger").
ADVERT_PREFIX = '\N{ELECTRIC LIGHT BULB} Tip:'


class _DropAdverts(logging.Filter):
    """Drop Lightning's advertisements from its log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but the advertisements.

        Args:
            record: A log record.

        Returns:
            False for an advertisement.
        """
        return not str(record.msg).startswith(ADVERT_PREFIX)


def quiet_lightning() -> None:
    """Silence what ``colearn`` users cannot act on: Lightning's adverts and its own deprecations.

    Lightning's tips to install its cloud services are dropped; the ``FutureWarning`` torch raises
    for the ``LeafSpec`` that Lightning's combined loader builds, and the deprecations that jsonargparse
    raises for LightningCLI's own calls, are ignored (they name Lightning code, not the user's). Other
    warnings and log records pass.
    """
    for name in (
        'lightning.pytorch.utilities.rank_zero',
        'lightning.fabric.utilities.rank_zero',
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdverts) for f in logger.filters):
            logger.addFilter(_DropAdverts())
    warnings.filterwarnings(
        'ignore',
        message=r'`isinstance\(treespec, LeafSpec\)` is deprecated',
        category=FutureWarning,
    )
    # jsonargparse >= 4.53 deprecates calls that LightningCLI itself makes (add_instantiator, skip_none)
    warnings.filterwarnings(
        'ignore', category=DeprecationWarning, module=r'lightning\.pytorch\.cli'
    )


def configured_class(config: Any) -> type | None:
    """Import the class of a ``class_path`` config.

    Args:
        config: A parsed subclass config (with ``class_path``), or anything else.

    Returns:
        The class, or None when the config names none or it cannot be imported.
    """
    class_path = getattr(config, 'class_path', None)
    if not isinstance(class_path, str) or '.' not in class_path:
        return None
    module, _, name = class_path.rpartition('.')
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None


class ColearnCLI(LightningCLI):
    """LightningCLI with the scenario report, the prediction writer and epoch lines always attached.

    The task scores every inference scenario itself; the report (tables, figure, terminal) and the
    prediction writer are configured under the top-level ``evaluation:`` and ``prediction:`` keys (not
    under ``trainer.callbacks``, where they would run twice), e.g. ``--evaluation.output_dir results``
    or ``--prediction.scenarios '[s1]' --prediction.output preds.csv``. ``predict`` writes batch by batch
    and keeps no prediction in memory. ``progress:`` configures :class:`EpochProgress`, one line per
    epoch when standard output is not a terminal (``--progress.mode always|never``). A ``--ckpt_path``
    file is checked before Lightning reads it: an empty, truncated or foreign file, or a checkpoint of
    another task class, is an error naming the path and what was expected.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the ``evaluation``, ``prediction`` and ``progress`` callback groups.

        Args:
            parser: The parser of a subcommand.
        """
        parser.add_lightning_class_args(ScenarioReport, 'evaluation')
        parser.add_lightning_class_args(ScenarioPredictionWriter, 'prediction')
        parser.add_lightning_class_args(EpochProgress, 'progress')
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

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse the arguments, then check a ``ckpt_path`` file before Lightning reads it.

        LightningCLI reads the checkpoint's hyperparameters right after parsing; an empty, truncated
        or foreign file, or a checkpoint of another task class than the configured one, is reported
        here with the path and what was expected. A checkpoint written by ``colearn fit`` names its
        class (``_class_path``), which LightningCLI then instantiates: only the file is checked.

        Args:
            parser: The argument parser.
            args: The arguments, or None for ``sys.argv``.

        Raises:
            FileNotFoundError: If the ``ckpt_path`` file does not exist.
            ValueError: If it is empty, truncated, not a Lightning checkpoint of a task of this
                package, or one of another task class.
        """
        super().parse_arguments(parser, args)
        subcommand = self.config.get('subcommand')
        if subcommand is None:
            return
        path = self.config[subcommand].get('ckpt_path')
        if not is_checkpoint_file(path):
            return
        expected = configured_class(self.config[subcommand].get('model'))
        checkpoint = read_checkpoint(path, expected)
        if '_class_path' in checkpoint.get('hyper_parameters', {}):
            expected = None
        check_checkpoint_content(checkpoint, path, expected)

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
    quiet_lightning()
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
        parser_kwargs={'version': __version__, 'epilog': EXTRA_HELP},
        args=args,
    )


def run() -> None:
    """Entry point of the ``colearn`` console script and ``python -m torchgeo_colearn``."""
    main()
