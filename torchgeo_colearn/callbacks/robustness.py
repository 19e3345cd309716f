# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Robustness curves: test scores under input noise and missing time steps (opt-in)."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure

from ..batch import image_key, modalities_in, valid_key
from ..metrics import ScenarioScores
from ..presence import Presence
from ..scenarios import COUNT, Scenario, parse_scenarios, scenario_name
from ..trainers.interface import ScenarioPredictor
from .figures import output_folder, write_figure
from .study import TestStudy

#: The perturbations of the robustness study.
Perturbation: TypeAlias = Literal['noise', 'missing']


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


#: The function applying each perturbation: (batch, level, generator) -> perturbed batch.
PERTURBATIONS: dict[
    Perturbation,
    Callable[[Mapping[str, Any], float, torch.Generator | None], dict[str, Any]],
] = {'noise': add_noise, 'missing': drop_time_steps}

#: The x-axis label of each perturbation's curves.
LEVEL_LABELS: dict[Perturbation, str] = {
    'noise': 'noise std (channel std units)',
    'missing': 'share of missing time steps',
}


class RobustnessEvaluation(TestStudy):
    """Score every scenario on perturbed copies of the test batches: robustness curves (opt-in).

    Each noise standard deviation in *noise_levels* and each share of missing time steps in
    *missing_fractions* costs one more forward pass per test batch on a perturbed copy of the batch
    (:func:`add_noise`, :func:`drop_time_steps`); each scenario sees the perturbation on its own
    modalities; the missing-step curves cover the scenarios with a time-series modality. Level 0 is the
    clean score the task itself logged. At test end, in *output_dir* (default ``trainer.log_dir``):
    ``test_robustness.csv`` (perturbation, level, scenario, metrics) and
    ``test_robustness_<noise|missing>.png`` (also sent to TensorBoard).
    """

    def __init__(
        self,
        noise_levels: Sequence[float] = (),
        missing_fractions: Sequence[float] = (),
        scenarios: Sequence[str] | None = None,
        output_dir: str | None = None,
        figures: bool = True,
        seed: int = 0,
    ) -> None:
        """Initialize a new RobustnessEvaluation instance.

        Args:
            noise_levels: Standard deviations of the Gaussian noise, in units of the (normalised)
                channel standard deviation, e.g. ``[0.1, 0.5, 1.0]``.
            missing_fractions: Shares of time steps made missing in time-series modalities, each in
                [0, 1), e.g. ``[0.25, 0.5, 0.75]``.
            scenarios: Scenario names to perturb, e.g. ``['s1', 's2']``; None perturbs every scenario
                the task scores.
            output_dir: Where the files go; None = ``trainer.log_dir``.
            figures: Write the curves (files and TensorBoard).
            seed: Seed of the perturbations.

        Raises:
            ValueError: If a level or fraction is out of range, or no level is given.
        """
        super().__init__()
        if any(level < 0 for level in noise_levels):
            msg = f'noise_levels must be non-negative, got {list(noise_levels)}'
            raise ValueError(msg)
        if any(not 0 <= share < 1 for share in missing_fractions):
            msg = f'missing_fractions must lie in [0, 1), got {list(missing_fractions)}'
            raise ValueError(msg)
        self.levels: dict[Perturbation, list[float]] = {
            'noise': sorted(set(noise_levels) - {0.0}),
            'missing': sorted(set(missing_fractions) - {0.0}),
        }
        if not any(self.levels.values()):
            msg = 'RobustnessEvaluation needs at least one non-zero noise level or missing fraction'
            raise ValueError(msg)
        self.scenario_names = None if scenarios is None else list(scenarios)
        self.output_dir = output_dir
        self.figures = figures
        self.seed = seed
        #: The curves of the last test: one dict per (perturbation, level, scenario) with the metrics.
        self.rows: list[dict[str, Any]] = []
        self._scores: dict[tuple[Perturbation, float], ScenarioScores] = {}
        self._generator: torch.Generator | None = None

    def start(self, task: ScenarioPredictor, module: pl.LightningModule) -> None:
        """Reset the accumulators and the perturbations' random stream."""
        self._scores = {}
        self._generator = torch.Generator(device=module.device).manual_seed(self.seed)

    def _scenarios(self, task: ScenarioPredictor) -> list[Scenario]:
        """Return the scenarios to perturb.

        Args:
            task: The task.

        Returns:
            The chosen scenarios, or every scenario the task scores.
        """
        if self.scenario_names is None:
            return task.scenarios()
        return parse_scenarios(self.scenario_names, task.modalities)

    def study(self, task: ScenarioPredictor, batch: Mapping[str, Any]) -> None:
        """Score the perturbed copies of a test batch (device work only)."""
        scenarios = self._scenarios(task)
        time_series = set(time_series_modalities(batch))
        perturbed: dict[Perturbation, list[Scenario]] = {
            'noise': scenarios,
            'missing': [s for s in scenarios if time_series.intersection(s)],
        }
        # each scenario on the samples that hold its modalities
        presence = Presence.of(batch, modalities_in(batch))
        available = {
            scenario_name(s): mask
            for s in scenarios
            if (mask := presence.mask(s)) is not None
        }
        for kind, levels in self.levels.items():
            chosen = perturbed[kind]
            if not chosen:
                continue
            for level in levels:
                key = (kind, level)
                if key not in self._scores:
                    self._scores[key] = ScenarioScores(
                        [scenario_name(s) for s in chosen],
                        task.task_type,
                        task.num_classes,
                        task.num_labels,
                    ).to(batch['label'].device)
                copy = PERTURBATIONS[kind](batch, level, self._generator)
                with torch.no_grad():
                    predictions = task.predict_scenarios(copy, chosen)
                self._scores[key].update(
                    {scenario_name(s): p for s, p in predictions.items()},
                    batch['label'],
                    available,
                )

    def on_test_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Compute the curves (one transfer to the host per level).

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        if self.levels['missing'] and not any(k == 'missing' for k, _ in self._scores):
            rank_zero_warn(
                'RobustnessEvaluation: missing_fractions given, but the test batches have no '
                'time-series modality ((B, T, C) or (B, T, C, H, W)); no missing-step curve'
            )
        self.rows = []
        for (kind, level), scores in sorted(self._scores.items()):
            computed = scores.compute()
            for name, metrics in computed.items():
                values = {m: float(v) for m, v in metrics.items() if m != COUNT}
                self.rows.append(
                    {'perturbation': kind, 'level': level, 'scenario': name, **values}
                )
            scores.reset()

    def report(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Add the clean scores (level 0) and write the table and the curves."""
        if not self.rows:
            return
        logged = getattr(module, 'scenario_results', {}).get('test', {})
        clean = [
            {
                'perturbation': kind,
                'level': 0.0,
                'scenario': name,
                **{m: v for m, v in logged[name].items() if m != COUNT},
            }
            for kind in dict.fromkeys(row['perturbation'] for row in self.rows)
            for name in dict.fromkeys(
                row['scenario'] for row in self.rows if row['perturbation'] == kind
            )
            if name in logged
        ]
        self.rows = clean + self.rows
        folder = output_folder(trainer, self.output_dir)
        frame = pd.DataFrame(self.rows)
        frame.to_csv(f'{folder}/test_robustness.csv', index=False)
        if self.figures:
            for kind, curves in frame.groupby('perturbation', sort=False):
                write_figure(
                    robustness_figure(curves, LEVEL_LABELS[kind]),  # type: ignore[index]
                    f'{folder}/test_robustness_{kind}.png',
                    trainer,
                    f'test/robustness_{kind}',
                )


def robustness_figure(frame: pd.DataFrame, level_label: str) -> Figure:
    """Draw one robustness curve per scenario, one panel per metric.

    Args:
        frame: Rows of one perturbation: perturbation, level, scenario and one column per metric.
        level_label: The x-axis label.

    Returns:
        The figure.
    """
    metrics = [
        c for c in frame.columns if c not in ('perturbation', 'level', 'scenario')
    ]
    figure = Figure(figsize=(4 * len(metrics) + 1.5, 3.5), layout='constrained')
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), index + 1)
        for name, curve in frame.groupby('scenario', sort=False):
            curve = curve.sort_values('level')
            axes.plot(curve['level'], curve[metric], marker='o', label=str(name))
        axes.set_xlabel(level_label)
        axes.set_title(metric)
        axes.grid(alpha=0.3)
    figure.legend(
        *figure.axes[0].get_legend_handles_labels(),
        loc='outside right upper',
        fontsize='small',
    )
    return figure
