# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Search spaces of the tuning: their check against the method's class and how tuned values are set."""

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .validation import ConfigError, check_arguments, check_instance

if TYPE_CHECKING:
    from .config import Method

#: Kinds of a search-space parameter and the keys each needs.
PARAMETER_KEYS: dict[str, tuple[str, ...]] = {
    'float': ('low', 'high'),
    'int': ('low', 'high'),
    'categorical': ('choices',),
}


def set_path(arguments: dict[str, Any], path: str, value: Any) -> None:
    """Set a nested argument in place; ``*`` stands for every key of a dict.

    Args:
        arguments: The arguments.
        path: Dotted path, e.g. ``'lr'`` or ``'encoders.*.dropout'``.
        value: The value.

    Raises:
        KeyError: If an intermediate key is missing or is not a dict.
    """
    head, _, rest = path.partition('.')
    if not rest:
        arguments[head] = value
        return
    keys = list(arguments) if head == '*' else [head]
    for key in keys:
        child = arguments.get(key)
        if not isinstance(child, dict):
            msg = f'{path!r}: {key!r} is not a dict of the arguments'
            raise KeyError(msg)
        set_path(child, rest, value)


def with_parameters(
    arguments: Mapping[str, Any], parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Return a copy of arguments with tuned parameters set.

    Args:
        arguments: The method's init arguments.
        parameters: Dotted path mapped to value (see :func:`set_path`).

    Returns:
        The new arguments.
    """
    result = copy.deepcopy(dict(arguments))
    for path, value in parameters.items():
        set_path(result, path, value)
    return result


def check_search_space(
    method: 'Method', cls: type, where: str
) -> dict[str, dict[str, Any]]:
    """Validate a search space: each bound or choice must give valid init arguments.

    Args:
        method: The method (with its init arguments).
        cls: The method's class.
        where: Where the search space is, for the message.

    Returns:
        The search space with defaults filled (``log`` False for numbers).

    Raises:
        ConfigError: On an unknown kind, missing keys, an unknown argument path or an invalid value.
    """
    space: dict[str, dict[str, Any]] = {}
    for path, spec in method.search_space.items():
        if not isinstance(spec, Mapping) or spec.get('type') not in PARAMETER_KEYS:
            msg = (
                f'{where}.{path}: needs a type in {sorted(PARAMETER_KEYS)} and its keys '
                f'{PARAMETER_KEYS}, got {spec!r}'
            )
            raise ConfigError(msg)
        kind = spec['type']
        allowed = {'type', 'log', *PARAMETER_KEYS[kind]}
        if missing := [k for k in PARAMETER_KEYS[kind] if k not in spec]:
            msg = f'{where}.{path}: missing {missing}'
            raise ConfigError(msg)
        if unknown := sorted(set(spec) - allowed):
            msg = f'{where}.{path}: unknown keys {unknown} (allowed: {sorted(allowed)})'
            raise ConfigError(msg)
        values = (
            spec['choices'] if kind == 'categorical' else [spec['low'], spec['high']]
        )
        if kind == 'categorical' and (
            not isinstance(values, list)
            or not values
            or not all(
                v is None or isinstance(v, bool | int | float | str) for v in values
            )
        ):
            msg = f'{where}.{path}: choices must be a non-empty list of numbers, strings, booleans or null, got {values!r}'
            raise ConfigError(msg)
        if kind != 'categorical' and not spec['low'] < spec['high']:
            msg = f'{where}.{path}: low must be below high, got {values}'
            raise ConfigError(msg)
        for value in values:
            try:
                arguments = with_parameters(method.init_args, {path: value})
            except KeyError as error:
                msg = f'{where}.{path}: {error.args[0]}'
                raise ConfigError(msg) from error
            check_arguments(cls, arguments, f'{where}.{path}={value!r}')
            check_instance(cls, arguments, f'{where}.{path}={value!r}')
        space[path] = (
            {**spec, 'log': bool(spec.get('log', False))}
            if kind != 'categorical'
            else dict(spec)
        )
    return space
