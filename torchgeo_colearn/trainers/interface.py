# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The interface of the multi-modal tasks: their inputs, outputs and the scenario protocol."""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias, cast, runtime_checkable

from torch import Tensor

from ..metrics import TaskType
from ..models import Encoder
from ..presence import Inputs
from ..scenarios import Scenario

#: Every available modality's encoding, as returned by :meth:`MultiModalTask.encode`.
Features: TypeAlias = Mapping[str, Any]

#: What :meth:`MultiModalTask.losses` returns: the loss terms (``'loss'`` is the total that is
#: minimised) and the raw outputs of the scenarios the objective already computed.
LossOutput: TypeAlias = tuple[dict[str, Tensor], dict[Scenario, Tensor]]


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
