# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Missing-modality evaluation: every inference scenario scored in one pass over the data."""

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias, cast, runtime_checkable

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave
from rich.console import Console
from rich.table import Table
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ..batch import image_key, modalities_in, valid_key
from ..metrics import TaskType, build_metrics, metric_input
from ..trainers.base import Scenario, scenario_name

#: The stages the callback scores: validation (during fit and validate) and test.
Stage: TypeAlias = Literal['val', 'test']

#: The perturbations of the robustness study.
Perturbation: TypeAlias = Literal['noise', 'missing']

#: The 2-D projections of the representation figure.
Projection: TypeAlias = Literal['tsne', 'pca']

#: Up to this many classes, the representation figure gives each class a colour and a legend entry.
MAX_LEGEND_CLASSES = 20


@runtime_checkable
class ScenarioPredictor(Protocol):
    """What a task exposes to be scored per inference scenario.

    :class:`~torchgeo_colearn.trainers.base.MultiModalTask` implements it; any LightningModule with these
    members works with :class:`ScenarioEvaluation` and
    :class:`~torchgeo_colearn.callbacks.prediction.ScenarioPredictionWriter`.
    """

    @property
    def modalities(self) -> tuple[str, ...]:
        """The training modalities, in order."""
        ...

    @property
    def task_type(self) -> TaskType:
        """The prediction task: 'binary', 'multiclass', 'multilabel' or 'regression'."""
        ...

    @property
    def num_classes(self) -> int | None:
        """Number of classes (multiclass), else None."""
        ...

    @property
    def num_labels(self) -> int | None:
        """Number of labels (multilabel), else None."""
        ...

    def scenarios(self) -> list[Scenario]:
        """Return the default scenarios.

        Returns:
            Every single modality, plus every subset of two or more modalities if the task can fuse them.
        """
        ...

    def predict_scenarios(
        self, batch: dict[str, Tensor], scenarios: Sequence[Scenario]
    ) -> dict[Scenario, Tensor]:
        """Predict every scenario from one batch, running each modality's encoders once.

        Args:
            batch: A batch on the task's device, already normalised.
            scenarios: The scenarios to predict.

        Returns:
            Scenario mapped to its prediction in metric space: probability of the positive class (B,) for
            binary, class probabilities (B, K) for multiclass, label probabilities (B, L) for multilabel,
            values in target units (B,) for regression.
        """
        ...

    def representations(self, batch: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """Return the learned representations of a batch.

        Args:
            batch: A batch on the task's device, already normalised.

        Returns:
            Modality mapped to part name mapped to a (B, d) tensor, e.g. ``{'shared', 'specific',
            'unused'}`` for CoLearnTask or ``{'features'}`` for a fusion baseline.
        """
        ...


#: The members of :class:`ScenarioPredictor`, checked when a callback is set up.
PREDICTOR_MEMBERS = (
    'modalities',
    'task_type',
    'num_classes',
    'num_labels',
    'scenarios',
    'predict_scenarios',
    'representations',
)


def check_predictor(module: object) -> ScenarioPredictor:
    """Check that a module implements :class:`ScenarioPredictor`.

    Args:
        module: Usually the LightningModule a callback is attached to.

    Returns:
        The module, typed as a predictor.

    Raises:
        TypeError: If members of the interface are missing; the message lists them.
    """
    missing = [name for name in PREDICTOR_MEMBERS if not hasattr(module, name)]
    if missing:
        msg = (
            f'{type(module).__name__} does not implement the ScenarioPredictor interface '
            f'(torchgeo_colearn.callbacks.evaluation): missing {missing}'
        )
        raise TypeError(msg)
    return cast(ScenarioPredictor, module)


def parse_scenarios(names: Sequence[str], modalities: Sequence[str]) -> list[Scenario]:
    """Turn display names into scenarios of known modalities.

    Args:
        names: Display names, e.g. ``['s1', 's1+s2']``.
        modalities: The task's training modalities.

    Returns:
        One scenario per name, its modalities in training order.

    Raises:
        ValueError: If a name is empty, repeats a modality or names an unknown modality, or if a scenario
            is given twice.
    """
    scenarios: list[Scenario] = []
    for name in names:
        parts = name.split('+')
        unknown = [part for part in parts if part not in modalities]
        if unknown or len(set(parts)) != len(parts):
            msg = (
                f'scenario {name!r} must join distinct modalities of {list(modalities)} with "+" '
                f'(unknown: {unknown})'
            )
            raise ValueError(msg)
        scenario = tuple(m for m in modalities if m in parts)
        if scenario in scenarios:
            msg = f'scenario {name!r} is given twice'
            raise ValueError(msg)
        scenarios.append(scenario)
    return scenarios


class ScenarioScores(Metric):
    """Accumulate the predictions of several scenarios on the device, score them at the end.

    ``update`` only appends tensors, so it never synchronises the device with the host (torchmetrics'
    classification updates do: ``bincount`` and argument checks read values back). ``compute`` concatenates
    the predictions (gathered across processes as torchmetrics list states) and runs the metrics of
    :func:`~torchgeo_colearn.metrics.build_metrics` once per scenario. Memory: one (N, K) float32 tensor per
    scenario, N samples, K classes, labels or 1.
    """

    full_state_update = False

    def __init__(
        self,
        scenarios: Sequence[Scenario],
        task: TaskType,
        num_classes: int | None = None,
        num_labels: int | None = None,
    ) -> None:
        """Initialize a new ScenarioScores instance.

        Args:
            scenarios: The scenarios to score.
            task: The task type.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
        """
        super().__init__()
        self.scenarios = list(scenarios)
        self.task = task
        self.metrics = build_metrics(task, num_classes, num_labels)
        for metric in self.metrics.values(copy_state=False):
            # the predictions are gathered once, by this metric; the inner metrics must not gather again
            metric.sync_on_compute = False
        self.target: list[Tensor]
        self.add_state('target', default=[], dist_reduce_fx='cat')
        for index in range(len(self.scenarios)):
            self.add_state(f'preds_{index}', default=[], dist_reduce_fx='cat')

    def update(self, predictions: Mapping[Scenario, Tensor], target: Tensor) -> None:
        """Store the predictions of a batch.

        Args:
            predictions: Scenario mapped to its prediction in metric space (see
                :meth:`ScenarioPredictor.predict_scenarios`); extra scenarios are ignored.
            target: The ``label`` of the batch: (B,) class indices or values, or (B, L) multi-hot.

        Raises:
            KeyError: If a scenario has no prediction.
            ValueError: If a prediction and the target disagree on the batch size.
        """
        if self.task == 'regression':
            target = target.float()
        else:
            target = target.long()
        self.target.append(target)
        for index, scenario in enumerate(self.scenarios):
            if scenario not in predictions:
                msg = (
                    f'predict_scenarios returned no prediction for scenario '
                    f'{scenario_name(scenario)!r}; got {[scenario_name(s) for s in predictions]}'
                )
                raise KeyError(msg)
            prediction = predictions[scenario]
            if prediction.shape[0] != target.shape[0]:
                msg = (
                    f'prediction of scenario {scenario_name(scenario)!r} has shape '
                    f'{tuple(prediction.shape)}, target has shape {tuple(target.shape)}'
                )
                raise ValueError(msg)
            getattr(self, f'preds_{index}').append(prediction.detach().float())

    def compute(self) -> dict[str, dict[str, Tensor]]:
        """Score every scenario.

        Returns:
            Scenario display name mapped to metric name mapped to a scalar tensor.
        """
        target = dim_zero_cat(self.target)
        scores: dict[str, dict[str, Tensor]] = {}
        for index, scenario in enumerate(self.scenarios):
            preds = dim_zero_cat(getattr(self, f'preds_{index}'))
            self.metrics.reset()
            self.metrics.update(metric_input(self.task, preds), target)
            scores[scenario_name(scenario)] = self.metrics.compute()
        self.metrics.reset()
        return scores


def scores_to_floats(
    scores: Mapping[str, Mapping[str, Tensor]],
) -> dict[str, dict[str, float]]:
    """Read scores back to the host with a single transfer.

    Args:
        scores: Scenario mapped to metric mapped to a scalar tensor, as returned by
            :meth:`ScenarioScores.compute`.

    Returns:
        The same nesting with Python floats.
    """
    keys = [(s, m) for s, metrics in scores.items() for m in metrics]
    if not keys:
        return {}
    values = torch.stack([scores[s][m].float().reshape(()) for s, m in keys]).tolist()
    floats: dict[str, dict[str, float]] = {s: {} for s in scores}
    for (s, m), value in zip(keys, values, strict=True):
        floats[s][m] = value
    return floats


def time_series_modalities(batch: Mapping[str, Any]) -> list[str]:
    """List the time-series modalities of a batch.

    Args:
        batch: A batch dict.

    Returns:
        The modalities whose batch tensor is (B, T, C) or (B, T, C, H, W).
    """
    return [m for m in modalities_in(batch) if batch[image_key(m)].ndim in (3, 5)]


def add_noise(
    batch: Mapping[str, Any], std: float, generator: torch.Generator | None = None
) -> dict[str, Any]:
    """Add Gaussian noise to every modality of a normalised batch.

    Args:
        batch: A normalised batch (unit-variance channels).
        std: Standard deviation of the noise, in units of the channel standard deviation.
        generator: Random generator on the batch's device.

    Returns:
        A shallow copy of *batch* with noisy ``image_<modality>`` tensors.
    """
    noisy = dict(batch)
    for modality in modalities_in(batch):
        x = batch[image_key(modality)]
        noise = torch.randn(
            x.shape, generator=generator, device=x.device, dtype=x.dtype
        )
        noisy[image_key(modality)] = x + std * noise
    return noisy


def drop_time_steps(
    batch: Mapping[str, Any], fraction: float, generator: torch.Generator | None = None
) -> dict[str, Any]:
    """Mark a share of the valid time steps of every time-series modality as missing.

    Per sample, ``round(fraction * n_valid)`` of its valid steps, drawn at random, become missing (at
    least one valid step is kept): their values are set to 0, the channel mean after z-scoring, as the
    normaliser does for NaN, and ``valid_<modality>`` marks them False. Other modalities are unchanged.

    Args:
        batch: A normalised batch.
        fraction: Share of the valid time steps to drop, in [0, 1).
        generator: Random generator on the batch's device.

    Returns:
        A shallow copy of *batch*.
    """
    dropped = dict(batch)
    for modality in time_series_modalities(batch):
        x = batch[image_key(modality)]
        size, steps = x.shape[:2]
        valid = batch.get(valid_key(modality))
        if valid is None:
            valid = torch.ones(size, steps, dtype=torch.bool, device=x.device)
        scores = torch.rand(size, steps, generator=generator, device=x.device)
        # invalid steps sort last, so the ranks 0 .. n_valid - 1 go to the valid steps
        rank = scores.masked_fill(~valid, 2.0).argsort(1).argsort(1)
        n_valid = valid.sum(1, keepdim=True)
        n_drop = torch.minimum((fraction * n_valid).round().long(), n_valid - 1)
        keep = valid & (rank >= n_drop)
        dropped[image_key(modality)] = x * keep.view(size, steps, *[1] * (x.ndim - 2))
        dropped[valid_key(modality)] = keep
    return dropped


#: The function applying each perturbation of the robustness study: (batch, level, generator) -> batch.
PERTURBATIONS: dict[
    Perturbation,
    Callable[[Mapping[str, Any], float, torch.Generator | None], dict[str, Any]],
] = {'noise': add_noise, 'missing': drop_time_steps}


def pca_2d(x: Tensor) -> Tensor:
    """Project points on their first two principal components.

    Args:
        x: Points, shape (N, d).

    Returns:
        Coordinates, shape (N, 2), float32; signs fixed so that each component's largest loading is
        positive; zero-padded when d < 2.
    """
    centred = x.double() - x.double().mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    components = vh[:2]
    signs = components.gather(1, components.abs().argmax(1, keepdim=True)).sign()
    coords = centred @ (components * signs).T
    padding = coords.new_zeros(coords.shape[0], 2 - coords.shape[1])
    return torch.cat([coords, padding], 1).float()


def _squared_distances(x: Tensor) -> Tensor:
    """Compute squared Euclidean distances between all rows.

    Args:
        x: Points, shape (N, d).

    Returns:
        Distances, shape (N, N), clamped at 0 against rounding.
    """
    norms = x.square().sum(1)
    return (norms[:, None] + norms[None, :] - 2 * x @ x.T).clamp(min=0)


def _conditional_probabilities(distances: Tensor, perplexity: float) -> Tensor:
    """Find per-point Gaussian kernels of a given perplexity (bisection on the precision).

    Args:
        distances: Squared pairwise distances, (N, N), float64.
        perplexity: Target perplexity.

    Returns:
        Row-stochastic conditional probabilities p(j | i), (N, N), zero diagonal.
    """
    n = distances.shape[0]
    target_entropy = math.log(perplexity)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=distances.device)
    # shifting each row by its nearest-neighbour distance keeps exp() away from underflow
    nearest = distances.masked_fill(~off_diagonal, math.inf).min(1, keepdim=True).values
    shifted = distances - nearest
    low = torch.zeros_like(nearest)
    high = torch.full_like(nearest, math.inf)
    beta = torch.ones_like(nearest)

    def kernel_of(beta: Tensor) -> Tensor:
        return torch.exp(-shifted * beta) * off_diagonal

    for _ in range(64):
        kernel = kernel_of(beta)
        total = kernel.sum(1, keepdim=True)
        entropy = (
            torch.log(total) + beta * (shifted * kernel).sum(1, keepdim=True) / total
        )
        too_flat = entropy > target_entropy
        low = torch.where(too_flat, beta, low)
        high = torch.where(too_flat, high, beta)
        beta = torch.where(torch.isinf(high), beta * 2, (low + high) / 2)
    kernel = kernel_of(beta)
    return kernel / kernel.sum(1, keepdim=True)


