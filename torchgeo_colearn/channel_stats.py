# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Per-channel normalisation statistics of modalities, accumulated over batches."""

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, get_args

import torch
from torch import Tensor

from .batch import channel_axis, image_key, modalities_in
from .cache import atomic_write

#: Modality mapped to its per-channel (mean, std), each of shape (C,).
Stats: TypeAlias = dict[str, tuple[Tensor, Tensor]]

#: How the statistics are computed: ``'moments'`` (mean and standard deviation, ddof=0) or
#: ``'robust'`` (median and 1.4826 x the median absolute deviation).
StatsMode: TypeAlias = Literal['moments', 'robust']

#: Finite values per channel kept (uniformly at random, with a fixed seed) for the quantiles: the
#: median and MAD of ``'robust'`` and the squash check; between this and twice this many once a
#: channel has more values. Exact when a channel has fewer values.
SAMPLE_SIZE = 2**16

#: A channel is squashed when its central values (the 1% lowest and 1% highest left out) span fewer
#: standard deviations than this after normalisation (4.65 for a Gaussian, 3.4 for a uniform).
SQUASH_LIMIT = 0.5

#: Share of the values left out at each end for the squash check, and the least number left out:
#: with fewer than 100 values, 1% would leave a single corrupt cell among the central values.
TRIM_SHARE = 0.01
MIN_TRIM = 2

#: Scale of the median absolute deviation that estimates the standard deviation of a Gaussian.
MAD_SCALE = 1.4826

#: Constant channels (std below this) get std 1.
_MIN_STD = 1e-12


class ChannelStatsWarning(UserWarning):
    """A channel's statistics are degenerate: no finite value, or squashed by extreme values."""


