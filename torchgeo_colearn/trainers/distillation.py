# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Cross-modal knowledge distillation: a multi-modal teacher, single-modality students."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..metrics import TaskType
from .base import ModalityInput, OptimizerName, SchedulerName
from .fusion import FeatureFusionModel, FeatureFusionTask, FusionName
from .single import SingleModalityTask


def logit_distillation(
    task: TaskType, student: Tensor, teacher: Tensor, temperature: float
) -> Tensor:
    """Distillation loss between raw student and teacher outputs.

    Classification (Hinton et al., 2015): the cross-entropy between the teacher's and the student's
    outputs softened by the temperature, times T^2 to keep the gradient scale: KL divergence of the
    softmax for multiclass, binary cross-entropy with the teacher's sigmoid as soft target for binary
    and multilabel. Regression: the mean squared error between the (standardised) predictions.

    Args:
        task: The task type.
        student: Raw student outputs, (B,) or (B, K).
        teacher: Raw teacher outputs, same shape.
        temperature: Softening temperature T (classification only).

    Returns:
        A scalar loss.
    """
    student, teacher = student.float(), teacher.float()
    match task:
        case 'regression':
            return F.mse_loss(student, teacher)
        case 'multiclass':
            loss = F.kl_div(
                F.log_softmax(student / temperature, dim=-1),
                F.log_softmax(teacher / temperature, dim=-1),
                reduction='batchmean',
                log_target=True,
            )
        case 'binary' | 'multilabel':
            loss = F.binary_cross_entropy_with_logits(
                student / temperature, torch.sigmoid(teacher / temperature)
            )
    return loss * temperature**2