def tsne_2d(
    x: Tensor, perplexity: float = 30.0, iterations: int = 500, seed: int = 0
) -> Tensor:
    """Embed points in 2-D with exact t-SNE (van der Maaten and Hinton, 2008).

    O(N^2) memory and time per iteration: meant for the few thousand points of a figure. PCA
    initialisation, early exaggeration 12 for the first quarter of the iterations, momentum 0.5 then 0.8,
    adaptive gains and learning rate max(N / 48, 50).

    Args:
        x: Points, shape (N, d).
        perplexity: Effective number of neighbours; lowered to (N - 1) / 3 for small N.
        iterations: Gradient steps.
        seed: Seed of the jitter added to the PCA initialisation.

    Returns:
        Coordinates, shape (N, 2), float32, on the device of *x*.
    """
    points = x.detach().double()
    n = points.shape[0]
    if n < 4:
        return pca_2d(points)
    perplexity = min(perplexity, (n - 1) / 3)
    conditional = _conditional_probabilities(_squared_distances(points), perplexity)
    joint = ((conditional + conditional.T) / (2 * n)).clamp(min=1e-12).float()
    generator = torch.Generator(device=points.device).manual_seed(seed)
    init = pca_2d(points)
    y = init / init[:, 0].std().clamp(min=1e-12) * 1e-4
    y = y + 1e-6 * torch.randn(n, 2, generator=generator, device=y.device)
    velocity = torch.zeros_like(y)
    gains = torch.ones_like(y)
    learning_rate = max(n / 48, 50.0)
    exaggeration_steps = iterations // 4
    exaggerated = 12 * joint
    for step in range(iterations):
        early = step < exaggeration_steps
        momentum = 0.5 if early else 0.8
        kernel = 1 / (1 + _squared_distances(y))
        kernel.fill_diagonal_(0)
        weights = ((exaggerated if early else joint) - kernel / kernel.sum()) * kernel
        gradient = 4 * (weights.sum(1, keepdim=True) * y - weights @ y)
        same_sign = (gradient > 0) == (velocity > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp(min=0.01)
        velocity = momentum * velocity - learning_rate * gains * gradient
        y = y + velocity
        y = y - y.mean(0)
    return y


class ScenarioEvaluation(Callback):
    """Score every inference scenario at the end of validation and test, in one pass over the data.

    Per batch, the task's :meth:`~ScenarioPredictor.predict_scenarios` runs each modality's encoders once
    and returns one prediction per scenario (each single modality, and modality subsets for tasks that
    fuse); the predictions accumulate on the device (:class:`ScenarioScores`) and are scored at epoch end
    with the metrics of :func:`~torchgeo_colearn.metrics.build_metrics`. Nothing is read back to the host
    during the loop.

    Outputs:

    * logged scalars ``<stage>/<scenario>/<metric>`` (stage 'val' or 'test'), e.g.
      ``test/s1+s2/AverageAccuracy``, available to every logger, checkpoint and early-stopping callback;
    * at test end, in *output_dir* (default ``trainer.log_dir``): ``test_scenarios.{csv,json,md}`` (the
      scenario x metric table), ``test_scenarios.png`` (bar charts), ``test_representations.png``
      (2-D t-SNE or PCA of each representation part, coloured by modality and by label),
      ``test_robustness.csv`` and ``test_robustness_<noise|missing>.png`` (robustness curves); the table is
      printed in the terminal;
    * with a TensorBoard logger: the figures and an embedding-projector entry per representation part.

    Robustness (test only): each noise standard deviation in *noise_levels* and each share of missing
    time steps in *missing_fractions* is one more forward pass per batch on a perturbed copy of the batch
    (:func:`add_noise`, :func:`drop_time_steps`); each scenario sees the perturbation on its own
    modalities. Level 0 is the clean score.
    """

    def __init__(
        self,
        scenarios: Sequence[str] | None = None,
        stages: Sequence[Stage] = ('val', 'test'),
        output_dir: str | None = None,
        print_table: bool = True,
        figures: bool = True,
        max_embedding_samples: int = 200,
        projection: Projection = 'tsne',
        noise_levels: Sequence[float] = (),
        missing_fractions: Sequence[float] = (),
        seed: int = 0,
    ) -> None:
        """Initialize a new ScenarioEvaluation instance.

        Args:
            scenarios: Scenario display names, e.g. ``['s1', 's2', 's1+s2']``; None scores the task's
                default :meth:`~ScenarioPredictor.scenarios`.
            stages: When to score: 'val' (every validation epoch, also during fit) and/or 'test'; an
                empty list turns the callback off (for tasks without the interface).
            output_dir: Where the test files go; None = ``trainer.log_dir``.
            print_table: Print the test table in the terminal at test end.
            figures: Write figures (files and TensorBoard) at test end.
            max_embedding_samples: Number of test samples (the first ones) whose representations are
                projected and sent to the TensorBoard projector; 0 turns this off.
            projection: 2-D projection of the representation figure.
            noise_levels: Standard deviations of the Gaussian noise of the robustness study, in units of
                the (normalised) channel standard deviation, e.g. ``[0.1, 0.5, 1.0]``.
            missing_fractions: Shares of time steps made missing in time-series modalities, each in
                [0, 1), e.g. ``[0.25, 0.5, 0.75]``.
            seed: Seed of the robustness perturbations.

        Raises:
            ValueError: If a stage, level, fraction or projection is invalid.
        """
        super().__init__()
        unknown_stages = set(stages) - {'val', 'test'}
        if unknown_stages:
            msg = f"stages must be 'val' and/or 'test', got {sorted(unknown_stages)}"
            raise ValueError(msg)
        if any(level < 0 for level in noise_levels):
            msg = f'noise_levels must be non-negative, got {list(noise_levels)}'
            raise ValueError(msg)
        if any(not 0 <= share < 1 for share in missing_fractions):
            msg = f'missing_fractions must lie in [0, 1), got {list(missing_fractions)}'
            raise ValueError(msg)
        if max_embedding_samples < 0:
            msg = f'max_embedding_samples must be >= 0, got {max_embedding_samples}'
            raise ValueError(msg)
        if projection not in ('tsne', 'pca'):
            msg = f"projection must be 'tsne' or 'pca', got {projection!r}"
            raise ValueError(msg)
        self.scenario_names = None if scenarios is None else list(scenarios)
        self.stages = tuple(stages)
        self.output_dir = output_dir
        self.print_table_at_end = print_table
        self.figures = figures
        self.max_embedding_samples = max_embedding_samples
        self.projection = projection
        self.levels: dict[Perturbation, list[float]] = {
            'noise': sorted(set(noise_levels) - {0.0}),
            'missing': sorted(set(missing_fractions) - {0.0}),
        }
        self.seed = seed
        self.scenarios: list[Scenario] = []
        self.results: dict[Stage, dict[str, dict[str, float]]] = {}
        self.robustness: list[dict[str, Any]] = []
        self._scores: dict[Stage, ScenarioScores] = {}
        self._perturbed: dict[tuple[Perturbation, float], ScenarioScores] = {}
        self._representations: list[dict[str, dict[str, Tensor]]] = []
        self._labels: list[Tensor] = []
        self._collected = 0
        self._generator: torch.Generator | None = None

    # set-up ---------------------------------------------------------------------------------------

    def setup(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str
    ) -> None:
        """Check the task and resolve the scenarios.

        Args:
            trainer: The trainer.
            pl_module: The task; must implement :class:`ScenarioPredictor` unless *stages* is empty.
            stage: Either 'fit', 'validate', 'test' or 'predict'.
        """
        if not self.stages:
            return
        task = check_predictor(pl_module)
        self.scenarios = (
            list(task.scenarios())
            if self.scenario_names is None
            else parse_scenarios(self.scenario_names, task.modalities)
        )
        self._scores = {
            stage_: self._new_scores(task, self.scenarios) for stage_ in self.stages
        }

    @staticmethod
    def _new_scores(
        task: ScenarioPredictor, scenarios: Sequence[Scenario]
    ) -> ScenarioScores:
        """Build the score accumulator of some scenarios.

        Args:
            task: The task.
            scenarios: The scenarios.

        Returns:
            A fresh accumulator on the task's device.
        """
        scores = ScenarioScores(
            scenarios, task.task_type, task.num_classes, task.num_labels
        )
        return scores.to(cast(pl.LightningModule, task).device)

    def _start(self, stage: Stage, pl_module: pl.LightningModule) -> None:
        """Reset the accumulators of a stage.

        Args:
            stage: 'val' or 'test'.
            pl_module: The task.
        """
        if stage not in self._scores:
            return
        self._scores[stage] = self._scores[stage].to(pl_module.device)
        self._scores[stage].reset()
        if stage == 'test':
            self._perturbed = {}
            self._representations = []
            self._labels = []
            self._collected = 0
            self._generator = torch.Generator(device=pl_module.device).manual_seed(
                self.seed
            )

    def on_validation_epoch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Reset the validation scores.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        self._start('val', pl_module)

    def on_test_epoch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Reset the test scores, robustness scores and representations.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        self._start('test', pl_module)

    # per batch: device work only ------------------------------------------------------------------

    def _accumulate(
        self, stage: Stage, pl_module: pl.LightningModule, batch: dict[str, Any]
    ) -> None:
        """Predict every scenario of a batch and store the predictions (no host sync).

        Args:
            stage: 'val' or 'test'.
            pl_module: The task.
            batch: The batch, on the device and normalised.

        Raises:
            KeyError: If the batch has no ``label`` or lacks a modality of a scenario.
        """
        if stage not in self._scores:
            return
        if 'label' not in batch:
            msg = f'ScenarioEvaluation needs the batch key "label" (keys: {sorted(batch)})'
            raise KeyError(msg)
        present = set(modalities_in(batch))
        for scenario in self.scenarios:
            if not present.issuperset(scenario):
                msg = (
                    f'scenario {scenario_name(scenario)!r} needs modalities '
                    f'{sorted(set(scenario) - present)} missing from the {stage} batch; pass '
                    f'ScenarioEvaluation(scenarios=[...]) with the available ones only'
                )
                raise KeyError(msg)
        task = check_predictor(pl_module)
        with torch.no_grad():
            self._scores[stage].update(
                task.predict_scenarios(batch, self.scenarios), batch['label']
            )
            if stage == 'test':
                self._accumulate_robustness(task, batch)
                self._collect_representations(task, batch)

    def _accumulate_robustness(
        self, task: ScenarioPredictor, batch: dict[str, Any]
    ) -> None:
        """Score the perturbed copies of a batch.

        Args:
            task: The task.
            batch: The clean batch.
        """
        if not self.levels['missing'] and not self.levels['noise']:
            return
        time_series = set(time_series_modalities(batch))
        perturbed_scenarios: dict[Perturbation, list[Scenario]] = {
            'noise': self.scenarios,
            'missing': [s for s in self.scenarios if time_series.intersection(s)],
        }
        for kind, levels in self.levels.items():
            scenarios = perturbed_scenarios[kind]
            if not scenarios:
                continue
            for level in levels:
                key = (kind, level)
                if key not in self._perturbed:
                    self._perturbed[key] = self._new_scores(task, scenarios)
                copy = PERTURBATIONS[kind](batch, level, self._generator)
                self._perturbed[key].update(
                    task.predict_scenarios(copy, scenarios), batch['label']
                )

    def _collect_representations(
        self, task: ScenarioPredictor, batch: dict[str, Any]
    ) -> None:
        """Keep the representations of the first test samples, on the device.

        Args:
            task: The task.
            batch: The batch.
        """
        wanted = self.max_embedding_samples - self._collected
        if wanted <= 0:
            return
        parts = task.representations(batch)
        self._representations.append(
            {
                modality: {
                    part: value[:wanted].detach().float()
                    for part, value in by_part.items()
                }
                for modality, by_part in parts.items()
            }
        )
        label = batch['label'][:wanted]
        self._labels.append(label)
        self._collected += label.shape[0]

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Accumulate the scenario predictions of a validation batch.

        Args:
            trainer: The trainer.
            pl_module: The task.
            outputs: Ignored.
            batch: The batch, on the device and normalised.
            batch_idx: Ignored.
            dataloader_idx: Ignored (all validation dataloaders are pooled).
        """
        if not trainer.sanity_checking:
            self._accumulate('val', pl_module, batch)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Accumulate the scenario (and robustness) predictions of a test batch.

        Args:
            trainer: The trainer.
            pl_module: The task.
            outputs: Ignored.
            batch: The batch, on the device and normalised.
            batch_idx: Ignored.
            dataloader_idx: Ignored (all test dataloaders are pooled).
        """
        self._accumulate('test', pl_module, batch)

    # epoch end: compute, log, report ------------------------------------------------------------

    def _finish(self, stage: Stage, pl_module: pl.LightningModule) -> None:
        """Compute and log the scores of a stage.

        Args:
            stage: 'val' or 'test'.
            pl_module: The task.
        """
        scores = self._scores.get(stage)
        if scores is None or scores.update_count == 0:
            return
        computed = scores.compute()
        pl_module.log_dict(
            {
                f'{stage}/{name}/{metric}': value
                for name, metrics in computed.items()
                for metric, value in metrics.items()
            }
        )
        self.results[stage] = scores_to_floats(computed)
        scores.reset()

    def on_validation_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Compute and log the validation scores.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        if not trainer.sanity_checking:
            self._finish('val', pl_module)

    def on_test_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Compute and log the test scores and the robustness scores.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        self._finish('test', pl_module)
        self.robustness = []
        if 'test' not in self.results:
            return
        if self.levels['missing'] and not any(
            kind == 'missing' for kind, _ in self._perturbed
        ):
            rank_zero_warn(
                'ScenarioEvaluation: missing_fractions given, but the test batches have no time-series '
                'modality ((B, T, C) or (B, T, C, H, W)); no missing-step curve'
            )
        for (kind, level), scores in sorted(self._perturbed.items()):
            for name, metrics in scores_to_floats(scores.compute()).items():
                self.robustness.append(
                    {'perturbation': kind, 'level': level, 'scenario': name, **metrics}
                )
            scores.reset()
        kinds = {row['perturbation'] for row in self.robustness}
        clean = [
            {'perturbation': kind, 'level': 0.0, 'scenario': name, **metrics}
            for kind in sorted(kinds)
            for name, metrics in self.results['test'].items()
            if any(
                r['scenario'] == name and r['perturbation'] == kind
                for r in self.robustness
            )
        ]
        self.robustness = clean + self.robustness

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the result files and figures, and print the table.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        output_dir = self.output_dir or trainer.log_dir or trainer.default_root_dir
        if 'test' not in self.results or not trainer.is_global_zero:
            return
        os.makedirs(output_dir, exist_ok=True)
        task = check_predictor(pl_module)
        self.write_tables(output_dir, 'test', task.task_type)
        writer = _tensorboard(trainer)
        step = trainer.global_step
        if self.robustness:
            pd.DataFrame(self.robustness).to_csv(
                os.path.join(output_dir, 'test_robustness.csv'), index=False
            )
        representations = self._gather_representations()
        self._representations, self._labels = [], []
        if representations is not None and writer is not None:
            _add_embeddings(writer, *representations, step)
        if self.figures:
            figures = {'scenarios': _bar_figure(self.results['test'])}
            for kind in ('noise', 'missing'):
                rows = [r for r in self.robustness if r['perturbation'] == kind]
                if rows:
                    figures[f'robustness_{kind}'] = _robustness_figure(rows, kind)
            if representations is not None:
                figures['representations'] = _representation_figure(
                    *representations, task.task_type, self.projection, self.seed
                )
            for name, figure in figures.items():
                image = _render(figure)
                imsave(os.path.join(output_dir, f'test_{name}.png'), image)
                if writer is not None:
                    writer.add_image(
                        f'test/{name}', image[..., :3], step, dataformats='HWC'
                    )
        if self.print_table_at_end:
            self.print_table('test')

    # reports --------------------------------------------------------------------------------------

    def table(self, stage: Stage = 'test') -> pd.DataFrame:
        """Return the scores of the last epoch of a stage as a table.

        Args:
            stage: 'val' or 'test'.

        Returns:
            One row per scenario (index ``scenario``), one column per metric.

        Raises:
            KeyError: If the stage has not been scored yet.
        """
        if stage not in self.results:
            msg = f'no {stage} scores yet (scored stages: {sorted(self.results)})'
            raise KeyError(msg)
        frame = pd.DataFrame.from_dict(self.results[stage], orient='index')
        frame.index.name = 'scenario'
        return frame

    def write_tables(self, output_dir: str, stage: Stage, task: TaskType) -> None:
        """Write ``<stage>_scenarios.csv``, ``.json`` and ``.md``.

        Args:
            output_dir: Target folder.
            stage: 'val' or 'test'.
            task: The task type, recorded in the JSON file.
        """
        frame = self.table(stage)
        stem = os.path.join(output_dir, f'{stage}_scenarios')
        frame.to_csv(f'{stem}.csv')
        with open(f'{stem}.json', 'w') as file:
            json.dump(
                {
                    'stage': stage,
                    'task': task,
                    'metrics': list(frame.columns),
                    'scenarios': self.results[stage],
                },
                file,
                indent=2,
            )
        header = ['scenario', *frame.columns]
        lines = [
            '| ' + ' | '.join(header) + ' |',
            '|' + '|'.join(['---'] + ['---:'] * len(frame.columns)) + '|',
        ]
        for name, row in frame.iterrows():
            values = ' | '.join(f'{v:.4f}' for v in row)
            lines.append(f'| {name} | {values} |')
        with open(f'{stem}.md', 'w') as file:
            file.write('\n'.join(lines) + '\n')

    def print_table(self, stage: Stage = 'test') -> None:
        """Print the scenario x metric table of a stage in the terminal.

        Args:
            stage: 'val' or 'test'.
        """
        frame = self.table(stage)
        table = Table(title=f'{stage}: scores per inference scenario')
        table.add_column('scenario')
        for metric in frame.columns:
            table.add_column(str(metric), justify='right')
        for name, row in frame.iterrows():
            table.add_row(str(name), *(f'{v:.4f}' for v in row))
        Console().print(table)

    def _gather_representations(
        self,
    ) -> tuple[dict[str, dict[str, Tensor]], Tensor] | None:
        """Concatenate the collected representations (still on the device).

        Returns:
            Part name mapped to modality mapped to (N, d), and the labels (N,) or (N, L); None if
            nothing was collected.
        """
        if not self._representations:
            return None
        parts: dict[str, dict[str, Tensor]] = {}
        for modality in self._representations[0]:
            for part in self._representations[0][modality]:
                parts.setdefault(part, {})[modality] = torch.cat(
                    [r[modality][part] for r in self._representations]
                )
        return parts, torch.cat(self._labels)


def _tensorboard(trainer: pl.Trainer) -> Any:
    """Return the SummaryWriter of the trainer's first TensorBoard logger, if any.

    Args:
        trainer: The trainer.

    Returns:
        A ``torch.utils.tensorboard.SummaryWriter`` or None.
    """
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _render(figure: Figure) -> np.ndarray:
    """Draw a figure once into pixels.

    Args:
        figure: The figure.

    Returns:
        RGBA pixels, uint8, shape (H, W, 4).
    """
    canvas: Any = FigureCanvasAgg(figure)  # matplotlib leaves draw() untyped
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def _bar_figure(results: Mapping[str, Mapping[str, float]]) -> Figure:
    """Draw one bar chart per metric, one bar per scenario.

    Args:
        results: Scenario mapped to metric mapped to value.

    Returns:
        The figure.
    """
    names = list(results)
    metrics = list(next(iter(results.values())))
    figure = Figure(figsize=(4 * len(metrics), 3 + 0.15 * len(names)), layout='tight')
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), index + 1)
        values = [results[name][metric] for name in names]
        # one colour per number of modalities: single modalities, pairs, ...
        colours = [f'C{name.count("+")}' for name in names]
        axes.bar(range(len(names)), values, color=colours)
        axes.set_xticks(range(len(names)), names, rotation=45, ha='right')
        axes.set_title(metric)
        axes.grid(axis='y', alpha=0.3)
    return figure


