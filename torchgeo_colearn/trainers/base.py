# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Base class of the tasks that predict from any subset of modalities, and their interface."""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, cast, runtime_checkable

import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau
from torchgeo.trainers import BaseTask

from ..batch import check_keys, image_key, modalities_in, valid_key
from ..deploy.inputs import (
    TrainingInputs,
    load_training_inputs,
    predict_raw,
    record_training_inputs,
    save_training_inputs,
)
from ..losses import TaskLoss
from ..metrics import ScenarioScores, TaskType
from ..models import Encoder
from ..scenarios import Scenario, default_scenarios, metric_key, scenario_name

#: A modality's input: the batch tensor and its optional (B, T) validity mask.
ModalityInput: TypeAlias = tuple[Tensor, Tensor | None]

#: Every available modality's input, as returned by :meth:`MultiModalTask.modality_inputs`.
Inputs: TypeAlias = Mapping[str, ModalityInput]

#: Every available modality's encoding, as returned by :meth:`MultiModalTask.encode`.
Features: TypeAlias = Mapping[str, Any]

#: What :meth:`MultiModalTask.losses` returns: the loss terms (``'loss'`` is the total that is
#: minimised) and the raw outputs of the scenarios the objective already computed.
LossOutput: TypeAlias = tuple[dict[str, Tensor], dict[Scenario, Tensor]]

#: Optimisers selectable by name.
OptimizerName: TypeAlias = Literal['adam', 'adamw', 'sgd']

#: Learning-rate schedules selectable by name.
SchedulerName: TypeAlias = Literal['plateau', 'cosine', 'none']

#: Training stages, each with its own loss sums and scenario scores.
STAGES = ('train', 'val', 'test')


@runtime_checkable
class ScenarioPredictor(Protocol):
    """What a task exposes to be evaluated per inference scenario.

    :class:`MultiModalTask` implements it; the robustness and representation callbacks and the
    deployment tools need nothing else.
    """

    @property
    def modalities(self) -> tuple[str, ...]:
        """The training modalities, in order."""
        ...

    @property
    def task_type(self) -> TaskType:
        """'binary', 'multiclass', 'multilabel' or 'regression'."""
        ...

    @property
    def num_classes(self) -> int | None:
        """Number of classes (multiclass), else None."""
        ...

    @property
    def num_labels(self) -> int | None:
        """Number of labels (multilabel), else None."""
        ...

    def scenarios(self) -> list[Scenario]:
        """Return the scenarios scored by default (every single modality, plus subsets if fusing)."""
        ...

    def predict_scenarios(
        self, batch: Mapping[str, Any], scenarios: Sequence[Scenario]
    ) -> dict[Scenario, Tensor]:
        """Predict several scenarios of a normalised batch, encoding each modality once.

        Returns probabilities (B,) (binary), (B, K) (multiclass), (B, L) (multilabel) or values (B,)
        in target units (regression).
        """
        ...

    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Return modality mapped to part name mapped to (B, d) embeddings, for visualisation."""
        ...


class MultiModalNetwork(Protocol):
    """The network of a method, as :class:`MultiModalTask` uses it by default."""

    def encoder(self, modality: str) -> Encoder:
        """Return the encoder whose input shape is the modality's."""
        ...

    def encode(self, inputs: Inputs) -> dict[str, Any]:
        """Encode each modality of *inputs* once."""
        ...


def check_predictor(module: object) -> ScenarioPredictor:
    """Check that a module implements :class:`ScenarioPredictor`.

    Args:
        module: Usually the LightningModule a callback is attached to.

    Returns:
        The module, typed as a predictor.

    Raises:
        TypeError: Naming the members it lacks.
    """
    members = (
        'modalities',
        'task_type',
        'num_classes',
        'num_labels',
        'scenarios',
        'predict_scenarios',
        'representations',
    )
    if missing := [name for name in members if not hasattr(module, name)]:
        msg = (
            f'{type(module).__name__} does not implement the scenario interface '
            f'(ScenarioPredictor); missing: {missing}'
        )
        raise TypeError(msg)
    return cast(ScenarioPredictor, module)


