#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""TemporalConv's two algorithms, windows (im2col) and shifted taps, on the same layers.

For each shape (steps T, batch B, input channels C, groups G; C output channels, kernel 5) it builds one
``TemporalConv`` per algorithm with the same weights and times, alternating the two within each
repetition: a training step of the layer (forward and backward with a fixed output gradient) and an
inference forward (no gradients). It prints per shape the median time per algorithm and the ratio
windows / shifted taps per repetition as median [min-max] (above 1: the shifted taps are faster), with
the thread count and the load average before and after. The rule of ``algorithm='auto'``
(:data:`~torchgeo_colearn.models.temporal_conv.SHIFTED_TAPS_MIN_CHANNELS`) comes from these ratios.

    OMP_NUM_THREADS=1 python benchmarks/conv_algorithms.py [--repeats 7] [--calls 50] [--threads 1]
        [--shapes 4x32x256x2 12x32x64x1 ...]
"""

import argparse
import os
import time
from collections.abc import Callable, Sequence

import torch

if __package__:  # imported as benchmarks.conv_algorithms (the tests)
    from .timing import cpu_model, load_average, spread
else:  # run as a script
    from timing import cpu_model, load_average, spread  # type: ignore[no-redef]

from torchgeo_colearn.models.temporal_conv import Algorithm, TemporalConv

#: T x B x C x G: LFMC's convolutions 2 and 3 (4 steps, two copies of 128 filters), CropHarvest-length
#: and longer series, and channel counts around the threshold.
DEFAULT_SHAPES = (
    '4x32x256x2',
    '4x128x256x2',
    '12x32x256x2',
    '24x32x128x1',
    '4x32x64x1',
    '12x32x64x1',
    '4x32x32x1',
    '12x32x32x1',
    '12x32x16x1',
)

ALGORITHMS: tuple[Algorithm, ...] = ('windows', 'shifted_taps')


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """Parse ``TxBxCxG``.

    Args:
        text: Steps, batch size, channels and groups, joined by ``x``.

    Returns:
        (T, B, C, G).

    Raises:
        argparse.ArgumentTypeError: If it is not four positive integers, or C does not split into G.
    """
    try:
        steps, batch, channels, groups = (int(v) for v in text.split('x'))
    except ValueError:
        msg = f'shape {text!r} is not TxBxCxG (four integers joined by x)'
        raise argparse.ArgumentTypeError(msg) from None
    if min(steps, batch, channels, groups) < 1 or channels % groups:
        msg = f'shape {text!r}: sizes must be positive and C divisible by G'
        raise argparse.ArgumentTypeError(msg)
    return steps, batch, channels, groups


def timed(
    function: Callable[[TemporalConv], None], layer: TemporalConv, calls: int
) -> float:
    """Return the mean seconds per call of ``function(layer)`` over *calls* calls."""
    start = time.perf_counter()
    for _ in range(calls):
        function(layer)
    return (time.perf_counter() - start) / calls


def measure(
    shape: tuple[int, int, int, int], repeats: int, calls: int
) -> dict[tuple[Algorithm, str], list[float]]:
    """Time both algorithms on one shape, alternating within each repetition.

    Args:
        shape: (T, B, C, G).
        repeats: Repetitions.
        calls: Calls per timed measure.

    Returns:
        (algorithm, 'train' or 'inference') mapped to seconds per call, one per repetition.
    """
    steps, batch, channels, groups = shape
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(steps, batch, channels, generator=generator, requires_grad=True)
    grad = torch.randn(steps, batch, channels, generator=generator)
    layers = {a: TemporalConv(channels, channels, 5, groups, a) for a in ALGORITHMS}
    layers['shifted_taps'].load_state_dict(layers['windows'].state_dict())

    def train(layer: TemporalConv) -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(grad)

    def infer(layer: TemporalConv) -> None:
        with torch.no_grad():
            layer(x)

    times: dict[tuple[Algorithm, str], list[float]] = {}
    for layer in layers.values():  # warm-up
        timed(train, layer, 3)
        timed(infer, layer, 3)
    for _ in range(repeats):
        for algorithm, layer in layers.items():
            times.setdefault((algorithm, 'train'), []).append(
                timed(train, layer, calls)
            )
            times.setdefault((algorithm, 'inference'), []).append(
                timed(infer, layer, calls)
            )
    return times


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the shapes and print the table.

    Args:
        argv: Command-line arguments (default: ``sys.argv``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shapes', nargs='+', type=parse_shape, default=None)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--calls', type=int, default=50)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)
    shapes = args.shapes or [parse_shape(s) for s in DEFAULT_SHAPES]
    torch.set_num_threads(args.threads)
    print(
        f'{cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}, '
        f'{args.threads} thread(s); kernel 5, C in = C out; {args.repeats} repetitions of '
        f'{args.calls} calls, the algorithms alternating'
    )
    print('load average before:', load_average())
    print()
    print(
        '| T | B | C | G | C/G | train: windows ms | train: shifted taps ms | '
        'train: windows / shifted | inference: windows / shifted |'
    )
    print('|---|---|---|---|---|---|---|---|---|')
    for shape in shapes:
        times = measure(shape, args.repeats, args.calls)
        ratios = {
            mode: [
                w / s
                for w, s in zip(
                    times[('windows', mode)], times[('shifted_taps', mode)], strict=True
                )
            ]
            for mode in ('train', 'inference')
        }
        milliseconds = {a: [1e3 * t for t in times[(a, 'train')]] for a in ALGORITHMS}
        steps, batch, channels, groups = shape
        print(
            f'| {steps} | {batch} | {channels} | {groups} | {channels // groups} | '
            f'{spread(milliseconds["windows"], 2)} | {spread(milliseconds["shifted_taps"], 2)} | '
            f'{spread(ratios["train"], 2)} | {spread(ratios["inference"], 2)} |'
        )
    print()
    print('load average after:', load_average())


if __name__ == '__main__':
    main()
