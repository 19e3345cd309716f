# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path

import matplotlib
import pytest
import torch


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Draw figures off-screen and keep the torch hub cache out of the user's home."""
    matplotlib.use('agg')
    torch.hub.set_dir(str(tmp_path / 'hub'))
