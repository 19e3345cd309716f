# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Which samples of a batch hold which modality, and the rows each computation uses.

A batch may mark the samples that lack a modality with ``present_<modality>`` (a (B,) bool,
:func:`~torchgeo_colearn.batch.present_key`). The tasks encode each modality on the samples that
hold it only (so batch normalisation never sees a filled-in sample), compute each loss term on the
samples it concerns, and score each inference scenario on the samples that hold all its modalities.
:class:`Presence` maps between the three sets of rows:

* the batch rows (B), in which targets and scenario scores live;
* a modality's rows, the samples that hold it, in which its inputs and features live;
* a scenario's rows, the samples that hold every modality of the scenario.
"""

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias, TypeVar

import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor

from .batch import image_key, present_key

T = TypeVar('T')

#: A modality's input: the batch tensor and its optional (B, T) validity mask.
ModalityInput: TypeAlias = tuple[Tensor, Tensor | None]


class Presence:
    """The samples of a batch that hold each modality.

    Only the modalities that some sample lacks have a mask; a batch without masks is *complete* and
    every method computes exactly what it computes without this class.
    """

    def __init__(self, size: int, masks: Mapping[str, Tensor] | None = None) -> None:
        """Initialize a new Presence instance.

        Args:
            size: Number of samples B of the batch.
            masks: Modality mapped to a (B,) bool mask, True where the sample holds the modality;
                modalities left out are held by every sample.
        """
        self.size = size
        self.masks = dict(masks or {})

    @classmethod
    def of(cls, batch: Mapping[str, Any], modalities: Iterable[str]) -> 'Presence':
        """Read the ``present_<modality>`` keys of a batch.

        Args:
            batch: A batch holding ``image_<modality>`` for each of *modalities*.
            modalities: The modalities to read, all in the batch.

        Returns:
            The presence of the batch's samples.

        Raises:
            ValueError: If no modality is given, or a mask is not a (B,) bool tensor.
        """
        modalities = list(modalities)
        if not modalities:
            msg = 'Presence.of needs at least one modality'
            raise ValueError(msg)
        size = int(batch[image_key(modalities[0])].shape[0])
        masks = {}
        for modality in modalities:
            mask = batch.get(present_key(modality))
            if mask is None:
                continue
            # a tensor's dtype and shape, or the type of anything else
            found = (
                getattr(mask, 'dtype', type(mask).__name__),
                getattr(mask, 'shape', ()),
            )
            if found != (torch.bool, (size,)):
                msg = (
                    f'{present_key(modality)} must be a bool tensor of shape ({size},) (one flag '
                    f'per sample of the batch), got {found[0]} of shape {tuple(found[1])}'
                )
                raise ValueError(msg)
            masks[modality] = mask
        return cls(size, masks)

    @property
    def complete(self) -> bool:
        """Whether the batch marks no sample as lacking a modality."""
        return not self.masks

    def mask(self, modalities: Iterable[str]) -> Tensor | None:
        """Return the samples that hold every modality of a set.

        Args:
            modalities: Modality names, e.g. a scenario.

        Returns:
            A (B,) bool mask, or None when every sample holds them.
        """
        masks = [self.masks[m] for m in modalities if m in self.masks]
        if not masks:
            return None
        common = masks[0]
        for mask in masks[1:]:
            common = common & mask
        return common

    def count(self, modalities: Iterable[str]) -> int:
        """Return the number of samples that hold every modality of a set.

        Args:
            modalities: Modality names.

        Returns:
            The count (B when every sample holds them); reads the masks back to the host.
        """
        mask = self.mask(modalities)
        return self.size if mask is None else int(mask.sum())

    def select(self, value: T, modalities: Iterable[str]) -> T:
        """Keep the batch rows of the samples that hold every modality of a set.

        Args:
            value: A (B, ...) tensor or a collection (tuple, named tuple, dict) of them; other items
                are kept as they are.
            modalities: Modality names.

        Returns:
            *value* with its tensors indexed by :meth:`mask` (*value* itself when all samples hold
            the modalities).
        """
        mask = self.mask(modalities)
        return value if mask is None else _rows(value, mask)

    def restrict(self, value: T, modality: str, modalities: Iterable[str]) -> T:
        """Keep, among a modality's rows, those of the samples that hold every modality of a set.

        Args:
            value: Tensors whose rows are the samples holding *modality*, e.g. its features.
            modality: The modality whose rows *value* has.
            modalities: Modality names (usually including *modality*).

        Returns:
            *value* on the samples that hold all of *modalities*, in batch order.
        """
        mask = self.mask(modalities)
        if mask is None:
            return value
        own = self.masks.get(modality)
        return _rows(value, mask if own is None else mask[own])

    def expand(self, value: Tensor, modalities: Iterable[str], fill: float) -> Tensor:
        """Place values of the samples that hold a set of modalities back into batch rows.

        Args:
            value: (N, ...) values, one row per sample holding every modality of *modalities* (N is
                :meth:`count`).
            modalities: Modality names.
            fill: Value of the other rows, e.g. NaN for predictions that cannot be made.

        Returns:
            The (B, ...) values.
        """
        mask = self.mask(modalities)
        if mask is None:
            return value
        full = value.new_full((self.size, *value.shape[1:]), fill)
        full[mask] = value
        return full

    def expand_features(self, value: T, modality: str) -> T:
        """Place a modality's features back into batch rows, zero for the samples that lack it.

        Args:
            value: Tensors whose rows are the samples holding *modality*.
            modality: The modality.

        Returns:
            *value* with (B, ...) tensors; the rows of the samples that lack it are zero (False for
            masks).
        """
        mask = self.masks.get(modality)
        if mask is None:
            return value

        def place(tensor: Tensor) -> Tensor:
            full = tensor.new_zeros((self.size, *tensor.shape[1:]))
            full[mask] = tensor
            return full

        result: T = apply_to_collection(value, Tensor, place)
        return result

    def masks_of(self, modalities: Iterable[str]) -> dict[str, Tensor]:
        """Return each modality's (B,) mask, all True for a modality every sample holds.

        Args:
            modalities: Modality names.

        Returns:
            Modality mapped to its mask, on the device of the masks; empty when the batch is
            complete (no device to put them on).
        """
        if self.complete:
            return {}
        everyone = torch.ones_like(next(iter(self.masks.values())))
        return {m: self.masks.get(m, everyone) for m in modalities}

    def matrix(self, modalities: Iterable[str]) -> Tensor | None:
        """Return the (B, M) bool matrix of which sample holds which modality.

        Args:
            modalities: The M modalities, in column order.

        Returns:
            The matrix, on the device of the masks, or None when the batch is complete.
        """
        if self.complete:
            return None
        return torch.stack(list(self.masks_of(modalities).values()), 1)


def _rows(value: T, rows: Tensor) -> T:
    """Index the first axis of every tensor of a collection.

    Args:
        value: A tensor or a collection of tensors (other items are kept).
        rows: A bool mask or an index tensor.

    Returns:
        The indexed collection.
    """
    result: T = apply_to_collection(value, Tensor, lambda tensor: tensor[rows])
    return result


class Inputs(dict[str, ModalityInput]):
    """Every available modality's input, as returned by :meth:`MultiModalTask.modality_inputs`.

    A modality's input holds the rows of the samples that have the modality (all of the batch's
    samples unless the batch marks some as lacking it with ``present_<modality>``);
    :attr:`presence` says which samples those are. A plain mapping of inputs on every sample is
    ``Inputs(mapping, Presence(batch_size))``.
    """

    def __init__(self, inputs: Mapping[str, ModalityInput], presence: Presence) -> None:
        """Initialize a new Inputs instance.

        Args:
            inputs: Modality mapped to (input, validity mask or None), on the modality's rows.
            presence: Which samples of the batch hold each modality.
        """
        super().__init__(inputs)
        self.presence = presence

    def subset(self, modalities: Iterable[str]) -> 'Inputs':
        """Keep some modalities, in training order.

        Args:
            modalities: The modalities to keep (those not in these inputs are ignored).

        Returns:
            The inputs of those modalities, with the same presence.
        """
        wanted = set(modalities)
        return Inputs({m: x for m, x in self.items() if m in wanted}, self.presence)


def complete_samples(
    batch: Mapping[str, Any], modalities: Iterable[str]
) -> dict[str, Any]:
    """Keep the samples of a batch that hold every modality of a set.

    Args:
        batch: A batch (tensors and lists with one row per sample; other values are kept).
        modalities: The modalities every kept sample must hold (those the batch lacks are ignored).

    Returns:
        The batch restricted to those samples (the batch itself when all hold them).
    """
    held = [m for m in modalities if image_key(m) in batch]
    presence = Presence.of(batch, held)
    mask = presence.mask(held)
    if mask is None:
        return dict(batch)
    keep = mask.tolist()

    def rows(value: Any) -> Any:
        if isinstance(value, Tensor) and value.ndim and len(value) == presence.size:
            return value[mask]
        if isinstance(value, list) and len(value) == presence.size:
            return [item for item, kept in zip(value, keep) if kept]
        return value

    return {key: rows(value) for key, value in batch.items()}


def without_lone_samples(
    batch: Mapping[str, Any], modalities: Iterable[str]
) -> tuple[dict[str, Any], list[str]]:
    """Mark a modality absent from a training batch in which a single sample holds it.

    Batch normalisation cannot normalise one sample in training, so an encoder cannot train on a
    modality that only one sample of the batch holds (at high missing rates); that sample keeps its
    other modalities in this step.

    Args:
        batch: A training batch, with ``present_<modality>`` for the modalities some samples lack.
        modalities: The training modalities.

    Returns:
        The batch (the same values, ``present_<modality>`` all False for those modalities) and the
        modalities concerned.
    """
    masks = {
        m: mask
        for m in modalities
        if isinstance(mask := batch.get(present_key(m)), Tensor)
        and mask.dtype == torch.bool
        and mask.ndim == 1
    }
    if not masks:
        return dict(batch), []
    # one read-back for every modality
    counts = torch.stack([mask.sum() for mask in masks.values()]).tolist()
    lone = [m for m, count in zip(masks, counts) if count == 1]
    if not lone:
        return dict(batch), lone
    marked = dict(batch)
    for modality in lone:
        marked[present_key(modality)] = torch.zeros_like(batch[present_key(modality)])
    return marked, lone