class MultiModalTask(BaseTask, ABC):
    """Base of the multi-modal tasks: dict batch in, one prediction per inference scenario out.

    It implements what every method shares: the constructor arguments below, input validation (keys,
    shapes, NaN), the supervised loss of the task type (class weights, target standardisation),
    optimisers, and the evaluation of every inference scenario. Per validation or test batch each
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

    #: Whether a scenario may hold several modalities (the method fuses them).
    supports_fusion: ClassVar[bool] = False

    #: Minimum number of training modalities.
    min_modalities: ClassVar[int] = 1

    #: Checkpoint key prefixes of earlier releases mapped to today's (networks moved into ``model``).
    legacy_prefixes: ClassVar[dict[str, str]] = {}

    #: The supervised loss, built by :meth:`configure_losses`.
    criterion: TaskLoss

    #: The method's network, built by :meth:`configure_models`.
    model: MultiModalNetwork

    #: Scenario scores per stage (keys ``<stage>_scores``), built by :meth:`configure_metrics`.
    scores: nn.ModuleDict

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
        self._deferred_nan: dict[str, Tensor] = {}
        self._loss_sums: dict[str, dict[str, Tensor]] = {}
        self._loss_counts: dict[str, int] = {}
        #: The last computed scenario scores per stage: scenario name mapped to metric mapped to value.
        self.scenario_results: dict[str, dict[str, dict[str, float]]] = {}
        if len(encoders) < self.min_modalities:
            msg = (
                f'{type(self).__name__} needs at least {self.min_modalities} modalities in '
                f'`encoders`, got {list(encoders)}'
            )
            raise ValueError(msg)
        for modality in encoders:
            if not modality.isidentifier():
                msg = f'modality names must be identifiers (letters, digits, _), got {modality!r}'
                raise ValueError(msg)
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
        """Build the scenario scores of each stage (training scores :meth:`training_scenarios`)."""
        self.scores = nn.ModuleDict(
            {
                f'{stage}_scores': ScenarioScores(
                    [scenario_name(s) for s in self.scored_scenarios(stage)],
                    self.task_type,
                    self.num_classes,
                    self.num_labels,
                )
                for stage in STAGES
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rename the state-dict keys of checkpoints written by earlier releases.

        Args:
            checkpoint: The loaded checkpoint; its ``state_dict`` is updated in place.
        """
        state = checkpoint.get('state_dict', {})
        for key in list(state):
            for old, new in self.legacy_prefixes.items():
                if key.startswith(old):
                    state[new + key.removeprefix(old)] = state.pop(key)
                    break
        load_training_inputs(self, checkpoint)

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

    def modality_inputs(
        self,
        batch: Mapping[str, Any],
        require_all: bool = False,
        defer_nan_check: bool = False,
    ) -> dict[str, ModalityInput]:
        """Validate a batch and extract each modality's input.

        Args:
            batch: Batch dict with ``image_<modality>`` keys.
            require_all: Every training modality must be present (training objectives).
            defer_nan_check: On accelerators, accumulate the NaN check on the device and raise at the
                end of the epoch instead of synchronising every step (CPU tensors are always checked
                at once).

        Returns:
            Modality mapped to (input, validity mask or None), in training order.

        Raises:
            KeyError: On an unknown key, or a missing modality when *require_all*.
            TypeError: If a modality is not a tensor.
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
            encoder = self.encoder_of(modality)
            if not encoder.accepts(tuple(x.shape[1:])):
                shown = ', '.join(
                    '*' if d is None else str(d) for d in encoder.input_shape
                )
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
            features: Output of :meth:`encode`, holding at least the scenario's modalities.
            scenario: The available modalities.

        Returns:
            Raw outputs: logits (B,) / (B, K) / (B, L), or standardised values (B,).
        """

    @abstractmethod
    def losses(self, inputs: Inputs, features: Features, target: Tensor) -> LossOutput:
        """Compute the objective of a batch (training, and the validation loss).

        Args:
            inputs: Every training modality's input (for terms that need more than the features,
                e.g. a distillation teacher).
            features: Output of :meth:`encode` for every training modality.
            target: The batch targets.

        Returns:
            The loss terms (``'loss'`` is the total that is minimised; the others are logged) and the raw
            outputs of the scenarios the objective computed (scenario mapped to (B, ...) raw outputs),
            reused for the scores instead of being predicted again.
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

    def _check_scenarios(
        self, scenarios: Sequence[Scenario], available: Sequence[str]
    ) -> None:
        """Check that scenarios can be predicted from the available modalities.

        Args:
            scenarios: The scenarios.
            available: The modalities of the batch.

        Raises:
            ValueError: If a scenario is empty, fuses while the method cannot, or needs a modality the
                batch lacks.
        """
        for scenario in scenarios:
            if not scenario or (len(scenario) > 1 and not self.supports_fusion):
                msg = f'{type(self).__name__} cannot predict scenario {scenario}'
                raise ValueError(msg)
        needed = {m for scenario in scenarios for m in scenario}
        if missing := sorted(needed - set(available)):
            msg = f'scenarios need {[image_key(m) for m in missing]}, absent from the batch'
            raise ValueError(msg)

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
        inputs = self.modality_inputs(batch, defer_nan_check=True)
        self._check_scenarios(scenarios, list(inputs))
        needed = {m for scenario in scenarios for m in scenario}
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
    # Deployment: the logic lives in torchgeo_colearn.deploy (docs/deploy.md)
    # ----------------------------------------------------------------------------------------------

    #: How raw values became the inputs (statistics, missing values, band descriptions), recorded
    #: from the datamodule when fitting starts and saved in checkpoints under ``'deployment'``.
    training_inputs: TrainingInputs | None = None

    def setup(self, stage: str) -> None:
        """Record the datamodule's training inputs when fitting (after the datamodule's setup).

        Args:
            stage: Either 'fit', 'validate', 'test' or 'predict'.
        """
        if stage == 'fit':
            record_training_inputs(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save :attr:`training_inputs` in the checkpoint.

        Args:
            checkpoint: The checkpoint being saved.
        """
        save_training_inputs(self, checkpoint)

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

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        """Encode once, compute the loss terms, and score the stage's scenarios.

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
        features = self.encode(inputs)
        terms, outputs = self.losses(inputs, features, target)
        batch_size = target.shape[0]
        if stage == 'train':
            self.log('train_loss', terms['loss'], batch_size=batch_size, prog_bar=True)
        sums = self._loss_sums.setdefault(stage, {})
        for name, value in terms.items():
            weighted = value.detach() * batch_size
            sums[name] = sums[name] + weighted if name in sums else weighted
        self._loss_counts[stage] = self._loss_counts.get(stage, 0) + batch_size
        scores = self._stage_scores(stage)
        if scores.scenarios:
            with torch.no_grad():
                predictions = {
                    scenario_name(s): self.postprocess(
                        (
                            outputs[s]
                            if s in outputs
                            else self.predict_from(features, s)
                        ).detach()
                    )
                    for s in self.scored_scenarios(stage)
                }
            scores.update(predictions, target)
        return terms['loss']

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the training loss and accumulate the training scores.

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
        """Compute the validation loss and accumulate the scores of every scenario.

        Args:
            batch: The output of your DataLoader.
            batch_idx: Integer displaying index of this batch.
            dataloader_idx: Index of the current dataloader.
        """
        self._shared_step(batch, 'val')

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Compute the test loss and accumulate the scores of every scenario.

        Args:
            batch: The output of your DataLoader.
            batch_idx: Integer displaying index of this batch.
            dataloader_idx: Index of the current dataloader.
        """
        self._shared_step(batch, 'test')

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        """Predict every scenario whose modalities the batch holds.

        Args:
            batch: The output of your DataLoader.
            batch_idx: Integer displaying index of this batch.
            dataloader_idx: Index of the current dataloader.

        Returns:
            Scenario name mapped to its prediction (see :meth:`postprocess`); a single modality's
            scenario is named after the modality, e.g. ``{'s1': ..., 's2': ..., 's1+s2': ...}``.
        """
        inputs = self.modality_inputs(batch, defer_nan_check=True)
        features = self.encode(inputs)
        return {
            scenario_name(s): self.postprocess(self.predict_from(features, s))
            for s in self.scenarios()
            if set(s) <= set(inputs)
        }

    def _stage_scores(self, stage: str) -> ScenarioScores:
        """Return the scenario scores of a stage.

        Args:
            stage: 'train', 'val' or 'test'.

        Returns:
            The accumulator.
        """
        scores = self.scores[f'{stage}_scores']
        assert isinstance(scores, ScenarioScores)
        return scores

    def _log_epoch(self, stage: str) -> None:
        """Log the epoch means of the loss terms and the scenario scores of a stage, then reset.

        The steps only accumulate on the device (no synchronisation, one Lightning ``log`` call per
        training step for the progress bar); everything is computed and logged here, once per epoch,
        and the scores are kept in :attr:`scenario_results` (one transfer to the host). Lightning's
        sanity check of the validation loop logs nothing.

        Args:
            stage: 'train', 'val' or 'test'.
        """
        sums = self._loss_sums.pop(stage, {})
        count = self._loss_counts.pop(stage, 0)
        if self._trainer is not None and self.trainer.sanity_checking:
            # a check that the loop runs, on an untrained model: nothing to report
            count = 0
        if count:
            # The per-step training loss is logged by the step; the epoch means of all terms here.
            means = {f'{stage}_{name}': total / count for name, total in sums.items()}
            if stage == 'train':
                means['train_loss_epoch'] = means.pop('train_loss')
            self.log_dict(means, sync_dist=True)
        scores = self._stage_scores(stage)
        if count and scores.scenarios and scores.update_count:
            computed = scores.compute()
            self.log_dict(
                {
                    metric_key(stage, name, metric): value
                    for name, metrics in computed.items()
                    for metric, value in metrics.items()
                }
            )
            self.scenario_results[stage] = _to_floats(computed)
        scores.reset()

    def on_train_epoch_end(self) -> None:
        """Log the training loss terms and scores; raise if inputs held NaN during the epoch."""
        self._log_epoch('train')
        self._raise_deferred_nan()

    def on_validation_epoch_end(self) -> None:
        """Log the validation loss terms and scores; raise if inputs held NaN during the epoch."""
        self._log_epoch('val')
        self._raise_deferred_nan()

    def on_test_epoch_end(self) -> None:
        """Log the test loss terms and scores; raise if inputs held NaN during the epoch."""
        self._log_epoch('test')
        self._raise_deferred_nan()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Build the optimiser and learning-rate schedule chosen by name.

        Returns:
            The optimiser and its scheduler config (monitoring ``val_loss`` for 'plateau').

        Raises:
            ValueError: On an unknown optimiser or schedule.
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


def _to_floats(
    scores: Mapping[str, Mapping[str, Tensor]],
) -> dict[str, dict[str, float]]:
    """Read scores back to the host with a single transfer.

    Args:
        scores: Scenario mapped to metric mapped to a scalar tensor.

    Returns:
        The same nesting with Python floats.
    """
    keys = [(s, m) for s, metrics in scores.items() for m in metrics]
    if not keys:
        return {}
    values = torch.stack([scores[s][m].float().reshape(()) for s, m in keys]).tolist()
    floats: dict[str, dict[str, float]] = {s: {} for s in scores}
    for (s, m), value in zip(keys, values, strict=True):
        floats[s][m] = value
    return floats