class ChannelStatistics:
    """Streaming NaN-aware statistics of the channels of one modality.

    Feed the samples in chunks with :meth:`update` (in-memory data is one chunk), then read the
    statistics with :meth:`compute`. Only finite values count: NaN, ``inf`` and ``-inf`` are missing
    values. The moments are merged exactly across chunks (Chan et al.'s parallel algorithm, in
    float64), whatever the chunking; the quantiles come from all the values of a channel up to
    :data:`SAMPLE_SIZE` of them, and beyond from a uniform sample of 1 to 2 times that size drawn
    with a fixed seed, deterministic for a given chunking. The smallest and largest value of each channel and the sample that holds it are
    tracked for the messages of :meth:`check`.
    """

    def __init__(self, modality: str, sample_size: int = SAMPLE_SIZE) -> None:
        """Initialize a new ChannelStatistics instance.

        Args:
            modality: Modality name, for the messages.
            sample_size: Values kept per channel for the quantiles.
        """
        self.modality = modality
        self.sample_size = sample_size
        self.generator = torch.Generator().manual_seed(0)
        self.samples_seen = 0
        self.count = torch.zeros(0, dtype=torch.float64)
        self.mean = torch.zeros(0, dtype=torch.float64)
        self.m2 = torch.zeros(0, dtype=torch.float64)
        self.extremes: list[dict[str, tuple[float, str]]] = []
        self.kept: list[tuple[Tensor, Tensor]] = []
        self.key_limits: list[float] = []

    @property
    def num_channels(self) -> int:
        """Channels seen so far (0 before the first update).

        Returns:
            The number of channels.
        """
        return len(self.count)

    def update(self, x: Tensor, ids: Sequence[str] | None = None) -> None:
        """Add a chunk of samples.

        Args:
            x: Samples of the modality, shape (N, *sample_shape) with a sample layout of
                :mod:`torchgeo_colearn.batch`; any float or integer dtype.
            ids: Identifiers of the N samples, for the messages; by default their position in the
                stream (``row <n>``).

        Raises:
            ValueError: If the number of channels differs from the previous chunks.
        """
        axis = channel_axis(x.ndim - 1) + 1
        channels = x.shape[axis]
        if not self.num_channels:
            self._start(channels)
        elif channels != self.num_channels:
            msg = (
                f'image_{self.modality}: a chunk of shape {tuple(x.shape)} has {channels} channels '
                f'on axis {axis}, earlier chunks had {self.num_channels}'
            )
            raise ValueError(msg)
        # (C, N, S): the values of each channel are contiguous, per sample
        values = (
            x.movedim(axis, 0)
            .to(torch.float64, memory_format=torch.contiguous_format)
            .reshape(channels, len(x), -1)
        )
        finite = torch.isfinite(values)
        self._update_moments(values, finite)
        self._update_extremes(values, finite, ids)
        for c in range(channels):
            self._update_sample(c, values[c][finite[c]])
        self.samples_seen += len(x)

    def compute(self, mode: StatsMode = 'moments') -> tuple[Tensor, Tensor]:
        """Return the statistics of the channels.

        Args:
            mode: ``'moments'``: mean and standard deviation (ddof=0) of the finite values.
                ``'robust'``: median and 1.4826 x median absolute deviation (the standard deviation
                of a Gaussian, insensitive to a few extreme values); a channel whose MAD is 0 (more
                than half of its values equal) falls back to its standard deviation.

        Returns:
            Float32 (mean, std) of shape (C,). A channel without any finite value gets (0, 1); a
            constant channel gets std 1.
        """
        std = (self.m2 / self.count.clamp(min=1)).sqrt()
        center = self.mean.clone()
        if mode == 'robust':
            for c, (values, _) in enumerate(self.kept):
                if len(values):
                    center[c] = torch.quantile(values, 0.5)
                    mad = MAD_SCALE * torch.quantile((values - center[c]).abs(), 0.5)
                    if mad > _MIN_STD:
                        std[c] = mad
        empty = self.count == 0
        center = torch.where(empty, torch.zeros_like(center), center)
        std = torch.where(empty | (std < _MIN_STD), torch.ones_like(std), std)
        return center.float(), std.float()

    def check(self, std: Tensor) -> list[str]:
        """Describe the channels the statistics would damage.

        A channel is reported when it has no finite value (it becomes 0 everywhere), or when its
        central values (all but the :data:`TRIM_SHARE` lowest and highest, at least :data:`MIN_TRIM`
        at each end) span fewer than :data:`SQUASH_LIMIT` standard deviations *std*: a few extreme
        values (a corrupt cell, a no-data marker, a ratio with a near-zero denominator) inflate the
        standard deviation and z-scoring squashes every other value of the channel to about the same
        number. Channels whose central values are constant (e.g. a rare one-hot class), and channels
        with too few values to leave any out, are not reported.

        Args:
            std: The standard deviations that will be used, shape (C,).

        Returns:
            One message per reported channel, naming the modality, the channel, the value furthest
            from the median and the sample that holds it.
        """
        messages = []
        for c, (values, _) in enumerate(self.kept):
            where = f'image_{self.modality} channel {c}'
            if not len(values):
                messages.append(
                    f'{where} has no finite value in the training split; it is set to 0 '
                    'everywhere after normalisation'
                )
                continue
            ordered = values.sort().values
            trim = max(MIN_TRIM, math.ceil(TRIM_SHARE * len(ordered)))
            if len(ordered) <= 2 * trim:
                continue
            low, high = float(ordered[trim]), float(ordered[-1 - trim])
            median = float(ordered.quantile(0.5))
            spread = (high - low) / float(std[c])
            if high == low or spread >= SQUASH_LIMIT:
                continue
            (low_value, low_at), (high_value, high_at) = (
                self.extremes[c]['min'],
                self.extremes[c]['max'],
            )
            value, at = (
                (high_value, high_at)
                if high_value - median >= median - low_value
                else (low_value, low_at)
            )
            messages.append(
                f'{where}: its central values ({low:.4g} to {high:.4g}, all but the {trim} lowest '
                f'and {trim} highest) span only '
                f'{spread:.3g} standard deviations (std {float(std[c]):.4g}), so normalising '
                f'squashes them together; extreme value {value:.6g} in {at} (median {median:.4g}). '
                "Fix or blank (NaN) the value, or pass stats='robust'"
            )
        return messages

    def _start(self, channels: int) -> None:
        """Allocate the accumulators.

        Args:
            channels: Number of channels.
        """
        self.count = torch.zeros(channels, dtype=torch.float64)
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)
        self.extremes = [
            {'min': (float('inf'), ''), 'max': (float('-inf'), '')}
            for _ in range(channels)
        ]
        self.kept = [
            (torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64))
            for _ in range(channels)
        ]
        self.key_limits = [1.0] * channels

    def _update_moments(self, values: Tensor, finite: Tensor) -> None:
        """Merge the count, mean and sum of squared deviations of a chunk.

        Args:
            values: (C, N, S) float64 values.
            finite: Their finiteness.
        """
        count = finite.sum((1, 2)).double()
        mean = torch.where(finite, values, 0).sum((1, 2)) / count.clamp(min=1)
        deviations = values - mean[:, None, None]
        m2 = torch.where(finite, deviations**2, 0).sum((1, 2))
        total = self.count + count
        delta = mean - self.mean
        merged_mean = self.mean + delta * count / total.clamp(min=1)
        merged_m2 = self.m2 + m2 + delta**2 * self.count * count / total.clamp(min=1)
        first = self.count == 0
        self.mean = torch.where(first, mean, merged_mean)
        self.m2 = torch.where(first, m2, merged_m2)
        self.count = total

    def _update_extremes(
        self, values: Tensor, finite: Tensor, ids: Sequence[str] | None
    ) -> None:
        """Track the smallest and largest finite value of each channel and where it is.

        Args:
            values: (C, N, S) float64 values.
            finite: Their finiteness.
            ids: Sample identifiers, or None for stream positions.
        """
        for name, fill, reduce, better in (
            ('min', float('inf'), torch.min, float.__lt__),
            ('max', float('-inf'), torch.max, float.__gt__),
        ):
            per_sample = reduce(torch.where(finite, values, fill), dim=2).values
            best, index = reduce(per_sample, dim=1)
            for c, (value, row) in enumerate(zip(best.tolist(), index.tolist())):
                if better(value, self.extremes[c][name][0]):
                    at = (
                        f'sample {ids[row]!r}'
                        if ids is not None
                        else f'row {self.samples_seen + row}'
                    )
                    self.extremes[c][name] = (value, at)

    def _update_sample(self, channel: int, values: Tensor) -> None:
        """Keep a uniform sample of a channel's finite values: those with the smallest random keys.

        Every value gets a uniform random key; the sample holds every value whose key is below a
        limit, lowered to the :attr:`sample_size`-th smallest key whenever the sample grows past twice
        that size (so it holds 1 to 2 times *sample_size* values once that many were seen).

        Args:
            channel: Channel index.
            values: Its finite values in the chunk, flat.
        """
        kept, keys = self.kept[channel]
        new_keys = torch.rand(
            len(values), generator=self.generator, dtype=torch.float64
        )
        limit = self.key_limits[channel]
        if limit < 1:
            chosen = new_keys < limit
            values, new_keys = values[chosen], new_keys[chosen]
        kept, keys = torch.cat([kept, values]), torch.cat([keys, new_keys])
        if len(keys) > 2 * self.sample_size:
            cutoff = torch.kthvalue(keys, self.sample_size).values
            chosen = keys <= cutoff
            kept, keys = kept[chosen], keys[chosen]
            self.key_limits[channel] = float(cutoff)
        self.kept[channel] = (kept, keys)


