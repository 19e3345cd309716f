# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning callbacks: scenario reports, robustness curves, representation figures, predictions, progress lines."""

from .prediction import ScenarioPredictionWriter
from .progress import EpochProgress
from .report import ScenarioReport
from .representations import RepresentationFigures
from .robustness import RobustnessEvaluation

__all__ = (
    'EpochProgress',
    'RepresentationFigures',
    'RobustnessEvaluation',
    'ScenarioPredictionWriter',
    'ScenarioReport',
)
