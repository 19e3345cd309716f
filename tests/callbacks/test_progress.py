# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from torchgeo_colearn.callbacks import EpochProgress
from torchgeo_colearn.callbacks.progress import ProgressMode

from ..fakes import fake_task, loader, make_dataset, make_trainer

LINE = re.compile(
    r'^epoch (\d)/2: train_loss \d+\.\d{4}, val_loss \d+\.\d{4} \(\d+\.\d s\)$'
)


def fit_lines(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: ProgressMode,
    epochs: int = 1,
) -> list[str]:
    dataset = make_dataset('multiclass', num_samples=16)
    trainer = make_trainer(
        tmp_path, [EpochProgress(mode)], logger=False, max_epochs=epochs
    )
    trainer.fit(fake_task('multiclass'), loader(dataset), loader(dataset))
    return capsys.readouterr().out.splitlines()


def test_one_line_per_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = fit_lines(tmp_path, capsys, 'always', epochs=3)
    assert [LINE.match(line) is not None for line in lines] == [True] * 3, lines
    assert [int(LINE.fullmatch(line)[1]) for line in lines] == [0, 1, 2]  # type: ignore[index]


@pytest.mark.parametrize(
    'mode,tty,printed',
    [('auto', False, True), ('auto', True, False), ('never', False, False)],
)
def test_mode(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mode: Any,
    tty: bool,
    printed: bool,
) -> None:
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: tty)
    lines = fit_lines(tmp_path, capsys, mode)
    assert bool(lines) is printed


def test_bad_mode() -> None:
    with pytest.raises(
        ValueError, match="mode must be 'auto', 'always' or 'never', got 'tty'"
    ):
        EpochProgress('tty')  # type: ignore[arg-type]
