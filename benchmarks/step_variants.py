#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Variants of CoLearnTask's bare training step on LFMC: what is left to gain around the model step.

The bare loop of ``benchmarks/throughput.py`` (the *floor*: forward, loss, backward, then one fused Adam
update of all parameters) is timed against variants of the same step on the same pre-made batches, each on
its own copy of the same task (LFMC with ``experiments/benchmarks/lfmc.yaml``, fold 0):

* ``optimiser in backward``: the same arithmetic, but each parameter gets its Adam update as soon as its
  gradient is complete, inside backward (``register_post_accumulate_grad_hook``, one Adam per parameter, as
  PyTorch's tutorial on fusing the optimiser into backward does it): the gradient and the weight are updated
  while still in cache instead of in one pass over all parameters after backward;
* ``optimiser in backward, kernel only``: the same, calling the fused Adam kernel directly, which is the
  least Python such an update can cost (a bound, not an option: the kernel is private API);
* ``bf16 autocast``: the floor with the forward in bfloat16 (other arithmetic, for reference).

The variants alternate within each repetition. It prints per variant the milliseconds per step (median
[min-max] over the repetitions), the ratio floor / variant per repetition (above 1: the variant is faster),
and the largest parameter difference from the floor after a few steps from the same weights and random
seed (0 or float rounding for the same arithmetic), with the thread count and the load average before and
after.

    OMP_NUM_THREADS=1 python benchmarks/step_variants.py [--repeats 7] [--passes 1] [--threads 1]
        [--batch-size 32] [--root ../shared/data/lfmc]
"""

import argparse
import copy
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

if __package__:  # imported as benchmarks.step_variants (the tests)
    from .throughput import (
        CONFIG,
        REPO,
        build,
        floor_step,
        premade_batches,
        task_optimizer,
    )
    from .timing import cpu_model, load_average, spread
else:  # run as a script
    from throughput import (  # type: ignore[no-redef]
        CONFIG,
        REPO,
        build,
        floor_step,
        premade_batches,
        task_optimizer,
    )
    from timing import cpu_model, load_average, spread  # type: ignore[no-redef]

#: A training step on one pre-made batch: (modality inputs, target).
Step = Callable[[Any, Any], None]

#: Steps run from the same weights and seed to compare each variant's parameters with the floor's.
CHECK_STEPS = 3


def adam_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Return the settings of a single-group Adam optimiser, to rebuild it per parameter.

    Args:
        optimizer: The task's optimiser.

    Returns:
        lr, betas, eps and weight_decay.

    Raises:
        ValueError: If it is not Adam with one parameter group, or uses amsgrad or maximize.
    """
    groups = optimizer.param_groups
    if (
        type(optimizer) is not torch.optim.Adam
        or len(groups) != 1
        or groups[0]['amsgrad']
        or groups[0]['maximize']
    ):
        msg = (
            f'the optimiser in backward is built for plain Adam with one parameter group, '
            f'got {type(optimizer).__name__} with {len(groups)} group(s)'
        )
        raise ValueError(msg)
    return {key: groups[0][key] for key in ('lr', 'betas', 'eps', 'weight_decay')}


def in_backward_step(
    task: Any, optimizer: torch.optim.Optimizer, kernel_only: bool
) -> Step:
    """Return the step that updates every parameter inside backward, once its gradient is complete.

    Args:
        task: The task; hooks are registered on its parameters.
        optimizer: Its Adam optimiser, whose settings every per-parameter update uses.
        kernel_only: Call the fused Adam kernel directly instead of one ``Adam`` per parameter.

    Returns:
        The step (forward and loss, backward; the updates run in backward).
    """
    settings = adam_settings(optimizer)
    beta1, beta2 = settings['betas']

    def per_parameter_optimizer(parameter: nn.Parameter) -> Callable[[], None]:
        if not kernel_only:
            return torch.optim.Adam([parameter], **settings, fused=True).step
        exp_avg, exp_avg_sq = torch.zeros_like(parameter), torch.zeros_like(parameter)
        count = torch.zeros((), dtype=torch.float32)

        def update() -> None:
            # Adam's bias correction reads the step count after it is advanced
            count.add_(1)
            torch._fused_adam_(
                [parameter],
                [cast(Tensor, parameter.grad)],  # set: the hook runs after accumulation
                [exp_avg],
                [exp_avg_sq],
                [],
                [count],
                lr=settings['lr'],
                beta1=beta1,
                beta2=beta2,
                weight_decay=settings['weight_decay'],
                eps=settings['eps'],
                amsgrad=False,
                maximize=False,
            )

        return update

    for parameter in task.parameters():
        if parameter.requires_grad:
            update = per_parameter_optimizer(parameter)

            def hook(parameter: Tensor, update: Callable[[], None] = update) -> None:
                update()
                parameter.grad = None

            parameter.register_post_accumulate_grad_hook(hook)

    def step(inputs: Any, target: Tensor) -> None:
        losses, _ = task.losses(inputs, task.encode(inputs), target)
        losses['loss'].backward()

    return step


#: Variant name mapped to (arithmetic, builder of its step from a task and its optimiser).
VARIANTS: dict[str, tuple[str, Callable[[Any, torch.optim.Optimizer], Step]]] = {
    'floor': ('float32', lambda t, o: floor_step(t, o, bf16=False)),
    'optimiser in backward': (
        'float32',
        lambda t, o: in_backward_step(t, o, kernel_only=False),
    ),
    'optimiser in backward, kernel only': (
        'float32',
        lambda t, o: in_backward_step(t, o, kernel_only=True),
    ),
    'bf16 autocast': ('bfloat16 forward', lambda t, o: floor_step(t, o, bf16=True)),
}


def prepared(task: Any, name: str) -> tuple[Any, Step]:
    """Copy the task and build a variant's step on the copy.

    Args:
        task: The task, with its target statistics set.
        name: A key of :data:`VARIANTS`.

    Returns:
        The copy and its step.
    """
    copied = copy.deepcopy(task)
    copied.train()
    return copied, VARIANTS[name][1](copied, task_optimizer(copied))


def parameter_differences(
    task: Any, batches: Sequence[tuple[Any, Tensor]]
) -> dict[str, float]:
    """Run every variant for a few steps from the same weights and seed, against the floor.

    Args:
        task: The task.
        batches: Pre-made batches.

    Returns:
        Variant mapped to its largest absolute parameter difference from the floor.
    """
    parameters = {}
    for name in VARIANTS:
        copied, step = prepared(task, name)
        torch.manual_seed(0)  # the same dropout masks
        for inputs, target in batches[:CHECK_STEPS]:
            step(inputs, target)
        parameters[name] = [p.detach() for p in copied.parameters()]
    return {
        name: max(
            float((p - f).abs().max())
            for p, f in zip(values, parameters['floor'], strict=True)
        )
        for name, values in parameters.items()
    }


def measure(
    task: Any, batches: Sequence[tuple[Any, Tensor]], repeats: int, passes: int
) -> dict[str, list[float]]:
    """Time the variants, alternating within each repetition.

    Args:
        task: The task.
        batches: Pre-made batches.
        repeats: Repetitions.
        passes: Passes over the batches per timed measure.

    Returns:
        Variant mapped to seconds per step, one per repetition.
    """
    steps = {name: prepared(task, name)[1] for name in VARIANTS}
    for step in steps.values():  # warm-up
        for inputs, target in batches[:3]:
            step(inputs, target)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(passes):
                for inputs, target in batches:
                    step(inputs, target)
            times[name].append((time.perf_counter() - start) / (passes * len(batches)))
    return times


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the variants and print the table.

    Args:
        argv: Command-line arguments (default: ``sys.argv``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument(
        '--passes', type=int, default=1, help='passes over the batches per measure'
    )
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument(
        '--root',
        default=os.path.join('..', 'shared', 'data', 'lfmc'),
        help='LFMC data, relative to the repository',
    )
    args = parser.parse_args(argv)
    root = os.path.join(REPO, args.root)
    if not os.path.exists(os.path.join(root, 'training_features.csv')):
        parser.error(f'no LFMC table under {args.root} (relative to the repository)')
    torch.set_num_threads(args.threads)
    case = {
        'data': 'lfmc',
        'batch_size': args.batch_size,
        'config': os.path.join(REPO, CONFIG),
        'root': root,
    }
    task, datamodule, _ = build(case)
    batches = premade_batches(task, datamodule)
    print(
        f'{cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}, '
        f'{torch.get_num_threads()} thread(s); LFMC fold 0, batch {args.batch_size}, '
        f'{len(batches)} steps per pass; {args.repeats} repetitions of {args.passes} '
        f'pass(es), the variants alternating'
    )
    print('load average before:', load_average())
    differences = parameter_differences(task, batches)
    times = measure(task, batches, args.repeats, args.passes)
    print()
    print(
        f'| variant | arithmetic | ms per step | floor / variant | '
        f'max parameter difference from the floor after {CHECK_STEPS} steps |'
    )
    print('|---|---|---|---|---|')
    for name, (arithmetic, _) in VARIANTS.items():
        ratios = [f / v for f, v in zip(times['floor'], times[name], strict=True)]
        milliseconds = [1e3 * t for t in times[name]]
        print(
            f'| {name} | {arithmetic} | {spread(milliseconds, 2)} | {spread(ratios, 2)} | '
            f'{differences[name]:.1e} |'
        )
    print()
    print('load average after:', load_average())


if __name__ == '__main__':
    main()
