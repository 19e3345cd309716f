# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Inference scenarios: which modalities are available at prediction time, and their names.

A scenario is a tuple of modality names in training order, e.g. ``('s1',)`` (Sentinel-1 alone) or
``('s1', 's2')``. Its display name joins them with ``+`` (``'s1+s2'``). Scores are logged under
``<stage>/<scenario>/<metric>``, e.g. ``test/s1/R2``. This module is the only place that builds or
parses these names.
"""

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeAlias

#: An inference scenario: the available modalities, in training order.
Scenario: TypeAlias = tuple[str, ...]

#: Stages whose scenarios are scored.
Stage: TypeAlias = Literal['train', 'val', 'test']

#: Joins the modalities of a scenario in its display name.
SEPARATOR = '+'

#: Separates stage, scenario and metric in a logged key.
KEY_SEPARATOR = '/'

#: Name of the logged number of samples a scenario was scored on.
COUNT = 'count'


def scenario_name(scenario: Iterable[str]) -> str:
    """Return the display name of a scenario.

    Args:
        scenario: The available modalities.

    Returns:
        The modalities joined by '+', e.g. 's1+s2'.
    """
    return SEPARATOR.join(scenario)


def scenario_modalities(name: str) -> Scenario:
    """Split a display name into its modality names, without checking them.

    Args:
        name: Display name, e.g. ``'s1+s2'``.

    Returns:
        The modality names in the order written, e.g. ``('s1', 's2')``.
    """
    return tuple(name.split(SEPARATOR))


def parse_scenario(name: str, modalities: Sequence[str]) -> Scenario:
    """Turn a display name into a scenario of known modalities.

    Args:
        name: Display name, e.g. ``'s2+s1'``.
        modalities: The training modalities, in training order.

    Returns:
        The scenario, its modalities in training order (``('s1', 's2')``).

    Raises:
        ValueError: If the name is empty, repeats a modality or names an unknown one.
    """
    parts = scenario_modalities(name)
    unknown = [part for part in parts if part not in modalities]
    if not name or unknown or len(set(parts)) != len(parts):
        msg = (
            f'scenario {name!r} must join distinct modalities of {list(modalities)} with '
            f'{SEPARATOR!r} (unknown: {unknown})'
        )
        raise ValueError(msg)
    return tuple(m for m in modalities if m in parts)


def parse_scenarios(names: Iterable[str], modalities: Sequence[str]) -> list[Scenario]:
    """Turn display names into scenarios of known modalities.

    Args:
        names: Display names, e.g. ``['s1', 's1+s2']``.
        modalities: The training modalities, in training order.

    Returns:
        One scenario per name, in the order given.

    Raises:
        ValueError: If a name is invalid (see :func:`parse_scenario`) or two names give the same scenario.
    """
    scenarios: list[Scenario] = []
    for name in names:
        scenario = parse_scenario(name, modalities)
        if scenario in scenarios:
            msg = f'scenario {name!r} is given twice'
            raise ValueError(msg)
        scenarios.append(scenario)
    return scenarios


def default_scenarios(modalities: Sequence[str], fusion: bool) -> list[Scenario]:
    """Return the scenarios a method is scored on.

    Args:
        modalities: The training modalities, in training order.
        fusion: Whether the method can predict from several modalities at once.

    Returns:
        Every single modality, then, with *fusion*, every subset of two or more modalities (by size,
        then in training order).
    """
    sizes = range(1, len(modalities) + 1) if fusion else range(1, 2)
    return [s for k in sizes for s in itertools.combinations(modalities, k)]


def check_predictable(
    scenarios: Iterable[Scenario], available: Sequence[str], fusion: bool, method: str
) -> None:
    """Check that scenarios can be predicted by a method from the available modalities.

    Args:
        scenarios: The scenarios.
        available: The modalities of the batch.
        fusion: Whether the method can predict from several modalities at once.
        method: The method's name, for the message.

    Raises:
        ValueError: If a scenario is empty, fuses while the method cannot, or needs a modality the
            batch lacks.
    """
    scenarios = list(scenarios)
    for scenario in scenarios:
        if not scenario or (len(scenario) > 1 and not fusion):
            msg = f'{method} cannot predict scenario {scenario}'
            raise ValueError(msg)
    needed = {m for scenario in scenarios for m in scenario}
    if missing := sorted(needed - set(available)):
        msg = f'scenarios {[scenario_name(s) for s in scenarios]} need modalities {missing}, absent from the batch'
        raise ValueError(msg)


def sort_scenario_names(
    names: Iterable[str], modalities: Sequence[str] | None = None
) -> list[str]:
    """Order scenario names as :func:`default_scenarios` does: by size, then by modality order.

    Args:
        names: Display names.
        modalities: The training modalities in training order; by default the order in which the
            modalities first appear in the single-modality names, then in the others.

    Returns:
        The names, sorted.
    """
    names = list(dict.fromkeys(names))
    if modalities is None:
        split = [scenario_modalities(name) for name in names]
        singles = [parts[0] for parts in split if len(parts) == 1]
        modalities = list(dict.fromkeys([*singles, *itertools.chain(*split)]))
    position = {m: i for i, m in enumerate(modalities)}

    def key(name: str) -> tuple[int, list[int]]:
        parts = scenario_modalities(name)
        return len(parts), sorted(position.get(p, len(position)) for p in parts)

    return sorted(names, key=key)


def metric_key(stage: str, scenario: str | Scenario, metric: str) -> str:
    """Return the key a scenario's score is logged under.

    Args:
        stage: 'train', 'val' or 'test'.
        scenario: A scenario or its display name.
        metric: Metric name, e.g. 'R2', or :data:`COUNT`.

    Returns:
        ``'<stage>/<scenario>/<metric>'``, e.g. ``'test/s1+s2/F1Score'``.
    """
    name = scenario if isinstance(scenario, str) else scenario_name(scenario)
    return KEY_SEPARATOR.join((stage, name, metric))


def split_metric_key(key: str) -> tuple[str, str, str] | None:
    """Split a logged key into stage, scenario name and metric.

    Args:
        key: A logged key, e.g. ``'test/s1/R2'``.

    Returns:
        (stage, scenario name, metric), or None if *key* is not a scenario score (e.g. ``'val_loss'``).
    """
    parts = key.split(KEY_SEPARATOR)
    if len(parts) != 3 or not all(parts):
        return None
    stage, scenario, metric = parts
    return stage, scenario, metric


def scores_by_scenario(
    logged: Mapping[str, float], stage: str
) -> dict[str, dict[str, float]]:
    """Collect the scenario scores of one stage from logged values.

    Args:
        logged: Logged key mapped to value, e.g. a dict returned by ``Trainer.test``.
        stage: The stage to collect.

    Returns:
        Scenario name mapped to metric mapped to value, scenarios sorted by :func:`sort_scenario_names`.
    """
    scores: dict[str, dict[str, float]] = {}
    for key, value in logged.items():
        parts = split_metric_key(key)
        if parts is not None and parts[0] == stage:
            scores.setdefault(parts[1], {})[parts[2]] = float(value)
    return {name: scores[name] for name in sort_scenario_names(scores)}
