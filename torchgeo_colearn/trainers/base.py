# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Base class of the tasks that predict from any subset of modalities."""

import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeAlias

import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau
from torchgeo.trainers import BaseTask
from torchmetrics import MetricCollection

from ..batch import check_keys, image_key, modalities_in, valid_key
from ..losses import TaskLoss
from ..metrics import TaskType, build_metrics, metric_input, metric_target
from ..models import Encoder

#: A modality's input: the batch tensor and its optional (B, T) validity mask.
ModalityInput: TypeAlias = tuple[Tensor, Tensor | None]

#: An inference scenario: the modalities available, in training order.
Scenario: TypeAlias = tuple[str, ...]

#: Optimisers selectable by name.
OptimizerName: TypeAlias = Literal['adam', 'adamw', 'sgd']

#: Learning-rate schedules selectable by name.
SchedulerName: TypeAlias = Literal['plateau', 'cosine', 'none']

#: Training stages with their own metrics.
STAGES = ('train', 'val', 'test')


def scenario_name(scenario: Sequence[str]) -> str:
    """Return the display name of a scenario.

    Args:
        scenario: The available modalities.

    Returns:
        The modalities joined by '+', e.g. 's1+s2'.
    """
    return '+'.join(scenario)


class MultiModalTask(BaseTask, ABC):
    """Base of the multi-modal tasks: dict batch in, one prediction per inference scenario out.

    It implements what every method shares: input validation (keys, shapes, NaN), the supervised loss
    of the task type (class weights, target standardisation), per-modality metrics per stage, logging,
    optimisers, and the scenario interface used by
    :class:`~torchgeo_colearn.callbacks.ScenarioEvaluation`:

    * :attr:`modalities`, :attr:`task_type`, :attr:`num_classes`, :attr:`num_labels`;
    * :meth:`scenarios`: every single modality, plus every larger subset if the method can fuse
      (:attr:`supports_fusion`);
    * :meth:`predict_scenarios`: encodes each modality once, then predicts every scenario;
    * :meth:`representations`: per-modality embeddings for visualisation.

    Subclasses implement :meth:`configure_models`, :meth:`encode`, :meth:`predict_from` and
    :meth:`training_losses`, and take at least the constructor arguments documented in
    :class:`~torchgeo_colearn.CoLearnTask` that this class reads from ``self.hparams``: ``encoders``,
    ``task``, ``num_classes``, ``num_labels``, ``class_weights``, ``target_mean``, ``target_std``,
    ``lr``, ``patience``, ``optimizer``, ``scheduler``, ``weight_decay``.
    """

    #: Whether a scenario may hold several modalities (the method fuses them).
    supports_fusion: ClassVar[bool] = False

    #: Minimum number of training modalities.
    min_modalities: ClassVar[int] = 1

    #: The supervised loss, built by :meth:`configure_losses`.
    criterion: TaskLoss

    #: Metric collections keyed ``<stage>_<modality>``, built by :meth:`configure_metrics`.
    metrics: nn.ModuleDict

    def __init__(self) -> None:
        """Initialize a new MultiModalTask instance (after the subclass stored nothing else)."""
        self._deferred_nan: dict[str, Tensor] = {}
        self._loss_sums: dict[str, dict[str, Tensor]] = {}
        self._loss_counts: dict[str, int] = {}
        super().__init__()
        if len(self.modalities) < self.min_modalities:
            msg = (
                f'{type(self).__name__} needs at least {self.min_modalities} modalities in '
                f'`encoders`, got {list(self.modalities)}'
            )
            raise ValueError(msg)

    # ----------------------------------------------------------------------------------------------
    # Properties of the scenario interface
    # ----------------------------------------------------------------------------------------------

    @property
    def modalities(self) -> tuple[str, ...]:
        """The training modalities, in the order of the ``encoders`` argument."""
        return tuple(self.hparams['encoders'])

    @property
    def task_type(self) -> TaskType:
        """The task type: 'binary', 'multiclass', 'multilabel' or 'regression'."""
        task: TaskType = self.hparams['task']
        return task

    @property
    def num_classes(self) -> int | None:
        """Number of classes (multiclass), else None."""
        value: int | None = self.hparams.get('num_classes')
        return value

    @property
    def num_labels(self) -> int | None:
        """Number of labels (multilabel), else None."""
        value: int | None = self.hparams.get('num_labels')
        return value

    @property
    def output_dim(self) -> int:
        """Size of the raw output of a head: 1 (binary, regression), K classes or L labels.

        Raises:
            ValueError: If ``num_classes`` / ``num_labels`` is missing for the task type.
        """
        match self.task_type:
            case 'binary' | 'regression':
                return 1
            case 'multiclass':
                if self.num_classes is None or self.num_classes < 2:
                    msg = f"task='multiclass' needs num_classes >= 2, got {self.num_classes}"
                    raise ValueError(msg)
                return self.num_classes
            case 'multilabel':
                if self.num_labels is None or self.num_labels < 1:
                    msg = f"task='multilabel' needs num_labels >= 1, got {self.num_labels}"
                    raise ValueError(msg)
                return self.num_labels

    # ----------------------------------------------------------------------------------------------
    # Losses and metrics
    # ----------------------------------------------------------------------------------------------

    def configure_losses(self) -> None:
        """Build the supervised loss of the task type.

        ``class_weights: 'balanced'`` and regression target statistics left at None are placeholders
        here, filled from the datamodule when fitting starts (:meth:`on_fit_start`); as buffers, they are
        saved in checkpoints.

        Raises:
            ValueError: If explicit class weights have the wrong length or the task type is unknown.
        """
        if self.task_type not in ('binary', 'multiclass', 'multilabel', 'regression'):
            msg = (
                f"task must be 'binary', 'multiclass', 'multilabel' or 'regression', "
                f'got {self.task_type!r}'
            )
            raise ValueError(msg)
        weights = self.hparams.get('class_weights')
        size = 2 if self.task_type == 'binary' else self.output_dim
        class_weights: Tensor | None = None
        if isinstance(weights, str):
            if weights != 'balanced':
                msg = (
                    f"class_weights must be 'balanced', a list or None, got {weights!r}"
                )
                raise ValueError(msg)
            class_weights = torch.ones(size)
        elif weights is not None:
            class_weights = torch.as_tensor(weights, dtype=torch.float32)
            if class_weights.shape != (size,):
                msg = f'class_weights must have {size} values for task={self.task_type!r}, got {weights}'
                raise ValueError(msg)
        self.criterion = TaskLoss(
            self.task_type,
            class_weights if self.task_type != 'regression' else None,
            self.hparams.get('target_mean') or 0.0,
            self.hparams.get('target_std') or 1.0,
        )

    def configure_metrics(self) -> None:
        """Build one metric collection per stage and modality, prefixed ``<stage>_<modality>_``."""
        metrics = build_metrics(self.task_type, self.num_classes, self.num_labels)
        self.metrics = nn.ModuleDict(
            {
                f'{stage}_{modality}': metrics.clone(prefix=f'{stage}_{modality}_')
                for stage in STAGES
                for modality in self.modalities
            }
        )

    def on_fit_start(self) -> None:
        """Fill 'balanced' class weights and regression target statistics from the datamodule."""
        datamodule = getattr(self.trainer, 'datamodule', None)
        if datamodule is None:
            return
        criterion = self.criterion
        balanced = self.hparams.get('class_weights') == 'balanced'
        if (
            balanced
            and criterion.class_weights is not None
            and hasattr(datamodule, 'class_weights')
        ):
            expected = criterion.class_weights.shape
            weights = datamodule.class_weights(expected[0]).to(
                criterion.target_mean.device
            )
            if weights.shape != expected:
                msg = (
                    f'datamodule.class_weights() returned {tuple(weights.shape)} weights, the task '
                    f'expects {tuple(expected)} (task={self.task_type!r})'
                )
                raise ValueError(msg)
            criterion.class_weights.copy_(weights)
        if self.task_type == 'regression' and hasattr(datamodule, 'target_stats'):
            mean, std = datamodule.target_stats()
            if self.hparams.get('target_mean') is None:
                criterion.target_mean.fill_(mean)
            if self.hparams.get('target_std') is None:
                criterion.target_std.fill_(std)

    # ----------------------------------------------------------------------------------------------
    # Inputs
    # ----------------------------------------------------------------------------------------------

    @abstractmethod
    def encoder_of(self, modality: str) -> Encoder:
        """Return an encoder whose :attr:`~Encoder.input_shape` defines the modality's input shape.

        Args:
            modality: A training modality.

        Returns:
            The encoder used to check input shapes.
        """

    def modality_inputs(
        self,
        batch: Mapping[str, Any],
        require_all: bool = False,
        defer_nan_check: bool = False,
    ) -> dict[str, ModalityInput]:
        """Validate a batch and extract each modality's input.

        Args:
            batch: Batch dict with ``image_<modality>`` keys.
            require_all: Every training modality must be present (co-learning losses).
            defer_nan_check: On accelerators, accumulate the NaN check on the device and raise at the
                end of the epoch instead of synchronising every step (CPU tensors are always checked
                at once).

        Returns:
            Modality mapped to (input, validity mask or None), in training order.

        Raises:
            KeyError: On an unknown key, or a missing modality when *require_all*.
            ValueError: If no training modality is present, on a wrong shape, or on NaN.
        """
        check_keys(batch, self.modalities)
        present = modalities_in(batch)
        if not present:
            msg = (
                f'the batch holds none of the trained modalities {list(self.modalities)} '
                f'(keys: {sorted(batch)}); pass at least one as image_<modality>'
            )
            raise ValueError(msg)
        if require_all and (
            missing := [m for m in self.modalities if m not in present]
        ):
            msg = f'training needs every modality; missing {[image_key(m) for m in missing]}'
            raise KeyError(msg)
        inputs: dict[str, ModalityInput] = {}
        for modality in self.modalities:
            if modality not in present:
                continue
            key = image_key(modality)
            x = batch[key]
            if not isinstance(x, Tensor):
                msg = f'{key} must be a tensor, got {type(x).__name__}'
                raise TypeError(msg)
            expected = self.encoder_of(modality).input_shape
            if not self.encoder_of(modality).accepts(tuple(x.shape[1:])):
                shown = ', '.join('*' if d is None else str(d) for d in expected)
                msg = (
                    f'{key}: expected shape (B, {shown}), got {tuple(x.shape)} '
                    f'(* = any size)'
                )
                raise ValueError(msg)
            self._check_finite(key, x, defer_nan_check)
            valid = batch.get(valid_key(modality))
            if valid is not None and tuple(valid.shape) != tuple(x.shape[:2]):
                msg = (
                    f'{valid_key(modality)}: expected shape {tuple(x.shape[:2])} to match {key}, '
                    f'got {tuple(valid.shape)}'
                )
                raise ValueError(msg)
            inputs[modality] = (x.float(), valid)
        return inputs

    def _check_finite(self, key: str, x: Tensor, defer: bool) -> None:
        """Raise if an input holds NaN, or record the check for the end of the epoch.

        Args:
            key: The batch key, for the message.
            x: The input tensor.
            defer: Defer the check on accelerators (no device-to-host synchronisation per step).

        Raises:
            ValueError: If *x* holds NaN (checked now).
        """
        has_nan = torch.isnan(x).any()
        if defer and x.device.type != 'cpu':
            previous = self._deferred_nan.get(key)
            self._deferred_nan[key] = (
                has_nan if previous is None else previous | has_nan
            )
        elif has_nan:
            msg = (
                f'{key} holds NaN; let the datamodule fill them (fill_nan=True) or fill them '
                f'before calling the model'
            )
            raise ValueError(msg)

    def _raise_deferred_nan(self) -> None:
        """Raise for the inputs that held NaN during the epoch, if any (one synchronisation)."""
        flagged = [key for key, flag in self._deferred_nan.items() if bool(flag)]
        self._deferred_nan.clear()
        if flagged:
            msg = f'{flagged} held NaN during this epoch; use fill_nan=True in the datamodule'
            raise ValueError(msg)

    # ----------------------------------------------------------------------------------------------
    # What each method implements
    # ----------------------------------------------------------------------------------------------

    @abstractmethod
    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, Any]:
        """Encode each available modality once.

        Args:
            inputs: Modality mapped to (input, validity mask), as from :meth:`modality_inputs`.

        Returns:
            Modality mapped to whatever :meth:`predict_from` needs.
        """

    @abstractmethod
    def predict_from(self, features: Mapping[str, Any], scenario: Scenario) -> Tensor:
        """Predict one scenario from encoded modalities.

        Args:
            features: Output of :meth:`encode`, holding at least the scenario's modalities.
            scenario: The available modalities.

        Returns:
            Raw outputs: logits (B,) / (B, K) / (B, L), or standardised values (B,).
        """

    @abstractmethod
    def training_losses(
        self, inputs: Mapping[str, ModalityInput], target: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Compute the training objective.

        Args:
            inputs: Every training modality's input.
            target: The batch targets.

        Returns:
            The loss terms (``'loss'`` is the total that is minimised; the others are logged), and the
            raw single-modality outputs, modality mapped to (B, ...) raw outputs, used for the metrics.
        """

    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Return the embeddings of each modality present, for visualisation.

        Args:
            batch: Normalised batch.

        Returns:
            Modality mapped to part name mapped to (B, d) embeddings. The default returns the encoder
            outputs of :meth:`encode` when they are tensors, under ``'features'``.
        """
        features = self.encode(self.modality_inputs(batch, defer_nan_check=True))
        return {
            m: {'features': f} for m, f in features.items() if isinstance(f, Tensor)
        }

    # ----------------------------------------------------------------------------------------------
    # Prediction
    # ----------------------------------------------------------------------------------------------

    def postprocess(self, raw: Tensor) -> Tensor:
        """Turn raw outputs into predictions.

        Args:
            raw: Raw outputs of :meth:`predict_from`.

        Returns:
            Probability of the positive class (B,) (binary), class probabilities (B, K) (multiclass),
            label probabilities (B, L) (multilabel) or values in target units (B,) (regression).
        """
        match self.task_type:
            case 'binary':
                return torch.sigmoid(raw.float())
            case 'multiclass':
                return torch.softmax(raw.float(), dim=-1)
            case 'multilabel':
                return torch.sigmoid(raw.float())
            case 'regression':
                return (
                    raw.float() * self.criterion.target_std + self.criterion.target_mean
                )

    def scenarios(self) -> list[Scenario]:
        """Return the default inference scenarios.

        Returns:
            Every single modality, then, if the method fuses, every subset of two or more modalities
            (by size, then in training order).
        """
        sizes = range(1, len(self.modalities) + 1) if self.supports_fusion else [1]
        return [s for k in sizes for s in itertools.combinations(self.modalities, k)]

    def predict_scenarios(
        self, batch: Mapping[str, Any], scenarios: Sequence[Scenario]
    ) -> dict[Scenario, Tensor]:
        """Predict several scenarios, encoding each modality once.

        Args:
            batch: Normalised batch holding every modality the scenarios use.
            scenarios: The scenarios to predict.

        Returns:
            Scenario mapped to predictions (see :meth:`postprocess`).

        Raises:
            ValueError: If a scenario is empty, uses several modalities while the method cannot fuse,
                or names a modality the batch lacks.
        """
        needed = {m for scenario in scenarios for m in scenario}
        inputs = self.modality_inputs(batch, defer_nan_check=True)
        for scenario in scenarios:
            if not scenario or (len(scenario) > 1 and not self.supports_fusion):
                msg = f'{type(self).__name__} cannot predict scenario {scenario}'
                raise ValueError(msg)
        if missing := sorted(needed - set(inputs)):
            msg = f'scenarios need {[image_key(m) for m in missing]}, absent from the batch'
            raise ValueError(msg)
        features = self.encode({m: inputs[m] for m in self.modalities if m in needed})
        return {s: self.postprocess(self.predict_from(features, s)) for s in scenarios}

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Predict from each modality present in the batch, alone.

        Args:
            batch: Normalised batch with any non-empty subset of the training modalities, e.g.
                ``{'image_s1': x}`` with x of shape (B, *input_shape).

        Returns:
            Modality mapped to its prediction (see :meth:`postprocess`).
        """
        inputs = self.modality_inputs(batch)
        features = self.encode(inputs)
        return {m: self.postprocess(self.predict_from(features, (m,))) for m in inputs}

    # ----------------------------------------------------------------------------------------------
    # Lightning steps
    # ----------------------------------------------------------------------------------------------

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        """Compute, log and return the loss of a batch, and update the per-modality metrics.

        Args:
            batch: Normalised batch holding every training modality and ``label``.
            stage: 'train', 'val' or 'test'.

        Returns:
            The total loss.

        Raises:
            KeyError: If the batch has no ``label``.
        """
        if 'label' not in batch:
            msg = f'{stage} batches need a label key, got keys {sorted(batch)}'
            raise KeyError(msg)
        target = batch['label']
        inputs = self.modality_inputs(batch, require_all=True, defer_nan_check=True)
        losses, outputs = self.training_losses(inputs, target)
        batch_size = target.shape[0]
        if stage == 'train':
            self.log('train_loss', losses['loss'], batch_size=batch_size, prog_bar=True)
        sums = self._loss_sums.setdefault(stage, {})
        for name, value in losses.items():
            weighted = value.detach() * batch_size
            sums[name] = sums[name] + weighted if name in sums else weighted
        self._loss_counts[stage] = self._loss_counts.get(stage, 0) + batch_size
        for modality, raw in outputs.items():
            prediction = metric_input(self.task_type, self.postprocess(raw.detach()))
            self._stage_metrics(stage, modality).update(
                prediction, metric_target(self.task_type, target)
            )
        return losses['loss']

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the training loss and update the training metrics.

        Args:
            batch: The output of your DataLoader.
            batch_idx: Integer displaying index of this batch.
            dataloader_idx: Index of the current dataloader.

        Returns:
            The loss tensor.
        """
        return self._shared_step(batch, 'train')

    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the validation loss and update the validation metrics.

        Args:
            batch: The output of your DataLoader.
            batch_idx: Integer displaying index of this batch.
            dataloader_idx: Index of the current dataloader.
        """
        self._shared_step(batch, 'val')

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Compute the test loss and update the test metrics.

        Args:
            batch: The output of your DataLoader.
            batch_idx: Integer displaying index of this batch.
            dataloader_idx: Index of the current dataloader.
        """
        self._shared_step(batch, 'test')

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        """Predict from each modality present, alone.

        Args:
            batch: The output of your DataLoader.
            batch_idx: Integer displaying index of this batch.
            dataloader_idx: Index of the current dataloader.

        Returns:
            Modality mapped to its prediction (see :meth:`postprocess`).
        """
        predictions: dict[str, Tensor] = self(batch)
        return predictions

    def _log_epoch_metrics(self, stage: str) -> None:
        """Log the epoch means of the loss terms and the per-modality metrics of a stage, then reset.

        The steps only accumulate on the device (no synchronisation, one Lightning ``log`` call per
        training step for the progress bar); everything is computed and logged here, once per epoch.

        Args:
            stage: 'train', 'val' or 'test'.
        """
        sums = self._loss_sums.pop(stage, {})
        count = self._loss_counts.pop(stage, 0)
        if count:
            # The per-step training loss is logged by the step; the epoch means of all terms here.
            means = {f'{stage}_{name}': total / count for name, total in sums.items()}
            if stage == 'train':
                means['train_loss_epoch'] = means.pop('train_loss')
            self.log_dict(means, sync_dist=True)
        for modality in self.modalities:
            metrics = self._stage_metrics(stage, modality)
            if count:
                self.log_dict(metrics.compute())
            metrics.reset()

    def _stage_metrics(self, stage: str, modality: str) -> MetricCollection:
        """Return the metric collection of a stage and modality.

        Args:
            stage: 'train', 'val' or 'test'.
            modality: A training modality.

        Returns:
            The collection, prefixed ``<stage>_<modality>_``.
        """
        metrics = self.metrics[f'{stage}_{modality}']
        assert isinstance(metrics, MetricCollection)
        return metrics

    def on_train_epoch_end(self) -> None:
        """Log the training metrics; raise if inputs held NaN during the epoch."""
        self._log_epoch_metrics('train')
        self._raise_deferred_nan()

    def on_validation_epoch_end(self) -> None:
        """Log the validation metrics; raise if inputs held NaN during the epoch."""
        self._log_epoch_metrics('val')
        self._raise_deferred_nan()

    def on_test_epoch_end(self) -> None:
        """Log the test metrics; raise if inputs held NaN during the epoch."""
        self._log_epoch_metrics('test')
        self._raise_deferred_nan()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Build the optimiser and learning-rate schedule chosen by name.

        Returns:
            The optimiser and its scheduler config (monitoring ``val_loss`` for 'plateau').
        """
        lr: float = self.hparams['lr']
        weight_decay: float = self.hparams.get('weight_decay', 0.0)
        params = [p for p in self.parameters() if p.requires_grad]
        # One fused kernel per step instead of a few per parameter: the models are many small tensors.
        fused = all(
            p.device.type in ('cpu', 'cuda') and p.is_floating_point() for p in params
        )
        optimizer: Optimizer
        match self.hparams.get('optimizer', 'adam'):
            case 'adam':
                optimizer = Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
            case 'adamw':
                optimizer = AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
            case 'sgd':
                optimizer = SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
            case other:
                msg = f"optimizer must be 'adam', 'adamw' or 'sgd', got {other!r}"
                raise ValueError(msg)
        scheduler: Any
        match self.hparams.get('scheduler', 'plateau'):
            case 'plateau':
                scheduler = ReduceLROnPlateau(
                    optimizer, patience=self.hparams['patience']
                )
            case 'cosine':
                max_epochs = (
                    self.trainer.max_epochs if self._trainer is not None else None
                )
                scheduler = CosineAnnealingLR(optimizer, T_max=max(1, max_epochs or 1))
            case 'none':
                return {'optimizer': optimizer}  # type: ignore[typeddict-item]
            case other:
                msg = f"scheduler must be 'plateau', 'cosine' or 'none', got {other!r}"
                raise ValueError(msg)
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': scheduler, 'monitor': self.monitor},
        }
