# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-modal Earth observation datamodules."""

from .base import MultiModalDataModule
from .cropharvest import CropHarvestDataModule
from .eurosat_s1s2 import EuroSATS1S2DataModule
from .kfold import KFoldDataModule, group_folds, kfold_split, latlon_blocks
from .lfmc import LFMCDataModule
from .presto import AlgaeBloomsDataModule, FuelMoistureDataModule, PrestoDataModule
from .synthetic import SyntheticMultiSensorDataModule
from .treesatai_ts import PadTimeSeries, TreeSatAITimeSeriesDataModule

__all__ = (
    'AlgaeBloomsDataModule',
    'CropHarvestDataModule',
    'EuroSATS1S2DataModule',
    'FuelMoistureDataModule',
    'KFoldDataModule',
    'LFMCDataModule',
    'MultiModalDataModule',
    'PadTimeSeries',
    'PrestoDataModule',
    'SyntheticMultiSensorDataModule',
    'TreeSatAITimeSeriesDataModule',
    'group_folds',
    'kfold_split',
    'latlon_blocks',
)
