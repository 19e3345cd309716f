# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Write the predictions of chosen inference scenarios to a CSV file, one row per sample."""

import csv
import os
from collections.abc import Sequence
from typing import IO, Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from ..metrics import TaskType
from ..scenarios import Scenario, parse_scenarios, scenario_name
from ..trainers.interface import check_predictor


def prediction_columns(
    scenario: Scenario,
    task: TaskType,
    width: int,
    class_names: Sequence[str] | None = None,
) -> list[str]:
    """Name the CSV columns of one scenario.

    ========== ==========================================================================
    task       columns (``<s>`` = scenario display name, ``<c>`` = class or label name)
    ========== ==========================================================================
    binary     ``<s>_prob`` (probability of the positive class), ``<s>_pred`` (0 or 1)
    multiclass ``<s>_prob_<c>`` per class, ``<s>_pred`` (class index, or name if given)
    multilabel ``<s>_prob_<c>`` per label, ``<s>_pred_<c>`` per label (0/1, threshold 0.5)
    regression ``<s>`` (value in target units)
    ========== ==========================================================================

    Args:
        scenario: The scenario.
        task: The task type.
        width: Number of classes or labels (multiclass, multilabel).
        class_names: Class or label names; default ``0 .. width - 1``.

    Returns:
        The column names.

    Raises:
        ValueError: If *class_names* does not have *width* entries.
    """
    name = scenario_name(scenario)
    names = [str(i) for i in range(width)] if class_names is None else list(class_names)
    if task in ('multiclass', 'multilabel') and len(names) != width:
        msg = f'class_names has {len(names)} entries, the predictions have {width}'
        raise ValueError(msg)
    match task:
        case 'binary':
            return [f'{name}_prob', f'{name}_pred']
        case 'multiclass':
            return [*(f'{name}_prob_{c}' for c in names), f'{name}_pred']
        case 'multilabel':
            return [f'{name}_prob_{c}' for c in names] + [
                f'{name}_pred_{c}' for c in names
            ]
        case 'regression':
            return [name]


def prediction_values(
    prediction: Tensor, task: TaskType, class_names: Sequence[str] | None = None
) -> list[list[Any]]:
    """Turn the predictions of one scenario into CSV cells.

    Args:
        prediction: Prediction of a batch, as returned by the task (see
            :meth:`~torchgeo_colearn.trainers.MultiModalTask.postprocess`).
        task: The task type.
        class_names: Class names for the multiclass ``_pred`` column.

    Returns:
        One list of cells per sample, in the order of :func:`prediction_columns`.
    """
    prediction = prediction.detach().float().cpu()
    match task:
        case 'binary':
            return [[p, int(p >= 0.5)] for p in prediction.tolist()]
        case 'multiclass':
            predicted = prediction.argmax(1).tolist()
            labels = (
                predicted
                if class_names is None
                else [class_names[i] for i in predicted]
            )
            return [
                [*row, label]
                for row, label in zip(prediction.tolist(), labels, strict=True)
            ]
        case 'multilabel':
            return [row + [int(p >= 0.5) for p in row] for row in prediction.tolist()]
        case 'regression':
            return [[p] for p in prediction.reshape(-1).tolist()]


def batch_ids(batch: dict[str, Any], start: int, size: int) -> list[str]:
    """Return the sample identifiers of a batch.

    Args:
        batch: The batch; its ``id`` is a list of str, or a tensor (B,).
        start: Running index of the first sample, used when the batch has no ``id``.
        size: Batch size.

    Returns:
        *size* identifiers.

    Raises:
        ValueError: If ``id`` does not have *size* entries.
    """
    ids = batch.get('id')
    if ids is None:
        return [str(i) for i in range(start, start + size)]
    values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    if len(values) != size:
        msg = f'batch key "id" has {len(values)} entries for {size} samples'
        raise ValueError(msg)
    return [str(v) for v in values]


