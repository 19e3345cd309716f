# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""What the timing scripts report alike: the spread of repeated measures, the CPU and its load.

The scripts import it as ``timing`` when run as files (``python benchmarks/scale.py`` puts this folder
first on ``sys.path``) and as ``benchmarks.timing`` when imported as modules of the package (the tests).
"""

import os
import platform
import statistics
from collections.abc import Sequence


def spread(values: Sequence[float], digits: int) -> str:
    """Format values as median [min-max].

    Args:
        values: The repetitions.
        digits: Decimals.

    Returns:
        The formatted spread.
    """
    return (
        f'{statistics.median(values):.{digits}f} '
        f'[{min(values):.{digits}f}-{max(values):.{digits}f}]'
    )


def cpu_model() -> str:
    """Return the CPU model name (from ``/proc/cpuinfo``, else what :mod:`platform` knows)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """Return the 1, 5 and 15-minute load averages of the machine, e.g. ``'0.52 0.80 0.91'``."""
    return ' '.join(f'{v:.2f}' for v in os.getloadavg())
