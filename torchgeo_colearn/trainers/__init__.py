# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning tasks for multi-modal co-learning and its baselines."""

from .base import MultiModalTask, scenario_name
from .colearn import CoLearnTask
from .distillation import DistillationTask
from .ensemble import EnsembleTask
from .fusion import FeatureFusionTask, InputFusionTask
from .shaspec import ShaSpecTask
from .single import SingleModalityTask

__all__ = (
    'CoLearnTask',
    'DistillationTask',
    'EnsembleTask',
    'FeatureFusionTask',
    'InputFusionTask',
    'MultiModalTask',
    'ShaSpecTask',
    'SingleModalityTask',
    'scenario_name',
)
