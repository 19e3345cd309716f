# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Deployment with one sensor: raw-value prediction, standalone exported models and maps."""

from .inputs import (
    CHECKPOINT_KEY,
    RawInputModel,
    TrainingInputs,
    load_task,
    predict_raw,
    training_inputs_of,
)

__all__ = (
    'CHECKPOINT_KEY',
    'RawInputModel',
    'TrainingInputs',
    'load_task',
    'predict_raw',
    'training_inputs_of',
)
