# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""TreeSatAI-TS label parsing on the real labels JSON and official split lists (no rasters)."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from torchgeo_colearn.datasets.treesatai_ts import TreeSatAITimeSeries

REAL = os.path.join(
    os.path.dirname(__file__), '..', '..', '..', 'shared', 'data', 'treesatai_labels'
)
LABELS = 'TreeSatBA_v9_60m_multi_labels.json'

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(REAL, LABELS)),
    reason='real TreeSatAI labels absent',
)


def real_root(tmp_path: Path, split: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A TreeSatAI-TS root over the real labels and list, without rasters.

    The rasters are not shipped: the index of the aerial images (a listing of the folder, whose files
    are opened only in __getitem__) is replaced by an empty path per patch.
    """
    for folder in ('split', 'labels', 'aerial'):
        (tmp_path / folder).mkdir()
    lst = f'{split}_filenames.lst'
    (tmp_path / 'split' / lst).symlink_to(os.path.abspath(os.path.join(REAL, lst)))
    (tmp_path / 'labels' / LABELS).symlink_to(
        os.path.abspath(os.path.join(REAL, LABELS))
    )
    monkeypatch.setattr(
        TreeSatAITimeSeries, '_index_aerial', lambda self: dict.fromkeys(self.names, '')
    )
    return str(tmp_path)


def expected_labels(split: str, threshold: float = 0.07) -> dict[str, set[str]]:
    """Independent parse: the genera with an entry whose area share is strictly above the threshold.

    A patch may list a genus twice (two species of it); as in OmniSat, each entry is compared with the
    threshold on its own.
    """
    with open(os.path.join(REAL, LABELS)) as f:
        table = json.load(f)
    with open(os.path.join(REAL, f'{split}_filenames.lst'), newline='') as f:
        lines = f.read().split('\r\n')  # the official lists use CRLF
    names = [line for line in lines if line]
    return {
        name.removesuffix('.tif'): {g for g, share in table[name] if share > threshold}
        for name in names
    }


@pytest.mark.parametrize(
    'split,listed,kept,labels_per_patch',
    [
        ('train', 45337, 45330, {1: 26677, 2: 14720, 3: 3598, 4: 322, 5: 12, 6: 1}),
        ('test', 5044, 5044, {1: 2928, 2: 1669, 3: 415, 4: 31, 5: 1}),
    ],
)
def test_real_labels_and_splits(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    split: str,
    listed: int,
    kept: int,
    labels_per_patch: dict[int, int],
) -> None:
    root = real_root(tmp_path, split, monkeypatch)
    if listed != kept:
        with pytest.warns(UserWarning, match=f'{listed - kept} of {listed} patches'):
            ds = TreeSatAITimeSeries(root, split, sensors=('aerial',))  # type: ignore[arg-type]
    else:
        ds = TreeSatAITimeSeries(root, split, sensors=('aerial',))  # type: ignore[arg-type]
    assert len(ds) == kept
    assert not any('\r' in name or name.endswith('.tif') for name in ds.names)
    expected = expected_labels(split)
    assert len(expected) == listed
    assert ds.labels.shape == (kept, 15)
    assert ds.names == [name for name, genera in expected.items() if genera]
    multi_hot = torch.tensor(
        [[genus in expected[name] for genus in ds.classes] for name in ds.names]
    )
    assert torch.equal(ds.labels, multi_hot.float())
    assert dict(Counter(ds.labels.sum(1).int().tolist())) == labels_per_patch
    if split == 'train':
        # one real entry sits exactly on the threshold: Picea covers 0.07 of this patch
        row = ds.labels[ds.names.index('Cleared_0_24000_WEFL_NLF')]
        assert row[ds.classes.index('Picea')] == 0
        assert row[ds.classes.index('Cleared')] == 1
