# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Per-modality normalisation applied on the device after the batch transfer."""

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from .batch import channel_axis, image_key, valid_key


def channel_stats(x: Tensor, sample_ndim: int) -> tuple[Tensor, Tensor]:
    """Compute NaN-aware per-channel mean and standard deviation.

    Args:
        x: Samples of one modality, shape (N, *sample_shape), any float dtype. NaN marks missing values.
        sample_ndim: Number of dimensions of one sample (1 to 4, see :mod:`torchgeo_colearn.batch`).

    Returns:
        Mean and standard deviation (population, ddof=0), float32 tensors of shape (C,). A channel
        without any finite value gets mean 0 and std 1; a constant channel gets std 1.
    """
    axis = channel_axis(sample_ndim) + 1
    values = x.movedim(axis, -1).reshape(-1, x.shape[axis]).double()
    finite = torch.isfinite(values)
    count = finite.sum(0)
    filled = torch.where(finite, values, 0)
    mean = filled.sum(0) / count.clamp(min=1)
    var = torch.where(finite, (values - mean) ** 2, 0).sum(0) / count.clamp(min=1)
    std = var.sqrt()
    std = torch.where((count == 0) | (std < 1e-12), torch.ones_like(std), std)
    return mean.float(), std.float()


class ModalityNormalizer(nn.Module):
    """Z-score every modality of a batch with its own per-channel statistics.

    The statistics are buffers, so they follow the module across devices and are saved with it. After
    the z-score, NaN values become 0 (the channel mean) when *fill_nan* is set, and for time-series
    modalities the time steps with no finite value are marked invalid in ``valid_<modality>``
    (combined with a mask the dataset already gave).
    """

    def __init__(
        self, stats: Mapping[str, tuple[Tensor, Tensor]], fill_nan: bool = True
    ) -> None:
        """Initialize a new ModalityNormalizer instance.

        Args:
            stats: Modality name mapped to (mean, std), each of shape (C,).
            fill_nan: Replace NaN by 0 after normalising and record invalid time steps.
        """
        super().__init__()
        self.modalities = tuple(stats)
        self.fill_nan = fill_nan
        for modality, (mean, std) in stats.items():
            self.register_buffer(
                f'{modality}_mean', torch.as_tensor(mean, dtype=torch.float32)
            )
            self.register_buffer(
                f'{modality}_std', torch.as_tensor(std, dtype=torch.float32)
            )

    def stats(self, modality: str) -> tuple[Tensor, Tensor]:
        """Return the statistics of one modality.

        Args:
            modality: Modality name.

        Returns:
            Mean and std, each of shape (C,).
        """
        mean: Tensor = getattr(self, f'{modality}_mean')
        std: Tensor = getattr(self, f'{modality}_std')
        return mean, std

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Normalise the modalities present in a batch.

        Args:
            batch: Batch dict; modalities without statistics are left unchanged.

        Returns:
            The same dict, with normalised ``image_*`` tensors and updated ``valid_*`` masks.

        Raises:
            ValueError: If a modality's channel count differs from its statistics.
        """
        for modality in self.modalities:
            key = image_key(modality)
            if key not in batch:
                continue
            x = batch[key]
            mean, std = self.stats(modality)
            axis = channel_axis(x.ndim - 1) + 1
            if x.shape[axis] != mean.numel():
                msg = (
                    f'{key}: expected {mean.numel()} channels on axis {axis} of a batch of shape '
                    f'{tuple(x.shape)}, got {x.shape[axis]}'
                )
                raise ValueError(msg)
            shape = [1] * x.ndim
            shape[axis] = -1
            x = (x.float() - mean.view(shape)) / std.view(shape)
            if self.fill_nan:
                if x.ndim in (3, 5):
                    step_valid = torch.isfinite(x).flatten(2).any(-1)
                    vkey = valid_key(modality)
                    batch[vkey] = (
                        step_valid & batch[vkey] if vkey in batch else step_valid
                    )
                x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
            batch[key] = x
        return batch


def stats_from_tensors(
    tensors: Mapping[str, Tensor], modalities: Iterable[str]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Compute per-channel statistics of in-memory modalities.

    Args:
        tensors: Batch-like dict holding ``image_<modality>`` tensors of shape (N, *sample_shape).
        modalities: Modalities to compute statistics for.

    Returns:
        Modality mapped to (mean, std).
    """
    stats = {}
    for modality in modalities:
        x = tensors[image_key(modality)]
        stats[modality] = channel_stats(x, x.ndim - 1)
    return stats