def modality_stats(
    batches: Iterable[Mapping[str, Any]],
    modalities: Sequence[str] | None = None,
    mode: StatsMode = 'moments',
) -> Stats:
    """Compute per-channel statistics of the modalities of a stream of batches.

    The one implementation of the normalisation statistics: in-memory data is a single batch, a
    dataloader streams. Channels that :meth:`ChannelStatistics.check` reports are warned about.

    Args:
        batches: Batch dicts with ``image_<modality>`` tensors (N, *sample_shape) and optionally
            ``id`` (a list of N sample identifiers, named in the warnings).
        modalities: Modalities to compute statistics for; by default those of the first batch.
        mode: ``'moments'`` or ``'robust'`` (see :meth:`ChannelStatistics.compute`).

    Returns:
        Modality mapped to float32 (mean, std) of shape (C,).

    Raises:
        ValueError: If *mode* is unknown, a requested modality is missing from a batch, or no
            batch is given.

    Warns:
        ChannelStatsWarning: For a channel without a finite value or squashed by extreme values.
    """
    if mode not in get_args(StatsMode):
        msg = f'mode must be one of {get_args(StatsMode)}, got {mode!r}'
        raise ValueError(msg)
    accumulators: dict[str, ChannelStatistics] = {}
    for batch in batches:
        names = modalities_in(batch) if modalities is None else modalities
        ids = batch.get('id')
        for modality in names:
            if image_key(modality) not in batch:
                msg = f'no {image_key(modality)} in a batch with keys {sorted(batch)}'
                raise ValueError(msg)
            accumulator = accumulators.setdefault(modality, ChannelStatistics(modality))
            accumulator.update(
                batch[image_key(modality)], ids if isinstance(ids, list) else None
            )
    if not accumulators:
        msg = 'cannot compute statistics: no batch of data was given'
        raise ValueError(msg)
    stats = {}
    for modality, accumulator in accumulators.items():
        mean, std = accumulator.compute(mode)
        for message in accumulator.check(std):
            warnings.warn(message, ChannelStatsWarning, stacklevel=2)
        stats[modality] = (mean, std)
    return stats


