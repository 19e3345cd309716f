# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The benchmark's figure: one metric per inference scenario and method, with the spread over runs."""

import os
from collections.abc import Sequence

import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..scenarios import sort_scenario_names


def plot_summary(
    summary: pd.DataFrame, metric: str, methods: Sequence[str], path: str, title: str
) -> None:
    """Bar chart of one metric: scenarios on the x axis, one bar per method, std as error bars.

    Args:
        summary: Summary of :func:`~torchgeo_colearn.benchmark.aggregate.summarize`.
        metric: The metric plotted.
        methods: Method order.
        path: PNG file (its folder is created).
        title: Figure title.
    """
    rows = summary[summary['metric'] == metric]
    scenarios = sort_scenario_names(rows['scenario'])
    present = [m for m in methods if m in set(rows['method'])]
    figure = Figure(figsize=(max(6.0, 0.25 * len(scenarios) * len(present) + 3.0), 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(present))
    # Distinct colours for up to 20 methods (the default cycle repeats after 10).
    palette = colormaps['tab10' if len(present) <= 10 else 'tab20']
    for index, method in enumerate(present):
        chosen = rows[rows['method'] == method].set_index('scenario')
        shown = [s for s in scenarios if s in chosen.index]
        means = chosen['mean'].astype(float)
        spread = chosen['std'].astype(float).fillna(0.0)
        offset = (index - (len(present) - 1) / 2) * width
        axes.bar(
            [scenarios.index(s) + offset for s in shown],
            [means[s] for s in shown],
            width,
            yerr=[spread[s] for s in shown],
            capsize=2,
            label=method,
            color=palette(index % palette.N),
        )
    axes.set_xticks(range(len(scenarios)), scenarios)
    axes.set_xlabel('inference scenario (available modalities)')
    axes.set_ylabel(f'{metric} (mean ± std over runs)')
    axes.set_title(title)
    axes.axhline(0.0, color='black', linewidth=0.5)
    axes.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    figure.savefig(path, dpi=110)
