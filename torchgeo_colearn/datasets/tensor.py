# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""A multi-modal dataset held in memory as one tensor per key."""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from ..batch import check_keys, modalities_in


class TensorMultiModalDataset(NonGeoDataset):
    """Samples stored as stacked tensors, one per batch key.

    Small benchmarks (time series, vectors, small images) fit in memory: loading them once into
    tensors lets a DataLoader fetch a whole batch with one indexing operation per key instead of
    collating samples in Python (see :meth:`batch` and
    :class:`~torchgeo_colearn.datamodules.MultiModalDataModule`).
    """

    def __init__(
        self, tensors: Mapping[str, Tensor], ids: Sequence[str] | None = None
    ) -> None:
        """Initialize a new TensorMultiModalDataset instance.

        Args:
            tensors: Batch key (``image_<modality>``, ``valid_<modality>``, ``label``, metadata) mapped
                to a tensor whose first axis indexes the samples.
            ids: Optional sample identifiers, returned under ``id``.

        Raises:
            ValueError: If the tensors disagree on the number of samples, or no modality is given.
            KeyError: If a key is not part of the batch convention.
        """
        lengths = {key: len(value) for key, value in tensors.items()}
        if ids is not None:
            lengths['id'] = len(ids)
        if len(set(lengths.values())) > 1:
            msg = f'all tensors must hold the same number of samples, got {lengths}'
            raise ValueError(msg)
        self.tensors = dict(tensors)
        self.modalities = modalities_in(self.tensors)
        if not self.modalities:
            msg = f'no image_<modality> tensor among keys {sorted(self.tensors)}'
            raise ValueError(msg)
        check_keys(self.tensors, self.modalities)
        self.ids = list(ids) if ids is not None else None

    def __len__(self) -> int:
        """Return the number of samples.

        Returns:
            Number of samples.
        """
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return one sample.

        Args:
            index: Sample index.

        Returns:
            The sample dict.
        """
        sample: dict[str, Any] = {
            key: value[index] for key, value in self.tensors.items()
        }
        if self.ids is not None:
            sample['id'] = self.ids[index]
        return sample

    def batch(self, indices: Sequence[int] | Tensor) -> dict[str, Any]:
        """Return a whole batch with one indexing operation per key.

        Args:
            indices: Sample indices.

        Returns:
            The batch dict, each tensor of shape (len(indices), ...); ``id`` is a list.
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        batch: dict[str, Any] = {
            key: value[index] for key, value in self.tensors.items()
        }
        if self.ids is not None:
            batch['id'] = [self.ids[i] for i in index.tolist()]
        return batch

    def subset(self, indices: Sequence[int] | Tensor) -> 'TensorMultiModalDataset':
        """Return a new dataset holding only some samples.

        Args:
            indices: Sample indices to keep.

        Returns:
            A dataset over the selected samples (the tensors are copied).
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        ids = [self.ids[i] for i in index.tolist()] if self.ids is not None else None
        return TensorMultiModalDataset(
            {key: value[index] for key, value in self.tensors.items()}, ids
        )

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """Return the shape of one sample of each modality.

        Returns:
            Modality mapped to its sample shape, e.g. ``{'s1': (12, 2)}``.
        """
        return {m: tuple(self.tensors[f'image_{m}'].shape[1:]) for m in self.modalities}
