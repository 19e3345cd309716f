# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Base class of the tasks that predict from any subset of modalities."""

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor
from typing_extensions import override

from ..deploy.inputs import predict_raw, record_training_inputs
from ..losses import TaskLoss
from ..metrics import TaskType
from ..models import Encoder
from ..presence import Inputs, without_lone_samples
from ..scenarios import Scenario, default_scenarios, scenario_name, scores_by_scenario
from .checkpoints import CheckpointedTask
from .checks import (
    BatchChecks,
    check_plateau_validation,
    check_presence,
    check_task_options,
    explain_batch_norm,
)
from .epoch import STAGES, EpochAccumulator, to_floats
from .interface import Features, LossOutput, MultiModalNetwork
from .optimization import OptimizerName, SchedulerName, optimization
from .prediction import PredictsScenarios


class MultiModalTask(PredictsScenarios, CheckpointedTask, ABC):
    """Base of the multi-modal tasks: dict batch in, one prediction per inference scenario out.

    It implements what every method shares: the constructor arguments below, batch validation (keys,
    shapes, NaN and ``inf`` in inputs, the ``label`` against the task: :mod:`.checks`), the
    supervised loss of the task type (class weights, target standardisation), optimisers,
    checkpoints that resume reproducibly (:mod:`.checkpoints`), and the evaluation of every inference
    scenario. Per validation or test batch each
    modality is encoded **once** (:meth:`encode`); the same features give the loss terms
    (:meth:`losses`) and the prediction of every scenario (:meth:`predict_from`), whose scores accumulate
    on the device (:class:`~torchgeo_colearn.metrics.ScenarioScores`) and are logged at epoch end as
    ``<stage>/<scenario>/<metric>`` (e.g. ``val/s1/R2``, ``test/s1+s2/F1Score``) together with the number
    of samples scored (``<stage>/<scenario>/count``). Training scores the scenarios the objective
    computes anyway (:meth:`training_scenarios`). Loss terms are logged as ``<stage>_<term>``
    (``train_loss``, ``val_loss``, ``val_main_loss``, ...).

    Subclasses implement :meth:`configure_models`, :meth:`encoder_of`, :meth:`encode`,
    :meth:`predict_from` and :meth:`losses`; their own constructor arguments are keyword-only and the
    shared ones below are forwarded with ``**kwargs``.
    """

    #: Minimum number of training modalities.
    min_modalities: ClassVar[int] = 1

    #: The supervised loss, built by :meth:`configure_losses`.
    criterion: TaskLoss

    #: The method's network, built by :meth:`configure_models`.
    model: MultiModalNetwork

    #: Loss sums and scenario scores of each stage, built by :meth:`configure_metrics`.
    epoch: EpochAccumulator

    def __init__(
        self,
        encoders: dict[str, dict[str, Any]],
        task: TaskType = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        embed_dim: int = 64,
        head_hidden_dim: int | None = None,
        class_weights: Sequence[float] | Literal['balanced'] | None = None,
        target_mean: float | None = None,
        target_std: float | None = None,
        lr: float = 1e-3,
        patience: int = 10,
        optimizer: OptimizerName = 'adam',
        scheduler: SchedulerName = 'plateau',
        weight_decay: float = 0.0,
    ) -> None:
        """Initialize a new MultiModalTask instance.

        Args:
            encoders: Modality name mapped to its encoder config: ``name`` ('tempcnn', 'mlp', 'timm' or a
                registered name) plus that encoder's arguments, e.g.
                ``{'s1': {'name': 'tempcnn', 'in_channels': 2, 'seq_len': 12}}``. The keys are the batch
                keys without the ``image_`` prefix, in the order of the scenarios.
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            embed_dim: Size d of the representations (methods document how they use it).
            head_hidden_dim: Hidden width of all heads, or None for linear heads.
            class_weights: Class weights of the task loss (positive weights for multilabel): a list,
                'balanced' (computed on the training labels by the datamodule when fitting starts), or
                None.
            target_mean: Regression target mean used to standardise the target; None takes it from the
                datamodule's training targets when fitting starts (0 without a datamodule).
            target_std: Regression target standard deviation; None as for *target_mean* (1 without a
                datamodule).
            lr: Learning rate.
            patience: Patience of the 'plateau' learning-rate schedule, in epochs.
            optimizer: 'adam', 'adamw' or 'sgd'.
            scheduler: 'plateau' (on ``val_loss``), 'cosine' or 'none'.
            weight_decay: Weight decay of the optimiser.

        Raises:
            ValueError: With fewer modalities than the method needs, a modality name that is not an
                identifier, or an invalid option.
        """
        self.batch_checks = BatchChecks()
        #: The last computed scenario scores per stage: scenario name mapped to metric mapped to value.
        self.scenario_results: dict[str, dict[str, dict[str, float]]] = {}
        check_task_options(task, encoders, self.min_modalities, type(self).__name__)
        super().__init__()

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
            ValueError: If explicit class weights have the wrong length.
        """
        self.criterion = TaskLoss.from_options(
            self.task_type,
            2 if self.task_type == 'binary' else self.output_dim,
            self.hparams.get('class_weights'),
            self.hparams.get('target_mean'),
            self.hparams.get('target_std'),
        )

    def configure_metrics(self) -> None:
        """Build the per-stage accumulators (training scores :meth:`training_scenarios`)."""
        self.epoch = EpochAccumulator(
            {stage: self.scored_scenarios(stage) for stage in STAGES},
            self.task_type,
            self.num_classes,
            self.num_labels,
        )

    def on_fit_start(self) -> None:
        """Check the schedule's validation, fill class weights and target statistics.

        'balanced' class weights and regression target statistics left at None come from the
        datamodule.

        Raises:
            ValueError: If ``scheduler='plateau'`` and validation does not run every epoch.
        """
        check_plateau_validation(
            self.trainer, self.hparams.get('scheduler', 'plateau'), self.monitor
        )
        datamodule = getattr(self.trainer, 'datamodule', None)
        if datamodule is not None:
            self.criterion.fill_from(
                datamodule,
                balanced=self.hparams.get('class_weights') == 'balanced',
                target_mean=self.hparams.get('target_mean') is None,
                target_std=self.hparams.get('target_std') is None,
            )

    # ----------------------------------------------------------------------------------------------
    # Inputs
    # ----------------------------------------------------------------------------------------------

    def encoder_of(self, modality: str) -> Encoder:
        """Return an encoder whose :attr:`~Encoder.input_shape` defines the modality's input shape.

        Args:
            modality: A training modality.

        Returns:
            The encoder used to check input shapes: by default ``self.model.encoder(modality)``.
        """
        return self.model.encoder(modality)

    # ----------------------------------------------------------------------------------------------
    # What each method implements
    # ----------------------------------------------------------------------------------------------

    def encode(self, inputs: Inputs) -> dict[str, Any]:
        """Encode each available modality once.

        Args:
            inputs: Modality mapped to (input, validity mask), as from :meth:`modality_inputs`.

        Returns:
            Modality mapped to whatever :meth:`predict_from` and :meth:`losses` need: by default
            ``self.model.encode(inputs)``.
        """
        return self.model.encode(inputs)

    @abstractmethod
    def predict_from(self, features: Features, scenario: Scenario) -> Tensor:
        """Predict one scenario from encoded modalities.

        Args:
            features: Output of :meth:`encode`, holding at least the scenario's modalities, each on
                the same samples (:meth:`scenario_output` passes the samples that hold every modality
                of the scenario).
            scenario: The available modalities.

        Returns:
            Raw outputs: logits (N,) / (N, K) / (N, L), or standardised values (N,), for the N samples
            of the features.
        """

    @abstractmethod
    def losses(self, inputs: Inputs, features: Features, target: Tensor) -> LossOutput:
        """Compute the objective of a batch (training, and the validation loss).

        Each term uses only the samples it concerns when the batch marks samples that lack a
        modality (``inputs.presence``; :mod:`torchgeo_colearn.presence`): a modality's inputs and
        features hold the rows of the samples that have it, and a term with no sample contributes
        nothing.

        Args:
            inputs: Every training modality's input (for terms that need more than the features,
                e.g. a distillation teacher).
            features: Output of :meth:`encode` for every training modality.
            target: The (B,) or (B, L) targets of the whole batch.

        Returns:
            The loss terms (``'loss'`` is the total that is minimised; the others are logged) and the raw
            outputs of the scenarios the objective computed (scenario mapped to raw outputs on the
            samples that hold the scenario's modalities), reused for the scores instead of being
            predicted again.
        """

    def training_scenarios(self) -> list[Scenario]:
        """Return the scenarios scored during training.

        Returns:
            Every single modality: methods whose objective computes each modality's prediction return
            them from :meth:`losses`. Methods whose objective does not (e.g. modality dropout) return
            [] so that training runs no extra prediction.
        """
        return default_scenarios(self.modalities, fusion=False)

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
            case 'binary' | 'multilabel':
                return torch.sigmoid(raw.float())
            case 'multiclass':
                return torch.softmax(raw.float(), dim=-1)
            case 'regression':
                return (
                    raw.float() * self.criterion.target_std + self.criterion.target_mean
                )

    def scenarios(self) -> list[Scenario]:
        """Return the inference scenarios scored in validation and test.

        Returns:
            Every single modality, then, if the method fuses, every subset of two or more modalities
            (by size, then in training order).
        """
        return default_scenarios(self.modalities, self.supports_fusion)

    def scored_scenarios(self, stage: str) -> list[Scenario]:
        """Return the scenarios scored in a stage.

        Args:
            stage: 'train', 'val' or 'test'.

        Returns:
            :meth:`training_scenarios` for 'train', :meth:`scenarios` otherwise.
        """
        return self.training_scenarios() if stage == 'train' else self.scenarios()

    # ----------------------------------------------------------------------------------------------
    # Deployment: the logic lives in torchgeo_colearn.deploy (docs/deploy.md)
    # ----------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Record the datamodule's training inputs when fitting (after the datamodule's setup).

        Args:
            stage: Either 'fit', 'validate', 'test' or 'predict'.
        """
        if stage == 'fit':
            record_training_inputs(self)

    def predict_raw(
        self, inputs: Mapping[str, Tensor], valid: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Predict from raw sensor values, normalised as in training (see ``docs/deploy.md``).

        :func:`torchgeo_colearn.deploy.predict_raw` does the work.

        Args:
            inputs: Modality mapped to raw values (B, *sample shape), e.g. ``{'s1': x}``.
            valid: Optional modality mapped to (B, T) valid time steps.

        Returns:
            The predictions of the scenario of the given modalities (see :meth:`postprocess`).
        """
        return predict_raw(self, inputs, valid)

    # ----------------------------------------------------------------------------------------------
    # Lightning steps
    # ----------------------------------------------------------------------------------------------

    def _shared_step(
        self, batch: Mapping[str, Any], stage: str, batch_idx: int = 0
    ) -> Tensor:
        """Check the batch, encode once, compute the loss terms, and score the stage's scenarios.

        The inputs and the ``label`` are checked against the task (:mod:`.checks`): on the CPU at
        every batch, naming the sample; on accelerators at the end of the epoch, without a
        synchronisation per step.

        Args:
            batch: Normalised batch holding every training modality and ``label``.
            stage: 'train', 'val' or 'test'.
            batch_idx: Index of the batch, named in error messages.

        Returns:
            The total loss.

        Raises:
            KeyError: If the batch has no ``label``.
            ValueError: If the label does not fit the task, an input holds NaN or ``inf``, or a
                training batch of one sample meets batch normalisation.
        """
        if stage == 'train':
            batch, lone = without_lone_samples(batch, self.modalities)
            if lone:
                rank_zero_warn(
                    f'{type(self).__name__}: only one sample of a training batch holds {lone}; '
                    f'batch normalisation cannot train on one sample, so that sample uses its '
                    f'other modalities in such steps (larger batches avoid it)'
                )
        inputs = self.modality_inputs(
            batch, require_all=True, defer_nan_check=True, batch_idx=batch_idx
        )
        presence = inputs.presence
        check_presence(batch, presence, self.modalities)
        batch_size = presence.size
        target = self.batch_checks.check_target(
            batch,
            batch_size,
            self.task_type,
            self.num_classes,
            self.num_labels,
            f'{type(self).__name__}, {stage}',
            batch_idx,
        )
        with explain_batch_norm(batch_size):
            features = self.encode(inputs)
            terms, outputs = self.losses(inputs, features, target)
        if stage == 'train' and self._step_loss_seen(batch_idx):
            self.log('train_loss', terms['loss'], batch_size=batch_size, prog_bar=True)
        self.epoch.add_losses(stage, terms, batch_size)
        scores = self.epoch.stage_scores(stage)
        if scores.scenarios:
            predictions, available = {}, {}
            with torch.no_grad():
                for s in self.scored_scenarios(stage):
                    raw = outputs.get(s)
                    name = scenario_name(s)
                    predictions[name] = self.prediction(
                        features, presence, s, None if raw is None else raw.detach()
                    )
                    if (mask := presence.mask(s)) is not None:
                        available[name] = mask
            scores.update(predictions, target, available)
        return terms['loss']

    def _step_loss_seen(self, batch_idx: int) -> bool:
        """Tell whether a training step logs its loss.

        Lightning's ``log`` costs about a millisecond per call on the CPU. Without a logger and a
        progress bar (``colearn benchmark``) nobody sees the per-step value, so only the last step
        of an epoch, or of a fit that ``max_steps`` ends, logs it: the value of
        ``trainer.callback_metrics['train_loss']`` at the end of each epoch and of the fit is the same
        as with a log at every step.

        Args:
            batch_idx: Index of the training batch in its epoch.

        Returns:
            True with a logger or a progress bar, on the last batch of an epoch or of the fit, or
            outside a trainer.
        """
        if self._trainer is None:
            return True
        trainer = self.trainer
        if trainer.loggers or trainer.progress_bar_callback is not None:
            return True
        batches = trainer.num_training_batches
        last_of_epoch = not math.isfinite(batches) or batch_idx + 1 >= batches
        last_of_fit = 0 < trainer.max_steps <= trainer.global_step + 1
        return last_of_epoch or last_of_fit

    @override
    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the training loss and accumulate the training scores."""
        return self._shared_step(batch, 'train', batch_idx)

    @override
    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the validation loss and accumulate the scores of every scenario."""
        self._shared_step(batch, 'val', batch_idx)

    @override
    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Compute the test loss and accumulate the scores of every scenario."""
        self._shared_step(batch, 'test', batch_idx)

    def _log_epoch(self, stage: str) -> None:
        """Log the epoch means of the loss terms and the scenario scores of a stage, then reset.

        The steps only accumulate on the device (no synchronisation, one Lightning ``log`` call per
        training step for the progress bar); everything is computed and logged here, once per epoch,
        and the scores are kept in :attr:`scenario_results` (one transfer to the host). Lightning's
        sanity check of the validation loop logs nothing.

        Args:
            stage: 'train', 'val' or 'test'.
        """
        # the sanity check runs the loop on an untrained model: nothing to report
        sanity = self._trainer is not None and self.trainer.sanity_checking
        means, scores = self.epoch.compute(stage, report=not sanity)
        if means:
            # The per-step training loss is logged by the step; the epoch means of all terms here.
            if stage == 'train':
                means['train_loss_epoch'] = means.pop('train_loss')
            self.log_dict(means, sync_dist=True)
        if scores:
            # the scores are already those of every process; sync_dist averages equal values
            self.log_dict(scores, sync_dist=True)
            self.scenario_results[stage] = scores_by_scenario(to_floats(scores), stage)

    def on_train_epoch_end(self) -> None:
        """Log the training loss terms and scores; raise for deferred failed checks of the epoch."""
        self._log_epoch('train')
        self.batch_checks.raise_deferred()

    def on_validation_epoch_end(self) -> None:
        """Log the validation loss terms and scores; raise for deferred failed checks."""
        self._log_epoch('val')
        self.batch_checks.raise_deferred()

    def on_test_epoch_end(self) -> None:
        """Log the test loss terms and scores; raise for deferred failed checks."""
        self._log_epoch('test')
        self.batch_checks.raise_deferred()

    def on_predict_epoch_end(self) -> None:
        """Raise if inputs held NaN or ``inf`` during prediction (deferred on accelerators)."""
        self.batch_checks.raise_deferred()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Build the optimiser and learning-rate schedule chosen by name.

        Returns:
            The optimiser and its scheduler config (see
            :func:`~torchgeo_colearn.trainers.optimization.optimization`).
        """
        return optimization(
            [p for p in self.parameters() if p.requires_grad],
            self.hparams.get('optimizer', 'adam'),
            self.hparams.get('scheduler', 'plateau'),
            lr=self.hparams['lr'],
            weight_decay=self.hparams.get('weight_decay', 0.0),
            patience=self.hparams['patience'],
            max_epochs=self.trainer.max_epochs if self._trainer is not None else None,
            monitor=self.monitor,
        )
