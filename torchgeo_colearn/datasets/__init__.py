# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-modal Earth observation datasets."""

from .cropharvest import CropHarvestMultiModal
from .cropharvest_export import CropHarvestExport, CropHarvestExports
from .eurosat_s1s2 import EuroSATS1S2
from .lfmc import LFMC
from .presto import AlgaeBlooms, FuelMoisture, PrestoPixelTimeSeries
from .synthetic import SyntheticMultiSensor
from .tensor import TensorMultiModalDataset
from .treesatai_ts import TreeSatAITimeSeries

__all__ = (
    'LFMC',
    'AlgaeBlooms',
    'CropHarvestExport',
    'CropHarvestExports',
    'CropHarvestMultiModal',
    'EuroSATS1S2',
    'FuelMoisture',
    'PrestoPixelTimeSeries',
    'SyntheticMultiSensor',
    'TensorMultiModalDataset',
    'TreeSatAITimeSeries',
)
