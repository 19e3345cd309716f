# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Base classes for multi-modal datamodules."""

import json
import os
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import kornia.augmentation as K
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import NonGeoDataset

from ..batch import channel_axis, image_key, modalities_in
from ..datasets.tensor import TensorMultiModalDataset
from ..transforms import ModalityNormalizer, stats_from_tensors

Stats = dict[str, tuple[Tensor, Tensor]]


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


def _flip_augmentation() -> K.AugmentationSequential:
    """Return the default geometric augmentation of image modalities.

    Returns:
        Random horizontal and vertical flips, with the same parameters for every image key.
    """
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(), K.RandomVerticalFlip(), data_keys=None, keepdim=True
    )


class MultiModalDataModule(NonGeoDataModule):
    """Base datamodule for ``image_<modality>`` batches.

    Compared with :class:`~torchgeo.datamodules.NonGeoDataModule` it

    * normalises each modality with its own per-channel, NaN-aware statistics computed on the training
      split only (:class:`~torchgeo_colearn.transforms.ModalityNormalizer`), on the device after the
      batch transfer; NaN become 0 with a validity mask when *fill_nan* is set;
    * applies kornia geometric augmentations during training to the (B, C, H, W) image modalities only,
      with the same parameters for all the co-registered images of a sample; time series and vectors
      are never augmented;
    * loads :class:`~torchgeo_colearn.datasets.TensorMultiModalDataset` splits a whole batch at a time;
    * saves the statistics in its state dict, so that checkpoints carry them.
    """

    def __init__(
        self,
        dataset_class: type[NonGeoDataset],
        batch_size: int = 32,
        num_workers: int = 0,
        augment: bool = True,
        fill_nan: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialize a new MultiModalDataModule instance.

        Args:
            dataset_class: Dataset class to instantiate.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            augment: Apply random flips to image modalities during training.
            fill_nan: Replace NaN by 0 after normalisation and mark invalid time steps; when False, NaN
                reach the model, which raises.
            **kwargs: Passed to *dataset_class*.
        """
        super().__init__(dataset_class, batch_size, num_workers, **kwargs)
        self.augment = augment
        self.fill_nan = fill_nan
        self.train_aug = _flip_augmentation() if augment else None
        self.normalizer: ModalityNormalizer | None = None
        self._stats: Stats | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities of the batches.

        Returns:
            Modality names.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        dataset = self.train_dataset or self.test_dataset or self.val_dataset
        if dataset is None:
            msg = f'{type(self).__name__}.modalities is known only after setup()'
            raise RuntimeError(msg)
        return modalities_in(dataset[0])

    def stats_path(self) -> str | None:
        """Return the file caching the normalisation statistics, if any.

        Subclasses that read files return a path under their data root; in-memory datamodules return
        None, since their statistics cost one tensor reduction.

        Returns:
            A JSON path, or None for no cache.
        """
        return None

    def compute_stats(self) -> Stats:
        """Compute the normalisation statistics on the training split.

        Returns:
            Modality mapped to (mean, std) of shape (C,).

        Raises:
            RuntimeError: If there is no training split.
        """
        dataset = self.train_dataset
        if dataset is None:
            msg = (
                f'{type(self).__name__} has no training split to compute statistics on'
            )
            raise RuntimeError(msg)
        if isinstance(dataset, TensorMultiModalDataset):
            return stats_from_tensors(dataset.tensors, dataset.modalities)
        return _streamed_stats(
            DataLoader(
                dataset,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                collate_fn=self.collate_fn,
            )
        )

    def _ensure_normalizer(self) -> None:
        """Build the normaliser from cached, loaded or freshly computed statistics."""
        if self._stats is None:
            path = self.stats_path()
            if path is not None and os.path.exists(path):
                self._stats = _read_stats(path)
            else:
                self._stats = self.compute_stats()
                if path is not None:
                    _write_stats(path, self._stats)
        self.normalizer = ModalityNormalizer(self._stats, fill_nan=self.fill_nan)

    def setup(self, stage: str) -> None:
        """Set up the splits, then the normaliser.

        Subclasses set ``train_dataset`` and friends in :meth:`setup_splits`; the statistics always come
        from the training split, whatever the stage.

        Args:
            stage: Either 'fit', 'validate', 'test' or 'predict'.
        """
        self.setup_splits(stage)
        self._ensure_normalizer()

    @abstractmethod
    def setup_splits(self, stage: str) -> None:
        """Set ``train_dataset``, ``val_dataset``, ``test_dataset`` and ``predict_dataset``.

        The training split must be set for every stage: it provides the statistics.

        Args:
            stage: Either 'fit', 'validate', 'test' or 'predict'.
        """

    def _dataloader_factory(self, split: str) -> DataLoader[dict[str, Tensor]]:
        """Build a dataloader, batching in-memory datasets without per-sample collation.

        The last incomplete training batch is dropped (batch normalisation needs more than one sample)
        unless the split is smaller than one batch, so that tiny splits still train.

        Args:
            split: Either 'train', 'val', 'test' or 'predict'.

        Returns:
            A dataloader for the split.
        """
        dataset = self._valid_attribute(f'{split}_dataset', 'dataset')
        batch_size = self._valid_attribute(f'{split}_batch_size', 'batch_size')
        train = split == 'train'
        drop_last = train and len(dataset) > batch_size
        if isinstance(dataset, TensorMultiModalDataset):
            order = RandomSampler(dataset) if train else SequentialSampler(dataset)
            sampler = BatchSampler(order, batch_size, drop_last=drop_last)
            return DataLoader(_BatchView(dataset), batch_size=None, sampler=sampler)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
        )

    def on_after_batch_transfer(
        self, batch: dict[str, Tensor], dataloader_idx: int
    ) -> dict[str, Tensor]:
        """Augment (training only) and normalise a batch on the device.

        Args:
            batch: A batch of data, already on the device.
            dataloader_idx: Index of the dataloader.

        Returns:
            The augmented, normalised batch.
        """
        if (
            self.trainer is not None
            and self.trainer.training
            and self.train_aug is not None
        ):
            images = {
                k: v for k, v in batch.items() if k.startswith('image_') and v.ndim == 4
            }
            if images:
                batch.update(self.train_aug(images))
        if self.normalizer is None:
            self._ensure_normalizer()
        assert self.normalizer is not None
        device = batch[image_key(modalities_in(batch)[0])].device
        self.normalizer.to(device)
        normalized: dict[str, Tensor] = self.normalizer(batch)
        return normalized

    def train_labels(self) -> Tensor:
        """Return the labels of the training split.

        Returns:
            The ``label`` of every training sample, stacked.

        Raises:
            RuntimeError: If there is no training split.
        """
        dataset = self.train_dataset
        if dataset is None:
            msg = f'{type(self).__name__} has no training split'
            raise RuntimeError(msg)
        if isinstance(dataset, TensorMultiModalDataset):
            return dataset.tensors['label']
        size = len(dataset)  # type: ignore[arg-type]
        return torch.stack([torch.as_tensor(dataset[i]['label']) for i in range(size)])

    def class_weights(self, num_classes: int | None = None) -> Tensor:
        """Return 'balanced' weights computed on the training labels.

        Single-label data: n / (k * count_c) per class (scikit-learn's 'balanced'). Multi-label data: the
        positive weight of each label, negatives / positives.

        Args:
            num_classes: Number of classes of the task, so that classes absent from the split still get
                a (zero) weight; by default the largest label + 1.

        Returns:
            Float32 weights, shape (num_classes,) or (num_labels,); a class or label absent from the
            split gets weight 0.
        """
        labels = self.train_labels()
        if labels.ndim == 2:
            positives = labels.float().sum(0)
            weights = (labels.shape[0] - positives) / positives
            return torch.where(positives > 0, weights, torch.zeros_like(weights))
        counts = torch.bincount(labels.long(), minlength=num_classes or 0).float()
        weights = labels.shape[0] / (counts.numel() * counts)
        return torch.where(counts > 0, weights, torch.zeros_like(weights))

    def target_stats(self) -> tuple[float, float]:
        """Return the mean and standard deviation (ddof=0) of the training targets.

        Returns:
            Mean and std of the regression target.
        """
        labels = self.train_labels().double()
        return float(labels.mean()), float(labels.std(unbiased=False))

    def state_dict(self) -> dict[str, Any]:
        """Return the normalisation statistics, saved in Lightning checkpoints.

        Returns:
            The statistics as lists (empty before setup).
        """
        if self._stats is None:
            return {}
        return {'stats': _stats_to_json(self._stats)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the normalisation statistics from a checkpoint.

        Args:
            state_dict: A dict returned by :meth:`state_dict`.
        """
        if 'stats' in state_dict:
            self._stats = _stats_from_json(state_dict['stats'])
            self.normalizer = ModalityNormalizer(self._stats, fill_nan=self.fill_nan)


class KFoldDataModule(MultiModalDataModule):
    """Datamodule for in-memory benchmarks evaluated with k-fold cross-validation.

    Subclasses load the whole benchmark once (:meth:`load_dataset`); the folds are index subsets of it,
    split by :func:`kfold_split`. By default the folds are random at sample level. With *group_by*
    they keep whole groups together (spatial cross-validation): the groups are a per-sample attribute
    of the loaded dataset (:meth:`~torchgeo_colearn.datasets.TensorMultiModalDataset.attribute`, e.g.
    LFMC's ``site``, CropHarvest's ``dataset``) or, with ``group_by='latlon_block'``, the cells of a
    *block_size*-degree latitude / longitude grid (:func:`latlon_blocks`). :meth:`split_summary` gives
    the number of groups and samples of each split.
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


class _BatchView(Dataset[dict[str, Any]]):
    """Index an in-memory dataset with a list of indices to get a whole batch."""

    def __init__(self, dataset: TensorMultiModalDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> dict[str, Any]:
        return self.dataset.batch(indices)


def _streamed_stats(loader: DataLoader[dict[str, Tensor]]) -> Stats:
    """Accumulate NaN-aware per-channel moments over a dataloader.

    Args:
        loader: Dataloader over the training split.

    Returns:
        Modality mapped to (mean, std).
    """
    moments: dict[str, list[Tensor]] = {}
    for batch in loader:
        for modality in modalities_in(batch):
            x = batch[image_key(modality)]
            axis = channel_axis(x.ndim - 1) + 1
            values = x.movedim(axis, -1).reshape(-1, x.shape[axis]).double()
            finite = torch.isfinite(values)
            values = torch.where(finite, values, 0)
            update = [finite.sum(0).double(), values.sum(0), (values**2).sum(0)]
            if modality in moments:
                moments[modality] = [a + b for a, b in zip(moments[modality], update)]
            else:
                moments[modality] = update
    stats = {}
    for modality, (count, total, squares) in moments.items():
        mean = total / count.clamp(min=1)
        std = (squares / count.clamp(min=1) - mean**2).clamp(min=0).sqrt()
        std = torch.where((count == 0) | (std < 1e-12), torch.ones_like(std), std)
        stats[modality] = (mean.float(), std.float())
    return stats


def _stats_to_json(stats: Stats) -> dict[str, dict[str, list[float]]]:
    return {
        m: {'mean': mean.tolist(), 'std': std.tolist()}
        for m, (mean, std) in stats.items()
    }


def _stats_from_json(data: dict[str, dict[str, list[float]]]) -> Stats:
    return {
        m: (torch.tensor(v['mean']), torch.tensor(v['std'])) for m, v in data.items()
    }


def _read_stats(path: str) -> Stats:
    with open(path) as f:
        return _stats_from_json(json.load(f))


def _write_stats(path: str, stats: Stats) -> None:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        json.dump(_stats_to_json(stats), f, indent=1)