def _robustness_figure(rows: Sequence[Mapping[str, Any]], kind: Perturbation) -> Figure:
    """Draw one robustness curve per scenario, one panel per metric.

    Args:
        rows: Rows of one perturbation: perturbation, level, scenario and one key per metric.
        kind: The perturbation.

    Returns:
        The figure.
    """
    frame = pd.DataFrame(rows)
    metrics = [
        c for c in frame.columns if c not in ('perturbation', 'level', 'scenario')
    ]
    figure = Figure(figsize=(4 * len(metrics) + 1.5, 3.5), layout='constrained')
    label = {
        'noise': 'noise std (channel std units)',
        'missing': 'share of missing time steps',
    }
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), index + 1)
        for name, curve in frame.groupby('scenario', sort=False):
            curve = curve.sort_values('level')
            axes.plot(curve['level'], curve[metric], marker='o', label=str(name))
        axes.set_xlabel(label[kind])
        axes.set_title(metric)
        axes.grid(alpha=0.3)
    figure.legend(
        *figure.axes[0].get_legend_handles_labels(),
        loc='outside right upper',
        fontsize='small',
    )
    return figure


def _label_colours(labels: Tensor, task: TaskType) -> tuple[Tensor, bool]:
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


def _part_groups(
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
            name = part if len(widths) == 1 else f'{part}:{"+".join(members)}'
            groups.append((name, members))
    return groups


def _representation_figure(
    parts: Mapping[str, Mapping[str, Tensor]],
    labels: Tensor,
    task: TaskType,
    projection: Projection,
    seed: int,
) -> Figure:
    """Project each representation part of all modalities jointly to 2-D.

    One row per part (per group of modalities with the same width, since only those share a space), two
    panels: coloured by modality, coloured by label. Aligned shared parts mix the modalities; separated
    specific parts form one cloud per modality.

    Args:
        parts: Part name mapped to modality mapped to (N, d).
        labels: (N,) or (N, L) labels.
        task: The task type.
        projection: 't-sne' or 'pca'.
        seed: Seed of t-SNE.

    Returns:
        The figure.
    """
    groups = _part_groups(parts)
    colours, categorical = _label_colours(labels.cpu(), task)
    classes = sorted(set(colours.tolist())) if categorical else []
    figure = Figure(figsize=(10, 4.5 * len(groups)), layout='tight')
    for row, (title, members) in enumerate(groups):
        points = torch.cat(list(members.values()))
        coords = tsne_2d(points, seed=seed) if projection == 'tsne' else pca_2d(points)
        coords = coords.cpu()
        modality_axes = figure.add_subplot(len(groups), 2, 2 * row + 1)
        modality = [m for m, values in members.items() for _ in range(values.shape[0])]
        _scatter_by(modality_axes, coords, modality, list(members))
        modality_axes.set_title(f'{title}: by modality ({projection})')
        label_axes = figure.add_subplot(len(groups), 2, 2 * row + 2)
        label_axes.set_title(f'{title}: by label')
        repeated = colours.repeat(len(members))
        if categorical and len(classes) <= MAX_LEGEND_CLASSES:
            keys = [str(c) for c in repeated.tolist()]
            _scatter_by(label_axes, coords, keys, [str(c) for c in classes])
        else:
            scatter = label_axes.scatter(
                coords[:, 0], coords[:, 1], c=repeated, s=6, alpha=0.6, cmap='viridis'
            )
            figure.colorbar(scatter, ax=label_axes)
    return figure


def _scatter_by(
    axes: Any, coords: Tensor, keys: Sequence[str], order: Sequence[str]
) -> None:
    """Scatter points in one colour per key, with a legend.

    Args:
        axes: Matplotlib axes.
        coords: (N, 2) coordinates.
        keys: The key of each point.
        order: The keys in legend order.
    """
    for key in order:
        mask = torch.tensor([k == key for k in keys])
        axes.scatter(coords[mask, 0], coords[mask, 1], s=6, alpha=0.6, label=key)
    axes.legend(fontsize='small', markerscale=2)


def _add_embeddings(
    writer: Any, parts: Mapping[str, Mapping[str, Tensor]], labels: Tensor, step: int
) -> None:
    """Send each representation part to the TensorBoard embedding projector.

    Args:
        writer: A ``SummaryWriter``.
        parts: Part name mapped to modality mapped to (N, d).
        labels: (N,) or (N, L) labels.
        step: Global step.
    """
    label_text = [
        '|'.join(str(i) for i, v in enumerate(row) if v > 0)
        if isinstance(row, list)
        else str(row)
        for row in labels.cpu().tolist()
    ]
    for name, members in _part_groups(parts):
        metadata = [
            [modality, label_text[i], str(i)]
            for modality, values in members.items()
            for i in range(values.shape[0])
        ]
        writer.add_embedding(
            torch.cat(list(members.values())).cpu(),
            metadata=metadata,
            metadata_header=['modality', 'label', 'sample'],
            global_step=step,
            tag=name,
        )