class DistillationTask(SingleModalityTask):
    """Cross-modal knowledge distillation into single-modality students.

    The teacher is a feature-fusion model (:class:`~torchgeo_colearn.trainers.fusion.FeatureFusionModel`)
    that sees every modality. Each student is a single-modality model (encoder with 2 x ``embed_dim``
    outputs + head, as in :class:`~torchgeo_colearn.trainers.single.SingleModalityTask`), trained on

    ``l(s_m, y) + w_logit KD(s_m, t) + w_feature ||f_m - f_t||^2``

    with s_m / t the student / teacher raw outputs, KD the logit distillation of
    :func:`logit_distillation` (MSE on the standardised predictions for regression) and f_m / f_t the
    student's features and the teacher's fused features. The students' losses are summed.

    Two schedules:

    * ``teacher_checkpoint`` given (the usual two-stage KD): the teacher is a trained
      :class:`~torchgeo_colearn.trainers.fusion.FeatureFusionTask` loaded from that checkpoint and frozen
      (eval mode, no gradient); ``encoders``-independent teacher settings come from the checkpoint.
    * no checkpoint (online distillation): a teacher built from ``encoders``, ``embed_dim`` and
      ``teacher_fusion`` is trained at the same time on its own task loss with all modalities, and the
      students distil from its detached outputs.

    Only the students predict: every inference scenario is a single modality.
    """

    def __init__(
        self,
        encoders: dict[str, dict[str, Any]],
        task: TaskType = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        embed_dim: int = 64,
        teacher_checkpoint: str | None = None,
        teacher_fusion: FusionName = 'mean',
        temperature: float = 4.0,
        logit_weight: float = 1.0,
        feature_weight: float = 1.0,
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
        """Initialize a new DistillationTask instance.

        Args:
            encoders: Modality name mapped to its encoder config (see
                :class:`~torchgeo_colearn.CoLearnTask`); one student per entry.
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            embed_dim: Half the student encoder output size; must match the teacher's.
            teacher_checkpoint: Path of a trained FeatureFusionTask checkpoint, or None to train the
                teacher online.
            teacher_fusion: Fusion of the online teacher, 'mean' or 'gated' (ignored with a checkpoint).
            temperature: Softening temperature of the logit distillation (classification).
            logit_weight: Weight of the logit distillation term.
            feature_weight: Weight of the feature distillation term.
            head_hidden_dim: Hidden width of the heads, or None for linear heads.
            class_weights: Class weights: a list, 'balanced' (from the datamodule), or None.
            target_mean: Regression target mean; None takes it from the datamodule.
            target_std: Regression target standard deviation; None takes it from the datamodule.
            lr: Learning rate.
            patience: Patience of the 'plateau' learning-rate schedule, in epochs.
            optimizer: 'adam', 'adamw' or 'sgd'.
            scheduler: 'plateau' (on val_loss), 'cosine' or 'none'.
            weight_decay: Weight decay of the optimiser.

        Raises:
            ValueError: If the teacher does not fit the students or an option is invalid.
        """
        super().__init__(
            encoders,
            task,
            num_classes,
            num_labels,
            embed_dim,
            head_hidden_dim,
            class_weights,
            target_mean,
            target_std,
            lr,
            patience,
            optimizer,
            scheduler,
            weight_decay,
        )

    def configure_models(self) -> None:
        """Build the students and load or build the teacher.

        Raises:
            ValueError: If a weight or the temperature is negative, or the teacher's modalities, task or
                width differ from the students'.
        """
        super().configure_models()
        for name in ('temperature', 'logit_weight', 'feature_weight'):
            if self.hparams[name] < 0:
                msg = f'{name} must be >= 0, got {self.hparams[name]}'
                raise ValueError(msg)
        path: str | None = self.hparams['teacher_checkpoint']
        self.teacher: FeatureFusionModel
        if path is None:
            self.teacher = FeatureFusionModel(
                self.hparams['encoders'],
                2 * self.hparams['embed_dim'],
                self.output_dim,
                self.hparams['teacher_fusion'],
                self.hparams['head_hidden_dim'],
            )
            return
        trained = FeatureFusionTask.load_from_checkpoint(path, map_location='cpu')
        mismatch = {
            key: (trained.hparams[key], self.hparams[key])
            for key in ('task', 'embed_dim', 'num_classes', 'num_labels')
            if trained.hparams.get(key) != self.hparams.get(key)
        }
        if set(trained.modalities) != set(self.modalities):
            mismatch['modalities'] = (trained.modalities, self.modalities)
        if mismatch:
            msg = f'teacher_checkpoint {path} does not fit the students (teacher, student): {mismatch}'
            raise ValueError(msg)
        self.teacher = trained.model
        self.teacher.requires_grad_(False)
        self.teacher.eval()

    @property
    def frozen_teacher(self) -> bool:
        """Whether the teacher comes from a checkpoint and stays frozen."""
        return self.hparams['teacher_checkpoint'] is not None

    def train(self, mode: bool = True) -> 'DistillationTask':
        """Set training mode, keeping a frozen teacher in eval mode (fixed batch-norm statistics).

        Args:
            mode: Training (True) or evaluation mode.

        Returns:
            This task.
        """
        super().train(mode)
        if self.frozen_teacher:
            self.teacher.eval()
        return self

    def training_losses(
        self, inputs: Mapping[str, ModalityInput], target: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Students' task and distillation losses (plus the online teacher's task loss).

        Args:
            inputs: Every training modality's input.
            target: The batch targets.

        Returns:
            The loss terms (``<modality>_loss`` per student, ``logit_distillation``,
            ``feature_distillation``, ``teacher_loss`` when online, and the total ``loss``), and each
            student's outputs.
        """
        with torch.set_grad_enabled(
            torch.is_grad_enabled() and not self.frozen_teacher
        ):
            teacher_features = self.teacher.fuse(self.teacher.encode(inputs))
            teacher_out = self.teacher.head(teacher_features)
        features = self.encode(inputs)
        outputs = {m: self.predict_from(features, (m,)) for m in features}
        soft, hard = teacher_out.detach(), teacher_features.detach()
        terms = {f'{m}_loss': self.criterion(out, target) for m, out in outputs.items()}
        logit = torch.stack(
            [
                logit_distillation(
                    self.task_type, out, soft, self.hparams['temperature']
                )
                for out in outputs.values()
            ]
        ).sum()
        feature = torch.stack([F.mse_loss(f, hard) for f in features.values()]).sum()
        total = (
            torch.stack(list(terms.values())).sum()
            + self.hparams['logit_weight'] * logit
            + self.hparams['feature_weight'] * feature
        )
        terms |= {'logit_distillation': logit, 'feature_distillation': feature}
        if not self.frozen_teacher:
            terms['teacher_loss'] = self.criterion(teacher_out, target)
            total = total + terms['teacher_loss']
        return {**terms, 'loss': total}, outputs