class ScenarioPredictionWriter(BasePredictionWriter):
    """Write the predictions of chosen scenarios during ``predict``, one CSV row per sample.

    It writes what the task's ``predict_step`` returned (scenario name mapped to predictions, see
    :meth:`~torchgeo_colearn.trainers.MultiModalTask.predict_step`), batch by batch, so nothing is kept
    in memory. The columns are ``index`` (running position in the prediction set), ``id`` (the batch
    key ``id``, or the index when absent), then per scenario the columns of :func:`prediction_columns`.
    Under multi-process prediction each process writes its own file, suffixed ``.rank<r>``.

    YAML::

        trainer:
          callbacks:
            - class_path: torchgeo_colearn.callbacks.ScenarioPredictionWriter
              init_args: {scenarios: [s1], output: predictions.csv}
    """

    def __init__(
        self,
        scenarios: Sequence[str] | None = None,
        output: str | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        """Initialize a new ScenarioPredictionWriter instance.

        Args:
            scenarios: Scenario display names, e.g. ``['s1']`` or ``['s1', 's1+s2']``; None writes every
                scenario the task predicted.
            output: CSV path; None = ``predictions.csv`` in ``trainer.log_dir``.
            class_names: Names of the classes (multiclass) or labels (multilabel) for the column names.
        """
        super().__init__(write_interval='batch')
        self.scenario_names = None if scenarios is None else list(scenarios)
        self.output = output
        self.class_names = None if class_names is None else list(class_names)
        self.scenarios: list[Scenario] = []
        self.path: str | None = None
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._written = 0

    def on_predict_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Check the chosen scenarios and resolve the output path.

        Args:
            trainer: The trainer.
            pl_module: The task; must implement
                :class:`~torchgeo_colearn.trainers.ScenarioPredictor`.
        """
        task = check_predictor(pl_module)
        self.scenarios = (
            list(task.scenarios())
            if self.scenario_names is None
            else parse_scenarios(self.scenario_names, task.modalities)
        )
        path = self.output or os.path.join(
            trainer.log_dir or trainer.default_root_dir, 'predictions.csv'
        )
        if trainer.world_size > 1:
            path = f'{path}.rank{trainer.global_rank}'
        self.path = path
        self._written = 0

    def _open(self, task: TaskType, predictions: dict[str, Tensor]) -> None:
        """Open the file and write the header, once the prediction widths are known.

        Args:
            task: The task type.
            predictions: The chosen scenarios' predictions of the first batch.
        """
        assert self.path is not None
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # kept open across batches, closed in on_predict_end or on_exception
        self._file = open(self.path, 'w', newline='')  # noqa: SIM115
        self._writer = csv.writer(self._file)
        header = ['index', 'id']
        for scenario in self.scenarios:
            prediction = predictions[scenario_name(scenario)]
            width = prediction.shape[1] if prediction.ndim == 2 else 1
            header += prediction_columns(scenario, task, width, self.class_names)
        self._writer.writerow(header)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append the rows of a batch: what ``predict_step`` returned for the chosen scenarios.

        Args:
            trainer: The trainer.
            pl_module: The task.
            prediction: The output of ``predict_step``: scenario name mapped to predictions.
            batch_indices: Ignored.
            batch: The batch (for its ``id``).
            batch_idx: Ignored.
            dataloader_idx: Ignored.

        Raises:
            KeyError: If ``predict_step`` returned no prediction for a chosen scenario (its modalities
                are missing from the predict batches).
        """
        task = check_predictor(pl_module)
        names = [scenario_name(s) for s in self.scenarios]
        if missing := [name for name in names if name not in prediction]:
            msg = (
                f'predict_step returned no prediction for scenarios {missing} (their modalities are '
                f'missing from the predict batches); it returned {sorted(prediction)}: choose '
                f'ScenarioPredictionWriter(scenarios=[...]) among them'
            )
            raise KeyError(msg)
        if self._file is None:
            self._open(task.task_type, prediction)
        columns = [
            prediction_values(prediction[name], task.task_type, self.class_names)
            for name in names
        ]
        size = len(columns[0])
        ids = batch_ids(batch, self._written, size)
        for offset, identifier in enumerate(ids):
            row: list[Any] = [self._written + offset, identifier]
            for cells in columns:
                row += cells[offset]
            self._writer.writerow(row)
        self._written += size

    def on_predict_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Close the file.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        self._close()

    def on_exception(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        exception: BaseException,
    ) -> None:
        """Close the file when prediction fails.

        Args:
            trainer: The trainer.
            pl_module: The task.
            exception: The exception raised.
        """
        self._close()

    def _close(self) -> None:
        """Flush and close the CSV file, if open."""
        if self._file is not None:
            self._file.close()
            self._file = None
