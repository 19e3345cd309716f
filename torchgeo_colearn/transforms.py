# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Per-modality normalisation applied on the device after the batch transfer."""

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .batch import channel_axis, image_key, present_key, valid_key


class ModalityNormalizer(nn.Module):
    """Z-score every modality of a batch with its own per-channel statistics.

    The statistics are buffers, so they follow the module across devices and are saved with it.
    ``inf`` and ``-inf`` are missing values, like NaN (the statistics of
    :mod:`~torchgeo_colearn.channel_stats` ignore them too): they become NaN. After the z-score,
    NaN values become 0 (the channel mean) when *fill_nan* is set, and for time-series modalities
    the time steps with no finite value are marked invalid in ``valid_<modality>`` (combined with a
    mask the dataset already gave); without *fill_nan* they stay NaN, for the model to reject.

    A batch that says which samples have a modality (``present_<modality>``, (B,) bool) gets zeros in
    the rows of the samples without it and False in their ``valid_<modality>`` rows, whatever
    *fill_nan*: a missing modality is never NaN.
    """

    def __init__(
        self, stats: Mapping[str, tuple[Tensor, Tensor]], fill_nan: bool = True
    ) -> None:
        """Initialize a new ModalityNormalizer instance.

        Args:
            stats: Modality name mapped to (mean, std), each of shape (C,).
            fill_nan: Replace missing values (NaN, inf) by 0 after normalising and record invalid
                time steps; otherwise they stay NaN.
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
            The same dict, with normalised ``image_*`` tensors and updated ``valid_*`` masks; the
            rows of samples marked absent by ``present_*`` are 0 (masks False).

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
            x = x.float()
            x = torch.where(torch.isinf(x), torch.nan, x)
            x = (x - mean.view(shape)) / std.view(shape)
            if self.fill_nan:
                if x.ndim in (3, 5):
                    step_valid = torch.isfinite(x).flatten(2).any(-1)
                    vkey = valid_key(modality)
                    batch[vkey] = (
                        step_valid & batch[vkey] if vkey in batch else step_valid
                    )
                x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
            if (present := batch.get(present_key(modality))) is not None:
                x = _zero_absent(x, present)
                vkey = valid_key(modality)
                if vkey in batch:
                    batch[vkey] = batch[vkey] & present[:, None]
            batch[key] = x
        return batch


def _zero_absent(x: Tensor, present: Tensor) -> Tensor:
    """Set the rows of the samples that lack a modality to 0.

    Args:
        x: A modality of a batch, shape (B, ...).
        present: (B,) bool, True where the sample has the modality.

    Returns:
        *x* with zeros (never NaN) in the absent rows.
    """
    rows = present.view(-1, *([1] * (x.ndim - 1)))
    return torch.where(rows, x, torch.zeros((), dtype=x.dtype, device=x.device))
