# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning tasks for multi-modal co-learning and its baselines."""

from .base import MultiModalTask
from .colearn import CoLearnTask
from .distillation import DistillationTask
from .dropout import ModalityDropoutTask
from .ensemble import EnsembleTask
from .fusion import FeatureFusionTask, InputFusionTask
from .interface import ScenarioPredictor, check_predictor
from .shaspec import ShaSpecTask
from .single import SingleModalityTask

__all__ = (
    'CoLearnTask',
    'DistillationTask',
    'EnsembleTask',
    'FeatureFusionTask',
    'InputFusionTask',
    'ModalityDropoutTask',
    'MultiModalTask',
    'ScenarioPredictor',
    'ShaSpecTask',
    'SingleModalityTask',
    'check_predictor',
)
