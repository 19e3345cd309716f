# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Cross-modal knowledge distillation: a multi-modal teacher, single-modality students."""

import os
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from ..losses import at_least_float32
from ..metrics import TaskType
from ..models.fusion import FeatureFusionModel, FusionName
from ..presence import Inputs
from .checks import check_non_negative
from .fusion import FeatureFusionTask
from .interface import Features, LossOutput
from .single import SingleModalityTask

#: Hyperparameters of a teacher checkpoint that define its network.
TEACHER_ARCHITECTURE = ('encoders', 'embed_dim', 'fusion', 'head_hidden_dim')


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

    The teacher is a feature-fusion network (:class:`~torchgeo_colearn.models.fusion.FeatureFusionModel`)
    that sees every modality. Each student is a single-modality model (encoder with 2 x ``embed_dim``
    outputs + head, as in :class:`~torchgeo_colearn.trainers.single.SingleModalityTask`), trained on

    ``l(s_m, y) + w_logit KD(s_m, t) + w_feature ||f_m - f_t||^2``

    with s_m / t the student / teacher raw outputs, KD the logit distillation of
    :func:`logit_distillation` (MSE on the standardised predictions for regression) and f_m / f_t the
    student's features and the teacher's fused features. The students' losses are summed.

    Two schedules:

    * ``teacher_checkpoint`` given (the usual two-stage KD): the teacher is a trained
      :class:`~torchgeo_colearn.trainers.fusion.FeatureFusionTask` loaded from that checkpoint and frozen
      (eval mode, no gradient). Its architecture is recorded in this task's hyperparameters
      (``teacher_model``) and its weights in this task's state dict, so a checkpoint of this task reloads
      on its own, without the teacher's file.
    * no checkpoint (online distillation): a teacher built from ``encoders``, ``embed_dim`` and
      ``teacher_fusion`` is trained at the same time on its own task loss with all modalities, and the
      students distil from its detached outputs.

    Only the students predict: every inference scenario is a single modality.
    """

    #: Checkpoint key prefixes of torchgeo-colearn 0.1 mapped to today's (the students' networks).
    legacy_prefixes: ClassVar[dict[str, str]] = SingleModalityTask.legacy_prefixes

    #: The teacher network, built by :meth:`configure_models`.
    teacher: FeatureFusionModel

    def __init__(
        self,
        *,
        teacher_checkpoint: str | None = None,
        teacher_fusion: FusionName = 'mean',
        teacher_model: dict[str, Any] | None = None,
        temperature: float = 4.0,
        logit_weight: float = 1.0,
        feature_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        """Initialize a new DistillationTask instance.

        Args:
            teacher_checkpoint: Path of a trained FeatureFusionTask checkpoint, or None to train the
                teacher online.
            teacher_fusion: Fusion of the online teacher, 'mean' or 'gated' (ignored with a checkpoint).
            teacher_model: The architecture of a checkpoint teacher (its ``encoders``, ``embed_dim``,
                ``fusion`` and ``head_hidden_dim``), recorded when the checkpoint is first loaded; when
                given, the teacher is built from it and its weights come from this task's state dict
                (reloading a checkpoint of this task), and ``teacher_checkpoint`` is not read.
            temperature: Softening temperature of the logit distillation (classification).
            logit_weight: Weight of the logit distillation term.
            feature_weight: Weight of the feature distillation term.
            **kwargs: The arguments shared by every method (see
                :class:`~torchgeo_colearn.trainers.base.MultiModalTask`); one student per ``encoders``
                entry, ``embed_dim`` must match the teacher's.

        Raises:
            ValueError: If the teacher does not fit the students or an option is invalid.
            FileNotFoundError: If *teacher_checkpoint* does not exist (and *teacher_model* is not
                given).
        """
        check_non_negative(
            temperature=temperature,
            logit_weight=logit_weight,
            feature_weight=feature_weight,
        )
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        """Build the students and the teacher (online, from the checkpoint, or from ``teacher_model``).

        Raises:
            ValueError: If the teacher's modalities, task or width differ from the students'.
            FileNotFoundError: If the teacher checkpoint is missing.
        """
        super().configure_models()
        path: str | None = self.hparams['teacher_checkpoint']
        architecture: dict[str, Any] | None = self.hparams['teacher_model']
        if path is not None and architecture is None:
            self.teacher = self._load_teacher(path)
        else:
            architecture = architecture or {
                'encoders': self.hparams['encoders'],
                'embed_dim': self.hparams['embed_dim'],
                'fusion': self.hparams['teacher_fusion'],
                'head_hidden_dim': self.hparams['head_hidden_dim'],
            }
            self.teacher = FeatureFusionModel(
                architecture['encoders'],
                2 * architecture['embed_dim'],
                self.output_dim,
                architecture['fusion'],
                architecture['head_hidden_dim'],
            )
        if self.frozen_teacher:
            self.teacher.requires_grad_(False)
            self.teacher.eval()

    def _load_teacher(self, path: str) -> FeatureFusionModel:
        """Load and check the teacher checkpoint, record its architecture in the hyperparameters.

        Args:
            path: A FeatureFusionTask checkpoint.

        Returns:
            The teacher network, with its trained weights.

        Raises:
            FileNotFoundError: If the file does not exist.
            ValueError: If the teacher does not fit the students.
        """
        if not os.path.isfile(path):
            msg = f'teacher_checkpoint {path!r} does not exist (a FeatureFusionTask checkpoint is expected)'
            raise FileNotFoundError(msg)
        trained = FeatureFusionTask.load_from_checkpoint(path, map_location='cpu')
        mismatch = {
            key: (trained.hparams.get(key), self.hparams.get(key))
            for key in ('task', 'embed_dim', 'num_classes', 'num_labels')
            if trained.hparams.get(key) != self.hparams.get(key)
        }
        if set(trained.modalities) != set(self.modalities):
            mismatch['modalities'] = (trained.modalities, self.modalities)
        if mismatch:
            msg = f'teacher_checkpoint {path} does not fit the students (teacher, student): {mismatch}'
            raise ValueError(msg)
        self.hparams['teacher_model'] = {
            key: trained.hparams[key] for key in TEACHER_ARCHITECTURE
        }
        return trained.model

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

    @override
    def losses(self, inputs: Inputs, features: Features, target: Tensor) -> LossOutput:
        """Students' task and distillation losses (plus the online teacher's task loss).

        Returns:
            The loss terms (``<modality>_loss`` per student, ``logit_distillation``,
            ``feature_distillation``, ``teacher_loss`` when online, and the total ``loss``), and each
            student's outputs.
        """
        presence = inputs.presence
        with torch.set_grad_enabled(
            torch.is_grad_enabled() and not self.frozen_teacher
        ):
            encoded = self.teacher.encode(inputs)
            if presence.complete:
                teacher_features = self.teacher.fuse(encoded)
            else:
                # each sample's teacher fuses the modalities it has
                teacher_features = self.teacher.fuse(
                    {m: presence.expand_features(encoded[m], m) for m in encoded},
                    presence.masks_of(encoded),
                )
            teacher_out = self.teacher.head(teacher_features)
        student_terms, outputs = super().losses(inputs, features, target)
        terms = {k: v for k, v in student_terms.items() if k != 'loss'}
        soft, hard = teacher_out.detach(), teacher_features.detach()
        # each student on the samples that hold its modality; a modality no sample holds adds 0
        logit = sum(
            (
                logit_distillation(
                    self.task_type,
                    out,
                    presence.select(soft, s),
                    self.hparams['temperature'],
                )
                for s, out in outputs.items()
            ),
            torch.zeros((), device=target.device),
        )
        feature = sum(
            (
                F.mse_loss(
                    at_least_float32(features[m]),
                    at_least_float32(presence.select(hard, (m,))),
                )
                for m in self.modalities
                if m in features
            ),
            torch.zeros((), device=target.device),
        )
        total = (
            student_terms['loss']
            + self.hparams['logit_weight'] * logit
            + self.hparams['feature_weight'] * feature
        )
        terms |= {'logit_distillation': logit, 'feature_distillation': feature}
        if not self.frozen_teacher:
            terms['teacher_loss'] = self.criterion(teacher_out, target)
            total = total + terms['teacher_loss']
        return {**terms, 'loss': total}, outputs
