# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Report the scenario scores a task computed: tables, terminal and a figure at test end."""

from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import pandas as pd
from lightning.pytorch.callbacks import Callback
from matplotlib.figure import Figure

from ..scenarios import COUNT, scenario_modalities, scores_by_scenario
from ..tables import print_table, write_table
from .figures import output_folder, write_figure


class ScenarioReport(Callback):
    """Write and print the per-scenario test scores that the task logged.

    The task scores every inference scenario itself, in its test step, and logs
    ``test/<scenario>/<metric>`` (see :class:`~torchgeo_colearn.trainers.MultiModalTask`); this callback
    only reads those logged values at the end of ``test`` and writes, in *output_dir* (default
    ``trainer.log_dir``):

    * ``test_scenarios.csv``, ``.json`` and ``.md``: the scenario x metric table, with the number of
      samples scored per scenario;
    * ``test_scenarios.png``: one bar chart per metric (also sent to TensorBoard with ``add_figure``).

    The table is printed in the terminal when *print_table* is set (``colearn test`` prints it below
    Lightning's own results).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        print_table: bool = True,
        figures: bool = True,
        scenarios: Sequence[str] | None = None,
    ) -> None:
        """Initialize a new ScenarioReport instance.

        Args:
            output_dir: Where the files go; None = ``trainer.log_dir``.
            print_table: Print the table in the terminal at test end.
            figures: Write the bar chart (file and TensorBoard).
            scenarios: Scenario names to report, in this order, e.g. ``['s1', 's2']``; None reports every
                scenario the task scored.
        """
        super().__init__()
        self.output_dir = output_dir
        self.print_table_at_end = print_table
        self.figures = figures
        self.scenarios = None if scenarios is None else list(scenarios)
        self.results: dict[str, dict[str, float]] = {}

    def table(self) -> pd.DataFrame:
        """Return the last test scores as a table.

        Returns:
            One row per scenario (index ``scenario``), one column per metric, then ``count``.

        Raises:
            KeyError: If nothing has been tested yet, or a chosen scenario was not scored.
        """
        if not self.results:
            msg = 'no test scores yet: run trainer.test() with a task that logs test/<scenario>/<metric>'
            raise KeyError(msg)
        names = self.scenarios or list(self.results)
        if unknown := [name for name in names if name not in self.results]:
            msg = f'scenarios {unknown} were not scored; scored: {list(self.results)}'
            raise KeyError(msg)
        frame = pd.DataFrame.from_dict(
            {name: self.results[name] for name in names}, orient='index'
        )
        frame.index.name = 'scenario'
        if COUNT in frame:
            frame[COUNT] = frame.pop(COUNT).astype(int)
        return frame

    def print_table(self) -> None:
        """Print the scenario x metric table of the last test in the terminal."""
        print_table(self.table(), 'test: scores per inference scenario')

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Read the logged test scores, write the files and figure, print the table.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        logged = {key: float(value) for key, value in trainer.callback_metrics.items()}
        self.results = scores_by_scenario(logged, 'test')
        if not self.results or not trainer.is_global_zero:
            return
        folder = output_folder(trainer, self.output_dir)
        frame = self.table()
        task = getattr(pl_module, 'task_type', None)
        write_table(frame, f'{folder}/test_scenarios', {'stage': 'test', 'task': task})
        if self.figures:
            scores = frame.drop(columns=[COUNT], errors='ignore')
            write_figure(
                bar_figure(
                    {
                        str(name): {str(m): float(v) for m, v in row.items()}
                        for name, row in scores.iterrows()
                    }
                ),
                f'{folder}/test_scenarios.png',
                trainer,
                'test/scenarios',
            )
        if self.print_table_at_end:
            self.print_table()


def bar_figure(results: Mapping[str, Mapping[str, float]]) -> Figure:
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
        colours = [f'C{len(scenario_modalities(name)) - 1}' for name in names]
        axes.bar(range(len(names)), values, color=colours)
        axes.set_xticks(range(len(names)), names, rotation=45, ha='right')
        axes.set_title(metric)
        axes.grid(axis='y', alpha=0.3)
    return figure
