# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""ShaSpec: shared-specific feature modelling for missing modalities (Wang et al., CVPR 2023)."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..metrics import TaskType
from ..models import Encoder, build_encoder
from ..models.head import Head
from .base import ModalityInput, MultiModalTask, OptimizerName, Scenario, SchedulerName
from .fusion import check_modality_dropout, dropout_objective


class SharedSpecific(NamedTuple):
    """A modality's two features, each of shape (B, d)."""

    #: Output of the modality's own specific encoder.
    specific: Tensor
    #: Output of the shared encoder (per-modality projection, then the trunk shared by all).
    shared: Tensor


class ShaSpecTask(MultiModalTask):
    """ShaSpec (Wang et al., CVPR 2023), adapted to modalities of different shapes.

    Per modality m: a specific encoder (its own weights) giving ``spe_m`` (B, d), and a shared encoder
    giving ``sha_m`` (B, d). ShaSpec's shared encoder has one set of weights for all modalities, which
    needs inputs of one shape; here each modality first goes through its own projection (an encoder of
    its ``encoders`` config to a common ``projection_dim`` space), then through a trunk shared by every
    modality (an MLP). A residual composition layer, shared by the modalities, gives
    ``c_m = sha_m + W [spe_m, sha_m]``; the head sees the M composed features concatenated in training
    order. A missing modality's slot is filled with the mean shared feature of the available ones
    (ShaSpec's substitution), so any subset predicts.

    Objective: the task loss (under modality dropout in training, as ShaSpec's random-missing training
    stage; per scenario in evaluation, as the fusion baselines), plus ``alignment_weight`` (alpha) x the
    L1 distance between the shared features of neighbouring modalities (a ring over the modalities; the
    single pair for two), plus ``domain_weight`` (beta) x the cross-entropy of a modality classifier on
    the specific features.

    If you use this method in your research, please cite:

    * https://doi.org/10.1109/CVPR52729.2023.01505
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
        projection_dim: int | None = None,
        shared_hidden_dims: Sequence[int] | None = None,
        alignment_weight: float = 0.1,
        domain_weight: float = 0.02,
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
        """Initialize a new ShaSpecTask instance.

        Args:
            encoders: Modality name mapped to its encoder config (see
                :class:`~torchgeo_colearn.CoLearnTask`); used for the specific encoder and the projection.
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            embed_dim: Size d of the specific, shared and composed features.
            projection_dim: Size of the common space the projections map to (default 2 x embed_dim).
            shared_hidden_dims: Hidden widths of the shared trunk (default one layer of projection_dim).
            alignment_weight: Weight alpha of the L1 alignment of the shared features.
            domain_weight: Weight beta of the modality classification of the specific features.
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
            ValueError: On a negative weight or an invalid option.
        """
        super().__init__()

    def configure_models(self) -> None:
        """Build the specific encoders, projections, shared trunk, composition layer and heads.

        Raises:
            ValueError: On a negative loss weight.
        """
        check_modality_dropout(self.hparams['modality_dropout'])
        for name in ('alignment_weight', 'domain_weight'):
            if self.hparams[name] < 0:
                msg = f'{name} must be >= 0, got {self.hparams[name]}'
                raise ValueError(msg)
        dim = self.hparams['embed_dim']
        width = self.hparams['projection_dim'] or 2 * dim
        configs: dict[str, dict[str, Any]] = self.hparams['encoders']
        self.specific = nn.ModuleDict(
            {m: build_encoder(c, dim) for m, c in configs.items()}
        )
        self.projections = nn.ModuleDict(
            {m: build_encoder(c, width) for m, c in configs.items()}
        )
        hidden = self.hparams['shared_hidden_dims']
        self.shared = build_encoder(
            {
                'name': 'mlp',
                'in_features': width,
                'hidden_dims': [width] if hidden is None else list(hidden),
            },
            dim,
        )
        self.composition = nn.Linear(2 * dim, dim)
        self.head = Head(
            len(configs) * dim, self.output_dim, self.hparams['head_hidden_dim']
        )
        self.modality_classifier = nn.Linear(dim, len(configs))

    def encoder_of(self, modality: str) -> Encoder:
        """Return the specific encoder of a modality.

        Args:
            modality: A training modality.

        Returns:
            The encoder.
        """
        return cast(Encoder, self.specific[modality])

    def encode(self, inputs: Mapping[str, ModalityInput]) -> dict[str, SharedSpecific]:
        """Encode each available modality.

        Args:
            inputs: Modality mapped to (input, validity mask).

        Returns:
            Modality mapped to its specific and shared features.
        """
        return {
            m: SharedSpecific(
                self.specific[m](x, valid), self.shared(self.projections[m](x, valid))
            )
            for m, (x, valid) in inputs.items()
        }

    def _predict_kept(
        self, features: Mapping[str, SharedSpecific], keep: Mapping[str, Tensor]
    ) -> Tensor:
        """Predict with per-sample missing modalities filled by the mean available shared feature.

        Args:
            features: Modality mapped to its features (at least the kept modalities).
            keep: Modality mapped to the (B,) bool mask of the samples that have it; every sample has at
                least one.

        Returns:
            Raw outputs.
        """
        present = [m for m in self.modalities if m in keep]
        weights = torch.stack([keep[m] for m in present]).to(
            features[present[0]].shared.dtype
        )
        shared = torch.stack([features[m].shared for m in present])
        substitute = (weights.unsqueeze(-1) * shared).sum(0) / weights.sum(0).unsqueeze(
            -1
        )
        slots = []
        for modality in self.modalities:
            if modality not in keep:
                slots.append(substitute)
                continue
            specific, own = features[modality]
            composed = own + self.composition(torch.cat([specific, own], dim=1))
            slots.append(torch.where(keep[modality].unsqueeze(1), composed, substitute))
        out: Tensor = self.head(torch.cat(slots, dim=1))
        return out

    def predict_from(self, features: Mapping[str, Any], scenario: Scenario) -> Tensor:
        """Predict a scenario; the missing modalities' slots get the mean shared feature.

        Args:
            features: Modality mapped to its features.
            scenario: The available modalities.

        Returns:
            Raw outputs.
        """
        reference = features[scenario[0]].shared
        everyone = torch.ones(
            reference.shape[0], dtype=torch.bool, device=reference.device
        )
        return self._predict_kept(features, dict.fromkeys(scenario, everyone))

    def representations(self, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Return the specific and shared features of each modality present.

        Args:
            batch: Normalised batch.

        Returns:
            Modality mapped to {'specific', 'shared'} (B, d) features.
        """
        features = self.encode(self.modality_inputs(batch))
        return {m: f._asdict() for m, f in features.items()}

    def training_losses(
        self, inputs: Mapping[str, ModalityInput], target: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Task loss plus weighted alignment and modality-classification terms.

        Args:
            inputs: Every training modality's input.
            target: The batch targets.

        Returns:
            The loss terms (``task_loss``, ``alignment_loss``, ``domain_loss``, per-scenario losses in
            evaluation, total ``loss``) and, in evaluation, each modality's single-modality outputs.
        """
        features = self.encode(inputs)
        count = len(self.modalities)
        pairs = [(0, 1)] if count == 2 else [(i, (i + 1) % count) for i in range(count)]
        shared = [features[m].shared for m in self.modalities]
        alignment = torch.stack(
            [F.l1_loss(shared[i], shared[j]) for i, j in pairs]
        ).mean()
        domain = torch.stack(
            [
                F.cross_entropy(
                    self.modality_classifier(features[m].specific),
                    torch.full((target.shape[0],), index, device=target.device),
                )
                for index, m in enumerate(self.modalities)
            ]
        ).mean()
        extra = {
            'alignment_loss': self.hparams['alignment_weight'] * alignment,
            'domain_loss': self.hparams['domain_weight'] * domain,
        }
        return dropout_objective(self, features, target, self._predict_kept, extra)
