# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Helpers of the multi-modal datamodules: batch views, modality selection, split introspection."""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    Subset,
)

from ..batch import key_modality
from ..datasets.tensor import TensorMultiModalDataset
from ..distributed import computed_on_rank_zero, world_size


class BatchView(Dataset[dict[str, Any]]):
    """Index an in-memory dataset with a list of indices to get a whole batch."""

    def __init__(
        self, dataset: TensorMultiModalDataset, modalities: Sequence[str] | None
    ) -> None:
        """Initialize a new BatchView instance.

        Args:
            dataset: The in-memory dataset.
            modalities: Modalities to keep in the batches; None keeps them all.
        """
        self.dataset = dataset
        self.modalities = modalities

    def __len__(self) -> int:
        """Return the number of samples.

        Returns:
            Length of the dataset.
        """
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> dict[str, Any]:
        """Return the batch of some samples.

        Args:
            indices: Sample indices, from a batch sampler.

        Returns:
            The batch dict, with the selected modalities only.
        """
        batch = self.dataset.batch(indices)
        if self.modalities is None:
            return batch
        return drop_other_modalities(batch, self.modalities)


class SelectModalities:
    """Collate samples after dropping the modalities that are not selected."""

    def __init__(
        self,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
        modalities: Sequence[str],
    ) -> None:
        """Initialize a new SelectModalities instance.

        Args:
            collate: The collate function of the datamodule.
            modalities: Modalities to keep.
        """
        self.collate = collate
        self.modalities = modalities

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate samples.

        Args:
            samples: Sample dicts.

        Returns:
            The batch, with the selected modalities only.
        """
        return self.collate(
            [drop_other_modalities(s, self.modalities) for s in samples]
        )


def drop_other_modalities(
    sample: dict[str, Any], modalities: Sequence[str]
) -> dict[str, Any]:
    """Remove the keys of the modalities that are not selected.

    Args:
        sample: A sample or batch dict.
        modalities: The selected modalities.

    Returns:
        The dict without the ``image_``, ``valid_``, ``doy_`` and ``present_`` keys of the other
        modalities.
    """
    keep = set(modalities)
    out = {}
    for key, value in sample.items():
        modality = key_modality(key)
        if modality is None or modality in keep:
            out[key] = value
    return out


def current_split(trainer: Any) -> str | None:
    """Tell which split the trainer is running, as TorchGeo's ``on_after_batch_transfer`` does.

    Args:
        trainer: The datamodule's trainer, or None.

    Returns:
        'train', 'val' (validation and sanity check), 'test', 'predict', or None without a trainer
        or outside these stages.
    """
    if trainer is None:
        return None
    for split, flags in (
        ('train', ('training',)),
        ('val', ('validating', 'sanity_checking')),
        ('test', ('testing',)),
        ('predict', ('predicting',)),
    ):
        if any(getattr(trainer, flag, False) for flag in flags):
            return split
    return None


def in_memory_loader(
    dataset: TensorMultiModalDataset,
    batch_size: int,
    train: bool,
    drop_last: bool,
    modalities: Sequence[str] | None,
) -> DataLoader[dict[str, Tensor]]:
    """Batch an in-memory dataset a whole batch at a time, without per-sample collation.

    With several processes (DDP), Lightning deals the batches out to them, so the training
    permutation is drawn from a seed of rank 0.

    Args:
        dataset: The split.
        batch_size: Samples per batch.
        train: Shuffle (training) or keep the order.
        drop_last: Drop the last incomplete batch.
        modalities: The modalities to keep, or None for all.

    Returns:
        The loader.
    """
    generator = None
    if train and world_size() > 1:
        # every process must draw the same permutation
        seed = computed_on_rank_zero(lambda: int(torch.randint(2**62, ())))
        generator = torch.Generator().manual_seed(seed)
    order = (
        RandomSampler(dataset, generator=generator)
        if train
        else SequentialSampler(dataset)
    )
    sampler = BatchSampler(order, batch_size, drop_last=drop_last)
    return DataLoader(BatchView(dataset, modalities), batch_size=None, sampler=sampler)


def labels_of(dataset: Any) -> Tensor | None:
    """Return the labels of a dataset if they are known without reading its samples.

    Args:
        dataset: A dataset.

    Returns:
        The ``label`` tensor of an in-memory dataset, the ``labels`` tensor of a dataset that has
        one per sample (indexed for a :class:`~torch.utils.data.Subset` of one), or None.
    """
    if isinstance(dataset, Subset):
        labels = labels_of(dataset.dataset)
        return None if labels is None else labels[list(dataset.indices)]
    if isinstance(dataset, TensorMultiModalDataset):
        return dataset.tensors.get('label')
    labels = getattr(dataset, 'labels', None)
    if isinstance(labels, Tensor) and len(labels) == len(dataset):
        return labels
    return None


def ids_of(dataset: Any) -> list[str] | None:
    """Return the sample identifiers of a dataset, if it lists them.

    Args:
        dataset: A dataset.

    Returns:
        Its ``ids``, one per sample (those of its samples for a
        :class:`~torch.utils.data.Subset`), or None.
    """
    if isinstance(dataset, Subset):
        ids = ids_of(dataset.dataset)
        return None if ids is None else [ids[i] for i in dataset.indices]
    ids = getattr(dataset, 'ids', None)
    if isinstance(ids, Sequence) and len(ids) == len(dataset):
        return list(ids)
    return None
