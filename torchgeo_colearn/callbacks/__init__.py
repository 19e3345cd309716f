# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning callbacks: scenario reports, robustness curves, representation figures, predictions."""

from .prediction import ScenarioPredictionWriter
from .report import ScenarioReport
from .representations import RepresentationFigures
from .robustness import RobustnessEvaluation

__all__ = (
    'RepresentationFigures',
    'RobustnessEvaluation',
    'ScenarioPredictionWriter',
    'ScenarioReport',
)
