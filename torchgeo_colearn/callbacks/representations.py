# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Figures of the learned representations: 2-D projections and the TensorBoard projector (opt-in)."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import lightning.pytorch as pl
import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import Tensor

from ..metrics import TaskType
from ..presence import complete_samples
from ..scenarios import scenario_name
from ..trainers.interface import ScenarioPredictor, check_predictor
from .figures import output_folder, tensorboard_writer, write_figure
from .study import TestStudy

#: The 2-D projections of the representation figure.
Projection: TypeAlias = Literal['tsne', 'pca']

#: Up to this many classes, the figure gives each class a colour and a legend entry.
MAX_LEGEND_CLASSES = 20


def project_2d(points: np.ndarray, projection: Projection, seed: int = 0) -> np.ndarray:
    """Project points to 2-D with scikit-learn.

    Args:
        points: (N, d) points.
        projection: 'tsne' (perplexity min(30, (N - 1) / 3), PCA initialisation) or 'pca'.
        seed: Random state of t-SNE.

    Returns:
        (N, 2) coordinates; zero-padded when fewer than two components exist.
    """
    n, d = points.shape
    if projection == 'pca' or n < 5:
        components = min(2, n, d)
        projected: np.ndarray = PCA(n_components=components).fit_transform(points)
        return np.pad(projected, ((0, 0), (0, 2 - components)))
    tsne = TSNE(
        n_components=2, perplexity=min(30.0, (n - 1) / 3), init='pca', random_state=seed
    )
    coords: np.ndarray = tsne.fit_transform(points)
    return coords


