# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning tasks for multi-modal co-learning."""

from .base import MultiModalTask, scenario_name
from .colearn import CoLearnTask
from .single import SingleModalityTask

__all__ = ('CoLearnTask', 'MultiModalTask', 'SingleModalityTask', 'scenario_name')
