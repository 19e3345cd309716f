# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""A multi-modal dataset held in memory as one tensor per key."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
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

    Per-sample *metadata* that is not a tensor (site names, source dataset names, dates) is kept next
    to the tensors as NumPy arrays: it follows :meth:`subset`, and :meth:`attribute` reads it (e.g. to
    group the samples of a site into one cross-validation fold), but it is never part of a sample or a
    batch, so models and collation never see it.
    """

    def __init__(
        self,
        tensors: Mapping[str, Tensor],
        ids: Sequence[str] | None = None,
        metadata: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
    ) -> None:
        """Initialize a new TensorMultiModalDataset instance.

        Args:
            tensors: Batch key (``image_<modality>``, ``valid_<modality>``, ``label``, metadata) mapped
                to a tensor whose first axis indexes the samples.
            ids: Optional sample identifiers, returned under ``id``.
            metadata: Optional per-sample attributes kept out of the samples and batches, e.g.
                ``{'site': [...]}``, one value per sample; read them with :meth:`attribute`.

        Raises:
            ValueError: If the tensors, ids and metadata disagree on the number of samples, no
                modality is given, or a metadata name is also a tensor key or ``id``.
            KeyError: If a key is not part of the batch convention.
        """
        lengths = {key: len(value) for key, value in tensors.items()}
        if ids is not None:
            lengths['id'] = len(ids)
        extra = {name: np.asarray(values) for name, values in (metadata or {}).items()}
        for name, values in extra.items():
            if name in tensors or name == 'id':
                msg = f'metadata {name!r} repeats a tensor key or id; give it once'
                raise ValueError(msg)
            if values.ndim != 1:
                msg = f'metadata {name!r} must hold one value per sample, got shape {values.shape}'
                raise ValueError(msg)
            lengths[f'metadata {name}'] = len(values)
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
        self.metadata = extra

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
            A dataset over the selected samples (the tensors and metadata are copied).
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        ids = [self.ids[i] for i in index.tolist()] if self.ids is not None else None
        rows = index.numpy()
        return TensorMultiModalDataset(
            {key: value[index] for key, value in self.tensors.items()},
            ids,
            {name: values[rows] for name, values in self.metadata.items()},
        )

    def attribute(self, name: str) -> np.ndarray:
        """Return one per-sample attribute: a metadata entry or a one-value-per-sample tensor.

        Args:
            name: A metadata name (e.g. ``'site'``), a tensor key with one value per sample (e.g.
                ``'lat'``) or ``'id'``.

        Returns:
            The values, shape (N,).

        Raises:
            KeyError: If the dataset has no such attribute; the message lists those it has.
        """
        if name in self.metadata:
            return self.metadata[name]
        if name in self.tensors and self.tensors[name].ndim == 1:
            return self.tensors[name].numpy()
        if name == 'id' and self.ids is not None:
            return np.asarray(self.ids)
        available = [
            *self.metadata,
            *(key for key, value in self.tensors.items() if value.ndim == 1),
            *(['id'] if self.ids is not None else []),
        ]
        msg = f'no per-sample attribute {name!r}; this dataset has {sorted(available)}'
        raise KeyError(msg)

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """Return the shape of one sample of each modality.

        Returns:
            Modality mapped to its sample shape, e.g. ``{'s1': (12, 2)}``.
        """
        return {m: tuple(self.tensors[f'image_{m}'].shape[1:]) for m in self.modalities}
