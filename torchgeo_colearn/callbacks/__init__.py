# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning callbacks: missing-modality evaluation and prediction writing."""

from .evaluation import ScenarioEvaluation, ScenarioPredictor, ScenarioScores
from .prediction import ScenarioPredictionWriter

__all__ = (
    'ScenarioEvaluation',
    'ScenarioPredictionWriter',
    'ScenarioPredictor',
    'ScenarioScores',
)
