# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""torchgeo-colearn: multi-modal co-learning for Earth observation, as a TorchGeo add-on."""

from .datamodules import SyntheticMultiSensorDataModule
from .trainers import CoLearnTask, MultiModalTask, SingleModalityTask

__version__ = '0.1.0'

__all__ = (
    'CoLearnTask',
    'MultiModalTask',
    'SingleModalityTask',
    'SyntheticMultiSensorDataModule',
)
