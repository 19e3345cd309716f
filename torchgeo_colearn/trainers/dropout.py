# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Base of the methods that fuse any subset of modalities and train with modality (sensor) dropout."""

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from typing_extensions import override

from ..presence import Inputs, Presence
from ..scenarios import Scenario, scenario_name
from .base import MultiModalTask
from .interface import Features, LossOutput, MultiModalNetwork


def modality_dropout(
    batch_size: int,
    num_modalities: int,
    probability: float,
    device: torch.device,
    available: Tensor | None = None,
) -> Tensor:
    """Draw which modalities each sample keeps under modality (sensor) dropout.

    Each modality of each sample is dropped with *probability*; a sample that would lose every
    modality keeps one drawn uniformly among those it has, so that every sample still has an input.

    Args:
        batch_size: Number of samples B.
        num_modalities: Number of modalities M.
        probability: Drop probability of each modality, in [0, 1].
        device: Device of the mask.
        available: Optional (B, M) bool mask of the modalities each sample has (each sample has at
            least one); None when every sample has every modality.

    Returns:
        (B, M) bool mask, True where the modality is kept (never where it is not available).
    """
    keep = torch.rand(batch_size, num_modalities, device=device) >= probability
    if available is None:
        rescue = torch.randint(num_modalities, (batch_size,), device=device)
    else:
        keep &= available
        draw = torch.rand(batch_size, num_modalities, device=device)
        rescue = draw.masked_fill(~available, -1.0).argmax(1)
    forced = nn.functional.one_hot(rescue, num_modalities).bool()
    return torch.where(keep.any(1, keepdim=True), keep, forced)


class DropoutNetwork(MultiModalNetwork, Protocol):
    """A network that predicts from the modalities each sample keeps."""

    def predict(self, features: Features, keep: Mapping[str, Tensor]) -> Tensor:
        """Predict from the kept modalities (see :meth:`ModalityDropoutTask.predict_kept`)."""


class ModalityDropoutTask(MultiModalTask):
    """A method that predicts from any subset of modalities, trained with modality dropout.

    Training minimises the task loss of the prediction from the modalities each sample keeps under
    :func:`modality_dropout` (probability ``modality_dropout``), plus the method's
    :meth:`extra_losses`. Evaluation (the validation loss that early stopping and checkpointing read)
    is the mean task loss over each single-modality scenario and the full scenario, since the model is
    selected for the all-but-one missing-modality setting (every single modality counts as much as the
    full set). Training scores no scenario (the objective predicts dropped subsets only), so a training
    step runs no extra prediction; validation and test score every scenario.

    Subclasses build a :class:`DropoutNetwork` (or override :meth:`predict_kept`) and may add
    :meth:`extra_losses`.
    """

    supports_fusion = True
    min_modalities = 2

    #: The method's network, built by :meth:`configure_models`.
    model: DropoutNetwork

    def __init__(self, *, modality_dropout: float = 0.5, **kwargs: Any) -> None:
        """Initialize a new ModalityDropoutTask instance.

        Args:
            modality_dropout: Probability of dropping each modality of each training sample, in [0, 1).
            **kwargs: The arguments shared by every method (see
                :class:`~torchgeo_colearn.trainers.base.MultiModalTask`).

        Raises:
            ValueError: If *modality_dropout* is outside [0, 1).
        """
        if not 0 <= modality_dropout < 1:
            msg = f'modality_dropout must lie in [0, 1), got {modality_dropout}'
            raise ValueError(msg)
        super().__init__(**kwargs)

    def predict_kept(self, features: Features, keep: Mapping[str, Tensor]) -> Tensor:
        """Predict from the modalities each sample keeps; by default ``self.model.predict``.

        Args:
            features: Output of :meth:`encode`.
            keep: Modality mapped to the (B,) bool mask of the samples that keep it; modalities left
                out are missing for every sample. Every sample keeps at least one.

        Returns:
            Raw outputs.
        """
        return self.model.predict(features, keep)

    @override
    def predict_from(self, features: Features, scenario: Scenario) -> Tensor:
        """Predict a scenario: its modalities kept by every sample, the others missing."""
        size, device = self._batch_of(features[scenario[0]])
        everyone = torch.ones(size, dtype=torch.bool, device=device)
        return self.predict_kept(features, dict.fromkeys(scenario, everyone))

    @staticmethod
    def _batch_of(feature: Any) -> tuple[int, torch.device]:
        """Return the batch size and device of a modality's features.

        Args:
            feature: A tensor, or a tuple whose first item is a tensor.

        Returns:
            Batch size and device.
        """
        tensor: Tensor = feature if isinstance(feature, Tensor) else feature[0]
        return tensor.shape[0], tensor.device

    def extra_losses(
        self, features: Features, target: Tensor, presence: Presence
    ) -> dict[str, Tensor]:
        """Return further loss terms of the method, already weighted.

        Args:
            features: Output of :meth:`encode` for every training modality, each on the samples that
                hold it.
            target: The batch targets.
            presence: Which samples hold which modality.

        Returns:
            Term name mapped to a weighted scalar; added to the total and logged. None by default.
        """
        return {}

    @override
    def training_scenarios(self) -> list[Scenario]:
        """Return no scenario: the training objective predicts randomly dropped subsets only."""
        return []

    @override
    def losses(self, inputs: Inputs, features: Features, target: Tensor) -> LossOutput:
        """Task loss under modality dropout (training) or per scenario (evaluation), plus extras.

        With samples that lack modalities, training drops among the modalities each sample has, and
        each evaluated scenario's loss is over the samples that hold its modalities (a scenario no
        sample holds adds no term).

        Returns:
            The loss terms (``task_loss``; ``<scenario>_loss`` per evaluated scenario in evaluation; the
            :meth:`extra_losses`; the total ``loss``) and, in evaluation, the raw outputs of each
            single-modality scenario and of the full scenario.
        """
        presence = inputs.presence
        outputs: dict[Scenario, Tensor] = {}
        terms: dict[str, Tensor]
        if self.training:
            mask = modality_dropout(
                target.shape[0],
                len(self.modalities),
                self.hparams['modality_dropout'],
                target.device,
                presence.matrix(self.modalities),
            )
            # the modalities some sample holds (a modality no sample holds is never kept)
            keep = {
                m: mask[:, i] for i, m in enumerate(self.modalities) if m in features
            }
            every_sample = {m: presence.expand_features(features[m], m) for m in keep}
            terms = {
                'task_loss': self.criterion(
                    self.predict_kept(every_sample, keep), target
                )
            }
        else:
            scenarios = [(m,) for m in self.modalities] + [self.modalities]
            outputs = {
                s: self.scenario_output(features, presence, s)
                for s in scenarios
                if all(m in features for m in s)
            }
            per_scenario = {
                f'{scenario_name(s)}_loss': self.criterion(
                    out, presence.select(target, s)
                )
                for s, out in outputs.items()
                if out.shape[0]
            }
            terms = {
                'task_loss': torch.stack(list(per_scenario.values())).mean(),
                **per_scenario,
            }
        extra = self.extra_losses(features, target, presence)
        total = terms['task_loss'] + sum(
            extra.values(), torch.zeros((), device=target.device)
        )
        return {**terms, **extra, 'loss': total}, outputs
