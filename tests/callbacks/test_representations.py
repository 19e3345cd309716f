# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from torchgeo_colearn.callbacks import RepresentationFigures
from torchgeo_colearn.callbacks.representations import part_groups, project_2d

from ..fakes import fake_task, loader, make_dataset, make_trainer


def clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters of 40 points in 10-D."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 10)) * 10
    labels = np.arange(120) % 3
    return centres[labels] + rng.normal(size=(120, 10)), labels


def separation(coords: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette of the 2-D points: near 1 for separated clusters, near 0 for mixed ones."""
    return float(silhouette_score(coords, labels))


@pytest.mark.parametrize('projection', ['tsne', 'pca'])
def test_projection_keeps_clusters_apart(projection: Any) -> None:
    points, labels = clusters()
    coords = project_2d(points, projection)
    assert coords.shape == (120, 2) and np.isfinite(coords).all()
    assert separation(coords, labels) > 0.5


def test_criterion_catches_a_broken_projection() -> None:
    points, labels = clusters()
    shuffled = np.random.default_rng(1).permutation(project_2d(points, 'pca'))
    assert separation(shuffled, labels) < 0.1


def test_few_points_and_dimensions() -> None:
    assert project_2d(np.ones((3, 1)) * np.arange(3)[:, None], 'tsne').shape == (3, 2)


def test_part_groups_split_widths() -> None:
    import torch

    groups = part_groups(
        {
            'shared': {
                'a': torch.zeros(2, 4),
                'b': torch.zeros(2, 4),
                'c': torch.zeros(2, 3),
            }
        }
    )
    assert [(name, list(members)) for name, members in groups] == [
        ('shared:a+b', ['a', 'b']),
        ('shared:c', ['c']),
    ]


def test_figure_and_projector_bounded_samples(tmp_path: Path) -> None:
    model = fake_task('multilabel')
    callback = RepresentationFigures(max_samples=21, projection='pca')
    trainer = make_trainer(tmp_path, [callback])
    trainer.test(model, loader(make_dataset('multilabel'), batch_size=8), verbose=False)
    log_dir = Path(trainer.log_dir or '')
    assert {'test_representations.png', 'projector_config.pbtxt'} <= set(
        os.listdir(log_dir)
    )
    metadata = next(log_dir.glob('*/features/metadata.tsv')).read_text().splitlines()
    assert metadata[0] == 'modality\tlabel\tsample'
    assert len(metadata) == 1 + 2 * 21


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match='max_samples'):
        RepresentationFigures(max_samples=0)
    with pytest.raises(ValueError, match="'tsne' or 'pca'"):
        RepresentationFigures(projection='umap')  # type: ignore[arg-type]
