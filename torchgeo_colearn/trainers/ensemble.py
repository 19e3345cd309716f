# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Late-fusion ensemble of single-modality models."""

from typing import Any, Literal, TypeAlias

import torch
from torch import Tensor
from typing_extensions import override

from ..scenarios import Scenario
from .interface import Features
from .single import SingleModalityTask

#: What the ensemble averages.
Averaging: TypeAlias = Literal['probabilities', 'logits']


class EnsembleTask(SingleModalityTask):
    """Single-modality models trained as :class:`SingleModalityTask`, fused at decision level.

    Training is exactly that of :class:`SingleModalityTask`. A scenario with several modalities averages
    the predictions of their models: the probabilities (default; class probabilities for multiclass,
    sigmoid outputs for binary and multilabel) or the raw logits; regression averages the predicted
    values either way. Single-modality scenarios are those of the single-modality models.
    """

    supports_fusion = True

    def __init__(self, *, average: Averaging = 'probabilities', **kwargs: Any) -> None:
        """Initialize a new EnsembleTask instance.

        Args:
            average: Average the 'probabilities' or the 'logits' of the models.
            **kwargs: The arguments shared by every method (see
                :class:`~torchgeo_colearn.trainers.base.MultiModalTask`); one model per ``encoders``
                entry.

        Raises:
            ValueError: If *average* is unknown.
        """
        if average not in ('probabilities', 'logits'):
            msg = f"average must be 'probabilities' or 'logits', got {average!r}"
            raise ValueError(msg)
        super().__init__(**kwargs)

    @override
    def predict_from(self, features: Features, scenario: Scenario) -> Tensor:
        """Average the scenario's single-modality predictions, returned as raw outputs.

        Averaged probabilities are mapped back to raw outputs (log-probabilities for multiclass, logits
        for binary and multilabel) so that :meth:`postprocess` returns the averaged probabilities.
        """
        outputs = torch.stack([self.model.predict(m, features[m]) for m in scenario])
        if len(scenario) == 1:
            return outputs[0]
        match (self.hparams['average'], self.task_type):
            case ('logits', _) | (_, 'regression'):
                return outputs.mean(0)
            case (_, 'multiclass'):
                return outputs.float().softmax(-1).mean(0).log()
            case _:
                return torch.logit(outputs.float().sigmoid().mean(0), eps=1e-7)
