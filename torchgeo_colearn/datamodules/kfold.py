# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""K-fold cross-validation over in-memory benchmarks: sample-level or grouped (spatial) folds."""

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchgeo.datasets import NonGeoDataset
from typing_extensions import override

from ..datasets.tensor import TensorMultiModalDataset
from .base import MultiModalDataModule

#: ``group_by`` value that groups samples by cells of a latitude / longitude grid.
LATLON_BLOCK = 'latlon_block'


def kfold_split(
    num_samples: int,
    num_folds: int,
    fold: int,
    seed: int,
    val_is_test: bool = False,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split sample indices for k-fold cross-validation, optionally keeping groups together.

    Without *groups*, the samples are permuted once with *seed* and cut into *num_folds* contiguous
    folds (``np.array_split``). With *groups* (one label per sample, e.g. a site name), whole groups
    are assigned to folds (:func:`group_folds`), so that no group is in two folds. Fold *fold* is the
    test set. The validation set is the next fold, ``(fold + 1) % num_folds``, carved from the
    training folds (so its groups are disjoint from the training and test groups), or the test fold
    itself when *val_is_test* is set (the MDiCo authors' protocol, which early-stops on the test fold).

    Args:
        num_samples: Number of samples.
        num_folds: Number of folds, at least 2 (3 when the validation fold is carved out).
        fold: Index of the test fold, ``0 <= fold < num_folds``.
        seed: Seed of the permutation.
        val_is_test: Use the test fold for validation too.
        groups: Optional group label of every sample, length *num_samples*.

    Returns:
        Train, validation and test indices (int64 arrays, each sorted).

    Raises:
        ValueError: If the fold arguments are out of range, or there are fewer samples (groups) than
            folds.
    """
    min_folds = 2 if val_is_test else 3
    if num_folds < min_folds:
        msg = f'num_folds must be at least {min_folds} (val_is_test={val_is_test}), got {num_folds}'
        raise ValueError(msg)
    if not 0 <= fold < num_folds:
        msg = f'fold must be in [0, {num_folds}), got {fold}'
        raise ValueError(msg)
    if num_samples < num_folds:
        msg = f'cannot split {num_samples} samples into {num_folds} folds'
        raise ValueError(msg)
    if groups is None:
        permutation = np.random.RandomState(seed).permutation(num_samples)
        folds = np.array_split(permutation, num_folds)
    else:
        if len(groups) != num_samples:
            msg = f'groups has {len(groups)} labels for {num_samples} samples'
            raise ValueError(msg)
        folds = group_folds(groups, num_folds, seed)
    val_fold = fold if val_is_test else (fold + 1) % num_folds
    train = [f for i, f in enumerate(folds) if i not in (fold, val_fold)]
    return (
        np.sort(np.concatenate(train)),
        np.sort(folds[val_fold]),
        np.sort(folds[fold]),
    )


def group_folds(
    groups: Sequence[Any] | np.ndarray, num_folds: int, seed: int
) -> list[np.ndarray]:
    """Assign whole groups of samples to folds of balanced size.

    The groups are taken largest first, groups of equal size in an order drawn with *seed*, and each
    goes to the fold that holds the fewest samples so far (the lowest index on a tie): the greedy
    "longest processing time" rule of scikit-learn's ``GroupKFold``, with seeded tie-breaking so that
    different seeds give different partitions. Fold sizes differ by at most the size of one group.

    Args:
        groups: Group label of every sample (strings or numbers).
        num_folds: Number of folds.
        seed: Seed of the order of groups of equal size.

    Returns:
        The sample indices of each fold, sorted.

    Raises:
        ValueError: If there are fewer groups than folds.
    """
    labels = np.asarray(groups)
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(names) < num_folds:
        msg = f'cannot split {len(names)} groups into {num_folds} folds'
        raise ValueError(msg)
    order = np.random.RandomState(seed).permutation(len(names))
    order = order[np.argsort(-counts[order], kind='stable')]
    loads = np.zeros(num_folds, dtype=np.int64)
    fold_of_group = np.empty(len(names), dtype=np.int64)
    for group in order:
        lightest = int(np.argmin(loads))
        fold_of_group[group] = lightest
        loads[lightest] += counts[group]
    fold_of_sample = fold_of_group[inverse.reshape(-1)]
    return [np.flatnonzero(fold_of_sample == f) for f in range(num_folds)]


def latlon_blocks(lat: np.ndarray, lon: np.ndarray, block_size: float) -> np.ndarray:
    """Label samples with the cell of a regular latitude / longitude grid they fall in.

    Cells are ``block_size`` degrees wide and aligned on 0 degrees: cell (i, j) covers latitudes
    ``[i * block_size, (i + 1) * block_size)`` and likewise for longitudes.

    Args:
        lat: Latitudes in degrees, shape (N,).
        lon: Longitudes in degrees, shape (N,).
        block_size: Cell size in degrees, > 0.

    Returns:
        Integer cell labels, shape (N,), equal for samples of the same cell.

    Raises:
        ValueError: If *block_size* is not positive or a coordinate is not finite.
    """
    if not block_size > 0:
        msg = f'block_size must be > 0 degrees, got {block_size}'
        raise ValueError(msg)
    coordinates = np.stack(
        [np.asarray(lat, np.float64), np.asarray(lon, np.float64)], 1
    )
    if not np.isfinite(coordinates).all():
        row = int(np.flatnonzero(~np.isfinite(coordinates).all(1))[0])
        msg = (
            f'sample {row} has no finite latitude / longitude ({coordinates[row].tolist()}); '
            'it cannot be put in a lat/lon block'
        )
        raise ValueError(msg)
    cells = np.floor(coordinates / block_size).astype(np.int64)
    inverse: np.ndarray = np.unique(cells, axis=0, return_inverse=True)[1]
    return inverse.reshape(-1)


class KFoldDataModule(MultiModalDataModule):
    """Datamodule for in-memory benchmarks evaluated with k-fold cross-validation.

    Subclasses load the whole benchmark once (:meth:`load_dataset`); the folds are index subsets of it,
    split by :func:`kfold_split`. By default the folds are random at sample level. With *group_by*
    they keep whole groups together (spatial cross-validation): the groups are a per-sample attribute
    of the loaded dataset (:meth:`~torchgeo_colearn.datasets.TensorMultiModalDataset.attribute`, e.g.
    LFMC's ``site``, CropHarvest's ``dataset``) or, with ``group_by='latlon_block'``, the cells of a
    *block_size*-degree latitude / longitude grid (:func:`latlon_blocks`). :meth:`split_summary` gives
    the number of groups and samples of each split, after *min_modalities*
    (:class:`~torchgeo_colearn.datamodules.MultiModalDataModule`) left out the samples with too few
    modalities; the folds are drawn over all samples, so a sample keeps its fold whatever the option.
    """

    def __init__(
        self,
        dataset_class: type[NonGeoDataset],
        batch_size: int = 32,
        num_workers: int = 0,
        fold: int = 0,
        num_folds: int = 10,
        seed: int = 10,
        val_is_test: bool = False,
        augment: bool = True,
        fill_nan: bool = True,
        group_by: str | None = None,
        block_size: float = 0.5,
        **kwargs: Any,
    ) -> None:
        """Initialize a new KFoldDataModule instance.

        Args:
            dataset_class: Dataset class to instantiate.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            fold: Index of the test fold.
            num_folds: Number of folds.
            seed: Seed of the fold permutation.
            val_is_test: Validate on the test fold, as the MDiCo authors do; by default the validation
                set is the next fold, carved from the training folds.
            augment: Apply random flips to image modalities during training.
            fill_nan: Replace NaN by 0 after normalisation and mark invalid time steps.
            group_by: None for random sample-level folds; a per-sample attribute of the dataset (e.g.
                ``'site'``) whose values are kept in one fold each; or ``'latlon_block'`` for cells of
                a *block_size* grid of the ``lat`` / ``lon`` attributes.
            block_size: Cell size in degrees of ``group_by='latlon_block'``.
            **kwargs: Passed to *dataset_class*.

        Raises:
            ValueError: If *block_size* is not positive.
        """
        super().__init__(
            dataset_class, batch_size, num_workers, augment, fill_nan, **kwargs
        )
        if not block_size > 0:
            msg = f'block_size must be > 0 degrees, got {block_size}'
            raise ValueError(msg)
        self.fold = fold
        self.num_folds = num_folds
        self.seed = seed
        self.val_is_test = val_is_test
        self.group_by = group_by
        self.block_size = block_size
        self._full: TensorMultiModalDataset | None = None
        self._splits: dict[str, np.ndarray] = {}

    @abstractmethod
    def load_dataset(self) -> TensorMultiModalDataset:
        """Load the whole benchmark into memory.

        Returns:
            All samples of the benchmark.
        """

    def groups(self, dataset: TensorMultiModalDataset) -> np.ndarray | None:
        """Return the group label of every sample, as *group_by* defines it.

        Args:
            dataset: The whole benchmark.

        Returns:
            One label per sample, or None for sample-level folds.

        Raises:
            KeyError: If the dataset lacks the attribute named by *group_by*.
        """
        if self.group_by is None:
            return None
        if self.group_by == LATLON_BLOCK:
            return latlon_blocks(
                dataset.attribute('lat'), dataset.attribute('lon'), self.block_size
            )
        try:
            return dataset.attribute(self.group_by)
        except KeyError as error:
            msg = (
                f'{type(self).__name__}(group_by={self.group_by!r}): {error.args[0]}, or '
                f'{LATLON_BLOCK!r}'
            )
            raise KeyError(msg) from error

    def split_indices(
        self, dataset: TensorMultiModalDataset
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the train, validation and test indices of the configured fold.

        Args:
            dataset: The whole benchmark.

        Returns:
            Sorted int64 indices of the three splits.
        """
        return kfold_split(
            len(dataset),
            self.num_folds,
            self.fold,
            self.seed,
            self.val_is_test,
            self.groups(dataset),
        )

    def setup_splits(self, stage: str) -> None:
        """Split the in-memory benchmark into the folds.

        Args:
            stage: Either 'fit', 'validate', 'test' or 'predict'.
        """
        if self._full is None:
            self._full = self.load_dataset()
        train, val, test = self.split_indices(self._full)
        self._splits = {'train': train, 'val': val, 'test': test}
        self.dataset = self._full
        self.train_dataset = self._full.subset(torch.from_numpy(train))
        self.val_dataset = self._full.subset(torch.from_numpy(val))
        self.test_dataset = self._full.subset(torch.from_numpy(test))
        self.predict_dataset = self.test_dataset

    @override
    def _keep_samples(
        self, split: str, dataset: Dataset[Any], keep: Tensor
    ) -> Dataset[Any]:
        """Restrict a split to some of its samples, and its indices into the benchmark too."""
        if split in self._splits:
            self._splits[split] = self._splits[split][keep.numpy()]
        return super()._keep_samples(split, dataset, keep)

    def split_summary(self) -> dict[str, Any]:
        """Describe the current split: how it is grouped and the groups and samples of each part.

        Returns:
            ``{'group_by': ..., 'fold': ..., 'num_folds': ..., 'val_is_test': ..., 'train': {'groups':
            g, 'samples': n}, 'val': {...}, 'test': {...}}``; with sample-level folds every sample is
            its own group.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        if self._full is None or not self._splits:
            msg = f'{type(self).__name__}.split_summary() is known only after setup()'
            raise RuntimeError(msg)
        groups = self.groups(self._full)
        summary: dict[str, Any] = {
            'group_by': self.group_by,
            'fold': self.fold,
            'num_folds': self.num_folds,
            'val_is_test': self.val_is_test,
        }
        if self.group_by == LATLON_BLOCK:
            summary['block_size'] = self.block_size
        for split, indices in self._splits.items():
            count = len(indices) if groups is None else len(np.unique(groups[indices]))
            summary[split] = {'groups': count, 'samples': len(indices)}
        return summary
