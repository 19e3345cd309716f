# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Input-level and feature-level fusion baselines trained with modality (sensor) dropout."""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, cast

import torch
from torch import Tensor, nn

from ..metrics import TaskType
from ..models import Encoder, build_encoder
from ..models.head import Head
from .base import ModalityInput, MultiModalTask, OptimizerName, Scenario, SchedulerName

#: How feature-level fusion combines the features of the available modalities.
FusionName: TypeAlias = Literal['mean', 'gated']

#: How input-level fusion lays the modalities side by side.
InputLayout: TypeAlias = Literal['series', 'image']


def modality_dropout(
    batch_size: int, num_modalities: int, probability: float, device: torch.device
) -> Tensor:
    """Draw which modalities each sample keeps under modality (sensor) dropout.

    Each modality of each sample is dropped with *probability*; a sample that would lose every
    modality keeps one drawn uniformly, so that every sample still has an input.

    Args:
        batch_size: Number of samples B.
        num_modalities: Number of modalities M.
        probability: Drop probability of each modality, in [0, 1].
        device: Device of the mask.

    Returns:
        (B, M) bool mask, True where the modality is kept.
    """
    keep = torch.rand(batch_size, num_modalities, device=device) >= probability
    rescue = torch.randint(num_modalities, (batch_size,), device=device)
    forced = nn.functional.one_hot(rescue, num_modalities).bool()
    return torch.where(keep.any(1, keepdim=True), keep, forced)


def evaluation_scenarios(modalities: Sequence[str]) -> list[Scenario]:
    """Return the scenarios scored by the evaluation objective: each modality alone, then all.

    Args:
        modalities: The training modalities.

    Returns:
        The M single-modality scenarios and the full scenario.
    """
    return [(m,) for m in modalities] + [tuple(modalities)]


