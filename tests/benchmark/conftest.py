# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest

import torchgeo_colearn.datamodules.synthetic as synthetic_module

from .common import SelectableSynthetic


@pytest.fixture(autouse=True)
def selectable(monkeypatch: pytest.MonkeyPatch) -> type:
    """Let the synthetic datamodule's class path accept `modalities: [m]` (per-modality runs)."""
    monkeypatch.setattr(
        synthetic_module, 'SyntheticMultiSensorDataModule', SelectableSynthetic
    )
    return SelectableSynthetic
