# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Samples that lack a modality: detection, ``present_<modality>`` and ``min_modalities``.

A sample lacks a modality when all its values of that modality are missing (NaN, ``inf``,
``-inf``); datasets mark a missing modality (a cloudy season, a series without acquisitions) with
NaN. A sample with only some missing values has the modality. At setup,
:class:`~torchgeo_colearn.datamodules.MultiModalDataModule` leaves out the samples with fewer than
*min_modalities* modalities (:func:`select_samples`) and learns which modalities some kept sample
lacks; its batches carry ``present_<modality>`` for those only (:func:`sample_presence`).
"""

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..batch import image_key
from ..datasets.tensor import TensorMultiModalDataset

#: The splits of a datamodule, in the order they are reported.
SPLITS = ('train', 'val', 'test', 'predict')

#: Streams a per-sample dataset as collated batches.
Stream = Callable[[Dataset[Any]], Iterable[Mapping[str, Any]]]

#: Replaces a split's dataset by the samples to keep: (split, dataset, keep mask) -> subset.
KeepSamples = Callable[[str, Dataset[Any], Tensor], Dataset[Any]]


def sample_presence(x: Tensor) -> Tensor:
    """Tell which samples have a modality: those with at least one finite value.

    Args:
        x: The modality of N samples, shape (N, ...), before normalisation.

    Returns:
        (N,) bool on the device of *x*; always True for integer values.
    """
    if not x.is_floating_point():
        return torch.ones(len(x), dtype=torch.bool, device=x.device)
    return torch.isfinite(x.flatten(1)).any(1)


def split_presence(
    dataset: Dataset[Any], modalities: Sequence[str], stream: Stream
) -> Tensor:
    """Tell which samples of a split have which modalities.

    Args:
        dataset: The split: an in-memory dataset (one reduction per modality) or a per-sample one
            (read once, through *stream*).
        modalities: The modalities to check.
        stream: Batches of a per-sample dataset, in order.

    Returns:
        (N, M) bool, M = len(modalities), True where sample n has modality m.
    """
    if isinstance(dataset, TensorMultiModalDataset):
        columns = [sample_presence(dataset.tensors[image_key(m)]) for m in modalities]
        return torch.stack(columns, 1)
    rows = [
        torch.stack([sample_presence(batch[image_key(m)]) for m in modalities], 1)
        for batch in stream(dataset)
    ]
    if not rows:
        return torch.zeros(0, len(modalities), dtype=torch.bool)
    return torch.cat(rows).cpu()


def keep_samples(dataset: Dataset[Any], keep: Tensor) -> Dataset[Any]:
    """Restrict a split to some of its samples.

    Args:
        dataset: The split.
        keep: (N,) bool, True for the samples to keep.

    Returns:
        An in-memory subset for an in-memory dataset, else a :class:`~torch.utils.data.Subset`.
    """
    indices = keep.nonzero().flatten()
    if isinstance(dataset, TensorMultiModalDataset):
        return dataset.subset(indices)
    return Subset(dataset, indices.tolist())


def unfiltered(dataset: Dataset[Any]) -> Dataset[Any]:
    """Return the dataset a split was restricted from by *min_modalities*, or the split itself.

    Args:
        dataset: A split.

    Returns:
        The dataset under a :class:`~torch.utils.data.Subset`, else *dataset*.
    """
    return dataset.dataset if isinstance(dataset, Subset) else dataset


def check_min_modalities(
    min_modalities: int, modalities: Sequence[str] | None, owner: str
) -> None:
    """Check that *min_modalities* asks for 1 to all of the modalities.

    Args:
        min_modalities: The option.
        modalities: The modalities of the batches, or None when not known yet (only the lower
            bound is checked).
        owner: The datamodule, for the message.

    Raises:
        ValueError: If *min_modalities* is below 1 or above the number of modalities.
    """
    if min_modalities >= 1 and (
        modalities is None or min_modalities <= len(modalities)
    ):
        return
    bound = 'the number of modalities' if modalities is None else len(modalities)
    where = '' if modalities is None else f' {list(modalities)}'
    msg = (
        f'{owner}: min_modalities must be between 1 and {bound}{where}, '
        f'got min_modalities={min_modalities}'
    )
    raise ValueError(msg)


@dataclass
class SplitSelection:
    """The splits restricted to the samples with enough modalities, and what was left out."""

    #: Split mapped to its dataset, restricted.
    datasets: dict[str, Dataset[Any]] = field(default_factory=dict)
    #: Modalities that some kept sample lacks, in the order of the modalities.
    incomplete: tuple[str, ...] = ()
    #: Split mapped to (samples left out, samples before), for the splits that lost some.
    left_out: dict[str, tuple[int, int]] = field(default_factory=dict)


def select_samples(
    owner: str,
    splits: Mapping[str, Dataset[Any]],
    modalities: Sequence[str],
    min_modalities: int,
    stream: Stream,
    keep: KeepSamples,
) -> SplitSelection:
    """Keep the samples of every split that have at least *min_modalities* of the modalities.

    A dataset shared by several splits (e.g. ``test`` and ``predict``) is checked once and
    reported under its first split. Reading the presence costs one tensor reduction per modality
    for an in-memory split, one pass over the samples for the others.

    Args:
        owner: The datamodule, for the messages.
        splits: Split mapped to its dataset, in :data:`SPLITS` order.
        modalities: The modalities of the batches.
        min_modalities: The fewest modalities a kept sample has.
        stream: Batches of a per-sample dataset (see :func:`split_presence`).
        keep: Restricts a split to a mask of samples, e.g. with :func:`keep_samples`.

    Returns:
        The restricted splits, the modalities still missing somewhere and the counts left out.

    Raises:
        ValueError: If *min_modalities* is above the number of modalities, or leaves a split
            empty.

    Warns:
        UserWarning: Counting the samples left out per split, when there are some.
    """
    check_min_modalities(min_modalities, modalities, owner)
    selection = SplitSelection()
    done: list[tuple[Dataset[Any], Dataset[Any]]] = []
    incomplete: set[str] = set()
    for split, dataset in splits.items():
        same = next((new for old, new in done if old is dataset), None)
        if same is not None:
            selection.datasets[split] = same
            continue
        presence = split_presence(dataset, modalities, stream)
        kept = presence.sum(1) >= min_modalities
        restricted = dataset
        if not kept.all():
            restricted = keep(split, dataset, kept)
            selection.left_out[split] = (int((~kept).sum()), len(kept))
        done.append((dataset, restricted))
        selection.datasets[split] = restricted
        lacking = ~presence[kept].all(0)
        incomplete.update(m for m, lacks in zip(modalities, lacking.tolist()) if lacks)
    selection.incomplete = tuple(m for m in modalities if m in incomplete)
    report_left_out(owner, selection, modalities, min_modalities)
    return selection


def report_left_out(
    owner: str,
    selection: SplitSelection,
    modalities: Sequence[str],
    min_modalities: int,
) -> None:
    """Say how many samples of each split *min_modalities* left out; refuse an emptied split.

    Args:
        owner: The datamodule, for the messages.
        selection: The result of :func:`select_samples`.
        modalities: The modalities of the batches.
        min_modalities: The option.

    Raises:
        ValueError: If a split lost every sample.

    Warns:
        UserWarning: Counting the samples left out per split, when there are some.
    """
    lacking = 'a sample lacks a modality whose values are all NaN or infinite'
    for split, (left, total) in selection.left_out.items():
        if left == total:
            msg = (
                f'{owner}: min_modalities={min_modalities} leaves the {split} split empty: none '
                f'of its {total} samples has at least {min_modalities} of the modalities '
                f'{list(modalities)} ({lacking}). Lower min_modalities or '
                'select other modalities.'
            )
            raise ValueError(msg)
    if selection.left_out:
        counts = ', '.join(
            f'{left} of {total} {split}'
            for split, (left, total) in selection.left_out.items()
        )
        fewer = 'none' if min_modalities == 1 else f'fewer than {min_modalities}'
        msg = (
            f'{owner}: min_modalities={min_modalities} leaves out {counts} sample(s) that have '
            f'{fewer} of the modalities {list(modalities)} ({lacking})'
        )
        warnings.warn(msg, UserWarning, stacklevel=5)
