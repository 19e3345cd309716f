# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import pytest
import timm
import torch


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Draw figures off-screen and keep the torch hub cache out of the user's home."""
    matplotlib.use('agg')
    # The test models are tiny: one thread is the fastest and immune to oversubscribed cores.
    torch.set_num_threads(1)
    torch.hub.set_dir(str(tmp_path / 'hub'))


class TinyBackbone(torch.nn.Module):
    """Stand-in for a timm backbone: one convolution and global pooling."""

    def __init__(self, in_chans: int = 3, **kwargs: Any) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_chans, 8, 3, padding=1)
        self.num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.conv(x).mean((2, 3))
        return features


@pytest.fixture
def tiny_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the timm models of the image encoders with a tiny network (fast CLI runs)."""

    def create_model(name: str, **kwargs: Any) -> TinyBackbone:
        return TinyBackbone(**kwargs)

    monkeypatch.setattr(timm, 'create_model', create_model)


@pytest.fixture
def edit_in_place() -> Callable[[str, Callable[[str], None]], None]:
    """Edit a file, keeping its size and modification time (what (size, mtime) cache keys miss)."""

    def edit(path: str, change: Callable[[str], None]) -> None:
        before = os.stat(path)
        with open(path, 'rb') as f:
            content = f.read()
        change(path)
        with open(path, 'rb') as f:
            assert f.read() != content, f'{path} did not change'
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(path)
        assert (after.st_size, after.st_mtime_ns) == (
            before.st_size,
            before.st_mtime_ns,
        )

    return edit