def dropout_objective(
    task: MultiModalTask,
    features: Mapping[str, Any],
    target: Tensor,
    predict_kept: Callable[[Mapping[str, Any], Mapping[str, Tensor]], Tensor],
    extra: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Objective shared by the methods that fuse any subset and train with modality dropout.

    In training, the task loss of the prediction from the modalities each sample keeps under
    :func:`modality_dropout` (probability ``task.hparams['modality_dropout']``); the single-modality
    outputs for the training metrics are computed without gradient and in eval mode, so that they
    leave batch-norm statistics and random streams untouched. In evaluation, the mean task loss over
    each single-modality scenario and the full scenario, since validation selects the model for the
    all-but-one missing-modality setting (every single modality counts as much as the full set).

    Args:
        task: The task; its :meth:`~MultiModalTask.predict_from` predicts the evaluation scenarios.
        features: Output of the task's :meth:`~MultiModalTask.encode` for every training modality.
        target: The batch targets.
        predict_kept: Predicts from *features* and modality mapped to the (B,) bool mask of the samples
            that keep it.
        extra: Further loss terms, already weighted, added to the total and logged.

    Returns:
        The loss terms (``task_loss``, ``<scenario>_loss`` per scenario in evaluation, the *extra* terms
        and their total ``loss``) and each modality's single-modality raw outputs.
    """
    terms: dict[str, Tensor]
    if task.training:
        mask = modality_dropout(
            target.shape[0],
            len(task.modalities),
            task.hparams['modality_dropout'],
            target.device,
        )
        keep = {m: mask[:, i] for i, m in enumerate(task.modalities)}
        terms = {'task_loss': task.criterion(predict_kept(features, keep), target)}
        task.eval()
        try:
            with torch.no_grad():
                singles = {
                    m: task.predict_from(features, (m,)) for m in task.modalities
                }
        finally:
            task.train()
    else:
        outputs = {
            s: task.predict_from(features, s)
            for s in evaluation_scenarios(task.modalities)
        }
        per_scenario = {
            f'{"+".join(s)}_loss': task.criterion(out, target)
            for s, out in outputs.items()
        }
        terms = {
            'task_loss': torch.stack(list(per_scenario.values())).mean(),
            **per_scenario,
        }
        singles = {s[0]: out for s, out in outputs.items() if len(s) == 1}
    extra = dict(extra or {})
    total = terms['task_loss'] + sum(
        extra.values(), torch.zeros((), device=target.device)
    )
    return {**terms, **extra, 'loss': total}, singles


def check_modality_dropout(probability: float) -> None:
    """Reject a modality dropout probability outside [0, 1).

    Args:
        probability: The probability.

    Raises:
        ValueError: If it is out of range.
    """
    if not 0 <= probability < 1:
        msg = f'modality_dropout must lie in [0, 1), got {probability}'
        raise ValueError(msg)


class StepStem(Encoder):
    """Reshape one modality into a layout that can be concatenated with the others (no parameters).

    * ``'series'`` layout: a time series (T, C) or (T, C, H, W) becomes (T, F) with F the per-step
      feature count; a static vector (C,) is repeated over the T steps of the fused series.
    * ``'image'`` layout: an image (C, H, W) is kept as is and concatenated along the channels.
    """

    def __init__(
        self, input_shape: tuple[int | None, ...], layout: InputLayout, steps: int
    ) -> None:
        """Initialize a new StepStem instance.

        Args:
            input_shape: Shape of one sample of the modality, as its encoder defines it.
            layout: 'series' or 'image'.
            steps: Number of time steps T of the fused series (ignored for images).
        """
        super().__init__()
        self.input_shape = input_shape
        self.layout = layout
        self.steps = steps
        self.out_dim = (
            input_shape[0] or 0
            if layout == 'image' or len(input_shape) == 1
            else math.prod(d or 0 for d in input_shape[1:])
        )

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Reshape a batch.

        Args:
            x: (B, *input_shape) batch.
            valid: Unused; the fused validity mask is built by :class:`InputFusionTask`.

        Returns:
            (B, T, F) for the series layout, (B, C, H, W) for the image layout.
        """
        if self.layout == 'image':
            return x
        if x.ndim == 2:
            return x.unsqueeze(1).expand(-1, self.steps, -1)
        return x.flatten(2)


class InputFusionTask(MultiModalTask):
    """Input-level fusion (early fusion) with modality dropout: one encoder on all inputs stacked.

    Making inputs of different shapes fusable (:class:`StepStem`): if every modality is a time series
    with the same fixed number of steps T, or a static vector, each is flattened per step to (T, F_m)
    (vectors repeated over the steps) and the steps are concatenated along the features, giving
    (T, sum F_m); if every modality is an image (C_m, H, W) of the same size, the images are concatenated
    along the channels. Other combinations (e.g. series with different lengths, images with series) are
    rejected: use :class:`FeatureFusionTask`. The fused encoder is ``fusion_encoder`` with its
    ``in_channels`` set to the fused width (default: the first modality's encoder config).

    Training drops each modality of each sample with probability ``modality_dropout`` (at least one
    is kept); a missing modality is zero-filled, which after per-channel z-scoring is the training mean.
    Inference with any subset of modalities zero-fills the others. Validation minimises the mean task
    loss over each single-modality scenario and the full scenario.
    """

    supports_fusion = True
    min_modalities = 2

    def __init__(
        self,
        encoders: dict[str, dict[str, Any]],
        task: TaskType = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        embed_dim: int = 64,
        fusion_encoder: dict[str, Any] | None = None,
        modality_dropout: float = 0.5,
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
        """Initialize a new InputFusionTask instance.

        Args:
            encoders: Modality name mapped to its encoder config (see
                :class:`~torchgeo_colearn.CoLearnTask`); only the input shape each defines is used.
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            embed_dim: Half the fused encoder output size (it outputs 2 x embed_dim, as the
                single-modality models).
            fusion_encoder: Config of the encoder of the fused input, without ``in_channels`` (set to
                the fused width); None uses the first modality's config.
            modality_dropout: Probability of dropping each modality of each training sample.
            head_hidden_dim: Hidden width of the head, or None for a linear head.
            class_weights: Class weights: a list, 'balanced' (from the datamodule), or None.
            target_mean: Regression target mean; None takes it from the datamodule.
            target_std: Regression target standard deviation; None takes it from the datamodule.
            lr: Learning rate.
            patience: Patience of the 'plateau' learning-rate schedule, in epochs.
            optimizer: 'adam', 'adamw' or 'sgd'.
            scheduler: 'plateau' (on val_loss), 'cosine' or 'none'.
            weight_decay: Weight decay of the optimiser.

        Raises:
            ValueError: If the modalities cannot be fused at input level or an option is invalid.
        """
        super().__init__()

    def configure_models(self) -> None:
        """Build the per-modality stems, the fused encoder and the head.

        Raises:
            ValueError: If the modalities' shapes cannot be concatenated.
        """
        check_modality_dropout(self.hparams['modality_dropout'])
        configs: dict[str, dict[str, Any]] = self.hparams['encoders']
        shapes = {m: build_encoder(c, 1).input_shape for m, c in configs.items()}
        layout, steps = self._layout(shapes)
        self.layout: InputLayout = layout
        self.stems = nn.ModuleDict(
            {m: StepStem(shape, layout, steps) for m, shape in shapes.items()}
        )
        width = sum(cast(StepStem, stem).out_dim for stem in self.stems.values())
        config = dict(self.hparams['fusion_encoder'] or next(iter(configs.values())))
        config['in_channels'] = width
        self.encoder = build_encoder(config, 2 * self.hparams['embed_dim'])
        self.head = Head(
            2 * self.hparams['embed_dim'],
            self.output_dim,
            self.hparams['head_hidden_dim'],
        )

    @staticmethod
    def _layout(
        shapes: Mapping[str, tuple[int | None, ...]],
    ) -> tuple[InputLayout, int]:
        """Choose how the modalities are concatenated.

        Args:
            shapes: Modality mapped to the shape of one sample.

        Returns:
            The layout and the number of time steps of the fused series (0 for images).

        Raises:
            ValueError: If the shapes cannot be fused at input level.
        """
        shown = {
            m: tuple('*' if d is None else d for d in s) for m, s in shapes.items()
        }
        if all(len(s) == 3 for s in shapes.values()):
            sizes = {s[1:] for s in shapes.values()}
            if len(sizes) == 1 and None not in next(iter(sizes)):
                return 'image', 0
            msg = f'input fusion needs images of one fixed size (set image_size), got {shown}'
            raise ValueError(msg)
        lengths = {s[0] for s in shapes.values() if len(s) in (2, 4)}
        (length,) = lengths if len(lengths) == 1 else (None,)
        if length is not None and all(len(s) in (1, 2, 4) for s in shapes.values()):
            return 'series', length
        msg = (
            'input fusion needs time series with one fixed number of steps (plus static vectors), '
            f'or images of one size; got {shown}; use FeatureFusionTask instead'
        )
        raise ValueError(msg)

    def encoder_of(self, modality: str) -> Encoder:
        """Return the stem of a modality, whose input shape is the modality's.

        Args:
            modality: A training modality.

        Returns:
            The stem.
        """
        return cast(Encoder, self.stems[modality])

    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, ModalityInput]:
        """Reshape each available modality to the fused layout (the encoder runs per scenario).

        Args:
            inputs: Modality mapped to (input, validity mask).

        Returns:
            Modality mapped to (reshaped input, validity mask).
        """
        return {m: (self.stems[m](x), valid) for m, (x, valid) in inputs.items()}

    def _fused_input(
        self, features: Mapping[str, ModalityInput], keep: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor | None]:
        """Concatenate the modalities, zero-filling the missing ones.

        Args:
            features: Modality mapped to (reshaped input, validity mask), for the modalities present.
            keep: Modality mapped to a (B,) bool mask of the samples that keep it (absent = dropped).

        Returns:
            The fused (B, T, F) or (B, C, H, W) input and its (B, T) validity mask, or None.
        """
        reference, _ = next(iter(features.values()))
        channel_dim = 1 if self.layout == 'image' else -1
        parts, masks = [], []
        for modality, stem in self.stems.items():
            if modality in features and modality in keep:
                x, valid = features[modality]
                weight = keep[modality].view(-1, *[1] * (x.ndim - 1))
                parts.append(x * weight.to(x.dtype))
                if valid is not None:
                    masks.append(valid & keep[modality].unsqueeze(1))
            else:
                shape = list(reference.shape)
                shape[channel_dim] = cast(StepStem, stem).out_dim
                parts.append(reference.new_zeros(shape))
        fused = torch.cat(parts, dim=channel_dim)
        valid = torch.stack(masks).any(0) if masks else None
        return fused, valid

    def predict_from(self, features: Mapping[str, Any], scenario: Scenario) -> Tensor:
        """Predict a scenario from its modalities, the others zero-filled.

        Args:
            features: Output of :meth:`encode`.
            scenario: The available modalities.

        Returns:
            Raw outputs.
        """
        reference, _ = features[scenario[0]]
        keep = {
            m: torch.ones(reference.shape[0], dtype=torch.bool, device=reference.device)
            for m in scenario
        }
        return self._predict(features, keep)

    def _predict(
        self, features: Mapping[str, ModalityInput], keep: Mapping[str, Tensor]
    ) -> Tensor:
        """Encode the fused input and apply the head.

        Args:
            features: Output of :meth:`encode`.
            keep: Modality mapped to the (B,) mask of samples that keep it.

        Returns:
            Raw outputs.
        """
        x, valid = self._fused_input(features, keep)
        out: Tensor = self.head(self.encoder(x, valid))
        return out

    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Return the fused encoder's features of each modality alone.

        Args:
            batch: Normalised batch.

        Returns:
            Modality mapped to {'features': (B, 2 x embed_dim)}.
        """
        features = self.encode(self.modality_inputs(batch))
        reps = {}
        for modality, (x, _) in features.items():
            keep = {modality: torch.ones(x.shape[0], dtype=torch.bool, device=x.device)}
            fused, valid = self._fused_input(features, keep)
            reps[modality] = {'features': self.encoder(fused, valid)}
        return reps

    def training_losses(
        self, inputs: Mapping[str, ModalityInput], target: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Task loss on the fused input under modality dropout (training) or per scenario (evaluation).

        Args:
            inputs: Every training modality's input.
            target: The batch targets.

        Returns:
            The loss terms and, in evaluation, each modality's single-modality outputs (none in
            training, to spare M extra forward passes).
        """
        return dropout_objective(self, self.encode(inputs), target, self._predict)


class FeatureFusionModel(nn.Module):
    """Per-modality encoders, a fusion of the available features, and one head.

    Fusion of the features f_m (B, D) of the available modalities:

    * ``'mean'``: their mean;
    * ``'gated'``: a softmax-weighted sum, with per-sample weights from a learned linear score of each
      f_m (missing modalities get no weight).
    """

    def __init__(
        self,
        encoders: Mapping[str, Mapping[str, Any]],
        width: int,
        output_dim: int,
        fusion: FusionName = 'mean',
        head_hidden_dim: int | None = None,
    ) -> None:
        """Initialize a new FeatureFusionModel instance.

        Args:
            encoders: Modality mapped to its encoder config.
            width: Feature size D of every encoder.
            output_dim: Size of the raw task output.
            fusion: 'mean' or 'gated'.
            head_hidden_dim: Hidden width of the head, or None for a linear head.

        Raises:
            ValueError: If *fusion* is unknown.
        """
        super().__init__()
        if fusion not in ('mean', 'gated'):
            msg = f"fusion must be 'mean' or 'gated', got {fusion!r}"
            raise ValueError(msg)
        self.fusion = fusion
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(
            {m: build_encoder(config, width) for m, config in encoders.items()}
        )
        self.gates = nn.ModuleDict(
            {m: nn.Linear(width, 1) for m in encoders} if fusion == 'gated' else {}
        )
        self.head = Head(width, output_dim, head_hidden_dim)

    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, Tensor]:
        """Encode each available modality.

        Args:
            inputs: Modality mapped to (input, validity mask).

        Returns:
            Modality mapped to (B, D) features.
        """
        return {m: self.encoders[m](x, valid) for m, (x, valid) in inputs.items()}

    def fuse(
        self, features: Mapping[str, Tensor], keep: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Fuse the features of the available modalities.

        Args:
            features: Modality mapped to (B, D) features; only these modalities are fused.
            keep: Optional modality mapped to a (B,) bool mask of the samples that keep it (modality
                dropout); every sample must keep at least one modality.

        Returns:
            (B, D) fused features.
        """
        names = list(features)
        stacked = torch.stack([features[m] for m in names])
        if keep is None:
            mask = stacked.new_ones(stacked.shape[:2], dtype=torch.bool)
        else:
            mask = torch.stack([keep[m] for m in names])
        match self.fusion:
            case 'mean':
                weights = mask.to(stacked.dtype)
                weights = weights / weights.sum(0, keepdim=True)
            case 'gated':
                scores = torch.stack(
                    [self.gates[m](features[m]).squeeze(-1) for m in names]
                )
                weights = scores.masked_fill(~mask, float('-inf')).softmax(0)
        return (weights.unsqueeze(-1) * stacked).sum(0)

    def predict(
        self, features: Mapping[str, Tensor], keep: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Fuse and apply the head.

        Args:
            features: Modality mapped to (B, D) features.
            keep: Optional per-modality (B,) masks, as in :meth:`fuse`.

        Returns:
            Raw outputs.
        """
        out: Tensor = self.head(self.fuse(features, keep))
        return out


class FeatureFusionTask(MultiModalTask):
    """Feature-level fusion with modality dropout: per-modality encoders, fused features, one head.

    Each modality has its own encoder (output 2 x ``embed_dim``, as the single-modality models); the
    features of the available modalities are fused by their mean or a gated (softmax-weighted) sum
    (:class:`FeatureFusionModel`) and one head predicts. Training drops each modality of each sample
    with probability ``modality_dropout`` (at least one is kept; dropped modalities are left out of the
    fusion), so the head learns to predict from any subset. Validation minimises the mean task loss
    over each single-modality scenario and the full scenario.
    """

    supports_fusion = True
    min_modalities = 2

    #: The feature-fusion model (built by :meth:`configure_models`).
    model: FeatureFusionModel

    def __init__(
        self,
        encoders: dict[str, dict[str, Any]],
        task: TaskType = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        embed_dim: int = 64,
        fusion: FusionName = 'mean',
        modality_dropout: float = 0.5,
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
        """Initialize a new FeatureFusionTask instance.

        Args:
            encoders: Modality name mapped to its encoder config (see
                :class:`~torchgeo_colearn.CoLearnTask`).
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            embed_dim: Half the encoder output size (each encoder outputs 2 x embed_dim).
            fusion: 'mean' or 'gated'.
            modality_dropout: Probability of dropping each modality of each training sample.
            head_hidden_dim: Hidden width of the head, or None for a linear head.
            class_weights: Class weights: a list, 'balanced' (from the datamodule), or None.
            target_mean: Regression target mean; None takes it from the datamodule.
            target_std: Regression target standard deviation; None takes it from the datamodule.
            lr: Learning rate.
            patience: Patience of the 'plateau' learning-rate schedule, in epochs.
            optimizer: 'adam', 'adamw' or 'sgd'.
            scheduler: 'plateau' (on val_loss), 'cosine' or 'none'.
            weight_decay: Weight decay of the optimiser.

        Raises:
            ValueError: On an invalid option.
        """
        super().__init__()

    def configure_models(self) -> None:
        """Build the feature-fusion model."""
        check_modality_dropout(self.hparams['modality_dropout'])
        self.model = FeatureFusionModel(
            self.hparams['encoders'],
            2 * self.hparams['embed_dim'],
            self.output_dim,
            self.hparams['fusion'],
            self.hparams['head_hidden_dim'],
        )

    def encoder_of(self, modality: str) -> Encoder:
        """Return the encoder of a modality.

        Args:
            modality: A training modality.

        Returns:
            The encoder.
        """
        return cast(Encoder, self.model.encoders[modality])

    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, Tensor]:
        """Encode each available modality.

        Args:
            inputs: Modality mapped to (input, validity mask).

        Returns:
            Modality mapped to (B, 2 x embed_dim) features.
        """
        return self.model.encode(inputs)

    def predict_from(self, features: Mapping[str, Any], scenario: Scenario) -> Tensor:
        """Fuse the scenario's features and apply the head.

        Args:
            features: Modality mapped to its features.
            scenario: The available modalities.

        Returns:
            Raw outputs.
        """
        return self.model.predict({m: features[m] for m in scenario})

    def training_losses(
        self, inputs: Mapping[str, ModalityInput], target: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Task loss of the fused prediction under modality dropout, or per scenario in evaluation.

        Args:
            inputs: Every training modality's input.
            target: The batch targets.

        Returns:
            The loss terms and each modality's single-modality outputs (evaluation only).
        """
        return dropout_objective(self, self.encode(inputs), target, self.model.predict)