class RepresentationFigures(TestStudy):
    """Project the representation parts of the first test samples to 2-D (opt-in).

    Collects :meth:`~torchgeo_colearn.trainers.ScenarioPredictor.representations` of the first
    *max_samples* test samples (on the device), then at test end draws, per representation part (per
    group of modalities with the same width, since only those share a space), the 2-D projection of all
    modalities jointly, coloured by modality and by label: aligned shared parts mix the modalities,
    separated specific parts form one cloud per modality. Writes ``test_representations.png`` in
    *output_dir* (default ``trainer.log_dir``), sends it to TensorBoard with ``add_figure`` and each part
    to TensorBoard's embedding projector.
    """

    def __init__(
        self,
        max_samples: int = 200,
        projection: Projection = 'tsne',
        output_dir: str | None = None,
        projector: bool = True,
        seed: int = 0,
    ) -> None:
        """Initialize a new RepresentationFigures instance.

        Args:
            max_samples: Number of test samples (the first ones) to project.
            projection: 'tsne' or 'pca' (scikit-learn).
            output_dir: Where the figure goes; None = ``trainer.log_dir``.
            projector: Also send the embeddings to TensorBoard's projector (with a TensorBoard logger).
            seed: Random state of t-SNE.

        Raises:
            ValueError: If *max_samples* < 1 or *projection* is unknown.
        """
        super().__init__()
        if max_samples < 1:
            msg = f'max_samples must be >= 1, got {max_samples}'
            raise ValueError(msg)
        if projection not in ('tsne', 'pca'):
            msg = f"projection must be 'tsne' or 'pca', got {projection!r}"
            raise ValueError(msg)
        self.max_samples = max_samples
        self.projection: Projection = projection
        self.output_dir = output_dir
        self.projector = projector
        self.seed = seed
        self._parts: list[dict[str, dict[str, Tensor]]] = []
        self._labels: list[Tensor] = []
        self._collected = 0

    def start(self, task: ScenarioPredictor, module: pl.LightningModule) -> None:
        """Forget the samples of an earlier test."""
        self._parts, self._labels, self._collected = [], [], 0

    def study(self, task: ScenarioPredictor, batch: Mapping[str, Any]) -> None:
        """Keep the representations of the first test samples, on the device."""
        wanted = self.max_samples - self._collected
        if wanted <= 0:
            return
        # the figures compare the modalities of the same samples
        batch = complete_samples(batch, task.modalities)
        with torch.no_grad():
            parts = task.representations(batch)
        self._parts.append(
            {
                modality: {
                    part: value[:wanted].float() for part, value in by_part.items()
                }
                for modality, by_part in parts.items()
            }
        )
        label = batch['label'][:wanted]
        self._labels.append(label)
        self._collected += label.shape[0]

    def report(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Draw the figure and fill the projector."""
        if not self._parts:
            return
        groups = part_groups(
            {
                part: {
                    m: torch.cat([p[m][part] for p in self._parts]).cpu()
                    for m in self._parts[0]
                }
                for part in next(iter(self._parts[0].values()))
            }
        )
        labels = torch.cat(self._labels).cpu()
        self._parts, self._labels = [], []
        task = check_predictor(module).task_type
        folder = output_folder(trainer, self.output_dir)
        figure = representation_figure(groups, labels, task, self.projection, self.seed)
        write_figure(
            figure,
            f'{folder}/test_representations.png',
            trainer,
            'test/representations',
        )
        writer = tensorboard_writer(trainer)
        if self.projector and writer is not None:
            add_embeddings(writer, groups, labels, trainer.global_step)


def part_groups(
    parts: Mapping[str, Mapping[str, Tensor]],
) -> list[tuple[str, dict[str, Tensor]]]:
    """Group the modalities of each representation part that share a space (the same width).

    Args:
        parts: Part name mapped to modality mapped to (N, d).

    Returns:
        (name, modality mapped to (N, d)) per group; the name is the part's, suffixed with its
        modalities when a part has groups of several widths.
    """
    groups: list[tuple[str, dict[str, Tensor]]] = []
    for part, by_modality in parts.items():
        widths: dict[int, dict[str, Tensor]] = {}
        for modality, values in by_modality.items():
            widths.setdefault(values.shape[1], {})[modality] = values
        for members in widths.values():
            name = part if len(widths) == 1 else f'{part}:{scenario_name(members)}'
            groups.append((name, members))
    return groups


def label_colours(labels: Tensor, task: TaskType) -> tuple[Tensor, bool]:
    """Turn labels into one colour value per sample.

    Args:
        labels: (N,) class indices or values, or (N, L) multi-hot.
        task: The task type.

    Returns:
        The values (N,) and whether they are categorical. Multi-label samples take their first positive
        label (-1 when none).
    """
    match task:
        case 'regression':
            return labels.float(), False
        case 'multilabel':
            positive = labels > 0
            first = positive.float().argmax(1)
            return torch.where(positive.any(1), first, -1), True
        case _:
            return labels.long(), True


def representation_figure(
    groups: Sequence[tuple[str, Mapping[str, Tensor]]],
    labels: Tensor,
    task: TaskType,
    projection: Projection,
    seed: int = 0,
) -> Figure:
    """Project each group of representations to 2-D: one row per group, by modality and by label.

    Args:
        groups: Output of :func:`part_groups` (on the CPU).
        labels: (N,) or (N, L) labels.
        task: The task type.
        projection: 'tsne' or 'pca'.
        seed: Random state of t-SNE.

    Returns:
        The figure.
    """
    colours, categorical = label_colours(labels, task)
    classes = sorted(set(colours.tolist())) if categorical else []
    figure = Figure(figsize=(10, 4.5 * len(groups)), layout='tight')
    for row, (title, members) in enumerate(groups):
        points = torch.cat(list(members.values())).double().numpy()
        x, y = project_2d(points, projection, seed).T
        owner = np.repeat(list(members), [v.shape[0] for v in members.values()])
        axes = figure.add_subplot(len(groups), 2, 2 * row + 1)
        for modality in members:
            chosen = owner == modality
            axes.scatter(x[chosen], y[chosen], s=6, alpha=0.6, label=modality)
        axes.legend(fontsize='small', markerscale=2)
        axes.set_title(f'{title}: by modality ({projection})')
        axes = figure.add_subplot(len(groups), 2, 2 * row + 2)
        axes.set_title(f'{title}: by label')
        repeated = colours.repeat(len(members)).numpy()
        if categorical and len(classes) <= MAX_LEGEND_CLASSES:
            for value in classes:
                chosen = repeated == value
                axes.scatter(x[chosen], y[chosen], s=6, alpha=0.6, label=str(value))
            axes.legend(fontsize='small', markerscale=2)
        else:
            scatter = axes.scatter(x, y, c=repeated, s=6, alpha=0.6, cmap='viridis')
            figure.colorbar(scatter, ax=axes)
    return figure


def add_embeddings(
    writer: Any,
    groups: Sequence[tuple[str, Mapping[str, Tensor]]],
    labels: Tensor,
    step: int,
) -> None:
    """Send each group of representations to the TensorBoard embedding projector.

    Args:
        writer: A ``SummaryWriter``.
        groups: Output of :func:`part_groups`.
        labels: (N,) or (N, L) labels.
        step: Global step.
    """
    label_text = [
        '|'.join(str(i) for i, v in enumerate(row) if v > 0)
        if isinstance(row, list)
        else str(row)
        for row in labels.tolist()
    ]
    for name, members in groups:
        metadata = [
            [modality, label_text[i], str(i)]
            for modality, values in members.items()
            for i in range(values.shape[0])
        ]
        writer.add_embedding(
            torch.cat(list(members.values())),
            metadata=metadata,
            metadata_header=['modality', 'label', 'sample'],
            global_step=step,
            tag=name,
        )