def cached_stats(path: str | None, compute: Callable[[], Stats]) -> Stats:
    """Read statistics from their cache file, or compute and cache them.

    The :class:`ChannelStatsWarning` raised while computing are saved in the cache with the
    statistics and warned again whenever the cache is read, so that a squashed channel is never
    silent. The cache is written atomically; an unwritable or unreadable cache only costs a warning.

    Args:
        path: JSON cache file, named after what the statistics depend on
            (:class:`~torchgeo_colearn.cache.CacheKey`); None for no cache.
        compute: Function computing the statistics.

    Returns:
        Modality mapped to (mean, std).
    """
    if path is not None and os.path.exists(path):
        try:
            with open(path) as f:
                content = json.load(f)
            stats = stats_from_json(content['stats'])
            notes = [str(note) for note in content['warnings']]
        except (OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(
                f'the statistics cache {path} is unreadable ({error}); recomputing it',
                UserWarning,
                stacklevel=3,
            )
        else:
            for note in notes:
                warnings.warn(
                    f'{note} (statistics read from {path})',
                    ChannelStatsWarning,
                    stacklevel=3,
                )
            return stats
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', ChannelStatsWarning)
        stats = compute()
    for warning in caught:
        warnings.warn_explicit(
            warning.message, warning.category, warning.filename, warning.lineno
        )
    if path is not None:
        notes = [
            str(w.message)
            for w in caught
            if issubclass(w.category, ChannelStatsWarning)
        ]
        content = {'stats': stats_to_json(stats), 'warnings': notes}
        try:
            atomic_write(path, lambda partial: _write_json(partial, content))
        except OSError as error:
            warnings.warn(
                f'cannot write the statistics cache {path} ({error}); they will be computed '
                'again next time',
                UserWarning,
                stacklevel=3,
            )
    return stats


def stats_to_json(stats: Stats) -> dict[str, dict[str, list[float]]]:
    """Convert statistics to plain lists (JSON, checkpoints).

    Args:
        stats: Modality mapped to (mean, std).

    Returns:
        Modality mapped to ``{'mean': [...], 'std': [...]}``.
    """
    return {
        m: {'mean': mean.tolist(), 'std': std.tolist()}
        for m, (mean, std) in stats.items()
    }


def stats_from_json(data: Mapping[str, Mapping[str, Sequence[float]]]) -> Stats:
    """Convert statistics back from :func:`stats_to_json`.

    Args:
        data: Modality mapped to ``{'mean': [...], 'std': [...]}``.

    Returns:
        Modality mapped to float32 (mean, std).
    """
    return {
        m: (
            torch.tensor(v['mean'], dtype=torch.float32),
            torch.tensor(v['std'], dtype=torch.float32),
        )
        for m, v in data.items()
    }


def _write_json(path: str, content: Mapping[str, Any]) -> None:
    """Write a JSON file.

    Args:
        path: The file.
        content: The content.
    """
    with open(path, 'w') as f:
        json.dump(content, f, indent=1)
