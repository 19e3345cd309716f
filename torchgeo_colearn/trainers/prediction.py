# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Predicting inference scenarios: from a batch, on the samples that hold their modalities."""

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..batch import modalities_in
from ..metrics import TaskType
from ..presence import Inputs, Presence
from ..scenarios import Scenario, check_predictable, scenario_name
from .checks import ValidatesInputs
from .interface import Features


class PredictsScenarios(ValidatesInputs):
    """What a task shares to predict its inference scenarios, encoding each modality once.

    A scenario is predicted on the samples that hold all its modalities (``present_<modality>``);
    the batch-level predictions are NaN for the others.
    """

    #: Whether a scenario may hold several modalities (the method fuses them).
    supports_fusion: ClassVar[bool] = False

    @property
    @abstractmethod
    def task_type(self) -> TaskType:
        """'binary', 'multiclass', 'multilabel' or 'regression'."""

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Size of the raw output of a head."""

    @abstractmethod
    def scenarios(self) -> list[Scenario]:
        """Return the inference scenarios scored in validation and test."""

    @abstractmethod
    def encode(self, inputs: Inputs) -> dict[str, Any]:
        """Encode each available modality once."""

    @abstractmethod
    def predict_from(self, features: Features, scenario: Scenario) -> Tensor:
        """Predict one scenario from encoded modalities (raw outputs)."""

    @abstractmethod
    def postprocess(self, raw: Tensor) -> Tensor:
        """Turn raw outputs into predictions."""

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
        check_predictable(
            scenarios, modalities_in(batch), self.supports_fusion, type(self).__name__
        )
        features = self.encode(inputs.subset(m for s in scenarios for m in s))
        return {s: self.prediction(features, inputs.presence, s) for s in scenarios}

    def scenario_output(
        self, features: Features, presence: Presence, scenario: Scenario
    ) -> Tensor:
        """Predict a scenario on the samples that hold all its modalities.

        Args:
            features: Output of :meth:`encode`, each modality on the samples that hold it.
            presence: Which samples hold which modality.
            scenario: The scenario.

        Returns:
            Raw outputs (see :meth:`predict_from`) of the samples that hold every modality of the
            scenario (all of the batch's samples when none is marked as lacking one).
        """
        if not presence.complete:
            features = {
                m: presence.restrict(features[m], m, scenario) for m in scenario
            }
        return self.predict_from(features, scenario)

    def prediction(
        self,
        features: Features,
        presence: Presence,
        scenario: Scenario,
        raw: Tensor | None = None,
    ) -> Tensor:
        """Predict a scenario for every sample of a batch, NaN for the samples that cannot be.

        Args:
            features: As for :meth:`scenario_output`.
            presence: Which samples of the batch hold which modality.
            scenario: The scenario to predict.
            raw: The scenario's raw outputs when already computed (by :meth:`losses`).

        Returns:
            Predictions (see :meth:`postprocess`) with the batch's B rows; the rows of samples that
            lack one of the scenario's modalities are NaN.
        """
        if raw is None:
            if not all(m in features for m in scenario):
                # no sample of the batch holds one of the modalities
                size = presence.size
                shape = (
                    (size,)
                    if self.task_type in ('binary', 'regression')
                    else (size, self.output_dim)
                )
                lacking = next(m for m in scenario if m not in features)
                return torch.full(
                    shape, float('nan'), device=presence.masks[lacking].device
                )
            raw = self.scenario_output(features, presence, scenario)
        return presence.expand(self.postprocess(raw), scenario, float('nan'))

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Predict from each modality present in the batch, alone.

        Args:
            batch: Normalised batch with any non-empty subset of the training modalities, e.g.
                ``{'image_s1': x}`` with x of shape (B, *input_shape).

        Returns:
            Modality mapped to its prediction (see :meth:`postprocess`); NaN for the samples that
            lack the modality (``present_<modality>``).
        """
        inputs = self.modality_inputs(batch)
        features = self.encode(inputs)
        in_batch = modalities_in(batch)
        return {
            m: self.prediction(features, inputs.presence, (m,))
            for m in self.modalities
            if m in in_batch
        }

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
            scenario is named after the modality, e.g. ``{'s1': ..., 's2': ..., 's1+s2': ...}``. The
            samples that lack one of a scenario's modalities get NaN.
        """
        inputs = self.modality_inputs(batch, defer_nan_check=True, batch_idx=batch_idx)
        features = self.encode(inputs)
        in_batch = set(modalities_in(batch))
        return {
            scenario_name(s): self.prediction(features, inputs.presence, s)
            for s in self.scenarios()
            if set(s) <= in_batch
        }
