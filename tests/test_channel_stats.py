# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from torchgeo_colearn.channel_stats import (
    ChannelStatistics,
    ChannelStatsWarning,
    StatsMode,
    cached_stats,
    modality_stats,
)


def series(seed: int = 0, samples: int = 50) -> Tensor:
    """(N, T, C) values around 100 with NaN gaps."""
    x = 100 + 10 * torch.randn(
        samples, 6, 3, generator=torch.Generator().manual_seed(seed)
    )
    x[3, 2, 1] = math.nan
    x[7, :, 0] = math.nan
    return x


def numpy_moments(x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    values = x.reshape(-1, x.shape[-1]).double().numpy()
    return np.nanmean(values, 0), np.nanstd(values, 0)


class TestModalityStats:
    def test_moments_match_numpy(self) -> None:
        x = series()
        mean, std = modality_stats([{'image_ts': x}])['ts']
        expected_mean, expected_std = numpy_moments(x)
        torch.testing.assert_close(mean, torch.tensor(expected_mean).float())
        torch.testing.assert_close(std, torch.tensor(expected_std).float())

    def test_streaming_equals_one_chunk(self) -> None:
        x = series()
        whole = modality_stats([{'image_ts': x}], mode='robust')['ts']
        chunks = [{'image_ts': x[i : i + 7]} for i in range(0, len(x), 7)]
        modes: tuple[StatsMode, ...] = ('moments', 'robust')
        for mode in modes:
            streamed = modality_stats(chunks, mode=mode)['ts']
            reference = (
                modality_stats([{'image_ts': x}])['ts'] if mode == 'moments' else whole
            )
            for got, expected in zip(streamed, reference):
                torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-5)

    def test_infinite_values_are_missing(self) -> None:
        x = series()
        with_inf = x.clone()
        with_inf[3, 2, 1] = math.inf
        with_inf[7, :, 0] = -math.inf
        modes: tuple[StatsMode, ...] = ('moments', 'robust')
        for mode in modes:
            expected = modality_stats([{'image_ts': x}], mode=mode)['ts']
            got = modality_stats([{'image_ts': with_inf}], mode=mode)['ts']
            for a, b in zip(got, expected):
                torch.testing.assert_close(a, b)

    def test_robust_is_median_and_mad(self) -> None:
        x = series()
        mean, std = modality_stats([{'image_ts': x}], mode='robust')['ts']
        values = x.reshape(-1, 3).double().numpy()
        median = np.nanmedian(values, 0)
        mad = np.nanmedian(np.abs(values - median), 0)
        torch.testing.assert_close(mean, torch.tensor(median).float())
        torch.testing.assert_close(std, torch.tensor(1.4826 * mad).float())

    @pytest.mark.parametrize('layout', [(4,), (3, 5, 5), (2, 3, 4, 4)])
    def test_channel_axis_of_every_layout(self, layout: tuple[int, ...]) -> None:
        x = torch.randn(20, *layout)
        axis = 2 if len(layout) in (2, 4) else 1
        channels = x.movedim(axis, -1).reshape(-1, x.shape[axis])
        mean, std = modality_stats([{'image_m': x}])['m']
        torch.testing.assert_close(mean, channels.mean(0), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            std, channels.std(0, unbiased=False), atol=1e-5, rtol=0
        )

    def test_degenerate_channels(self) -> None:
        x = torch.randn(10, 3)
        x[:, 1] = 5.0
        x[:, 2] = math.nan
        with pytest.warns(
            ChannelStatsWarning, match='image_v channel 2 has no finite value'
        ):
            mean, std = modality_stats([{'image_v': x}])['v']
        assert (mean[1].item(), std[1].item()) == (5.0, 1.0)
        assert (mean[2].item(), std[2].item()) == (0.0, 1.0)

    def test_outlier_squashes_channel_warns(self) -> None:
        x = series(samples=200)
        x[17, 4, 2] = 1e30
        ids = [f'site_{i}' for i in range(len(x))]
        with pytest.warns(ChannelStatsWarning) as record:
            stats = modality_stats([{'image_ts': x, 'id': ids}])
        assert len(record) == 1
        message = str(record[0].message)
        assert 'image_ts channel 2' in message
        assert "extreme value 1e+30 in sample 'site_17'" in message
        assert "stats='robust'" in message
        # the warning is right: the other values collapse onto one number
        mean, std = stats['ts']
        others = torch.cat([x[:17, :, 2], x[18:, :, 2]]).flatten()
        z = (others[torch.isfinite(others)] - mean[2]) / std[2]
        assert z.max() - z.min() < 1e-6

    @pytest.mark.parametrize('bad_cells', [1, 2])
    def test_outlier_in_a_small_split_warns(self, bad_cells: int) -> None:
        # 20 values: the 99th percentile alone would interpolate towards the corrupt cells
        x = torch.linspace(-1, 1, 20).reshape(20, 1)
        x[3 : 3 + bad_cells, 0] = 1e30
        with pytest.warns(ChannelStatsWarning, match='extreme value 1e\\+30 in row 3 '):
            modality_stats([{'image_dem': x}])

    def test_no_warning_without_outlier(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter('error', ChannelStatsWarning)
            modality_stats([{'image_dem': torch.linspace(-1, 1, 20).reshape(20, 1)}])
            modality_stats([{'image_dem': torch.tensor([[0.0], [1.0], [2.0]])}])

    def test_outlier_without_ids_names_the_row(self) -> None:
        chunks = [{'image_ts': series(seed)} for seed in range(3)]
        chunks[1]['image_ts'][9, 0, 1] = -1e30
        with pytest.warns(ChannelStatsWarning, match='-1e\\+30 in row 59 '):
            modality_stats(chunks)

    def test_robust_keeps_the_scale_of_the_bulk(self) -> None:
        x = series(samples=200)
        x[17, 4, 2] = 1e30
        mean, std = modality_stats([{'image_ts': x}], mode='robust')['ts']
        z = (x[:, :, 2] - mean[2]) / std[2]
        bulk = z[torch.isfinite(z) & (z.abs() < 1e6)]
        assert 0.5 < bulk.std() < 2

    def test_heavy_but_plausible_tails_do_not_warn(self) -> None:
        generator = torch.Generator().manual_seed(0)
        one_hot = (torch.rand(2000, 1, generator=generator) < 0.005).float()
        skewed = torch.randn(2000, 1, generator=generator).exp() * 100
        x = torch.cat([one_hot, skewed], dim=1)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter('error', ChannelStatsWarning)
            modality_stats([{'image_v': x}])

    def test_quantile_sample_is_bounded_and_deterministic(self) -> None:
        x = torch.randn(5000, 1)
        results = []
        for _ in range(2):
            accumulator = ChannelStatistics('v', sample_size=100)
            for chunk in x.split(300):
                accumulator.update(chunk)
            assert 100 <= len(accumulator.kept[0][0]) <= 200
            results.append(accumulator.compute('robust'))
        assert torch.equal(results[0][0], results[1][0])
        assert abs(float(results[0][0])) < 0.3

    def test_channel_count_change(self) -> None:
        accumulator = ChannelStatistics('v')
        accumulator.update(torch.randn(4, 3))
        with pytest.raises(
            ValueError, match='image_v: a chunk of shape \\(4, 2\\) has 2 channels'
        ):
            accumulator.update(torch.randn(4, 2))

    def test_missing_modality(self) -> None:
        with pytest.raises(ValueError, match='no image_b in a batch'):
            modality_stats([{'image_a': torch.randn(3, 2)}], modalities=['b'])

    def test_unknown_mode(self) -> None:
        with pytest.raises(ValueError, match=r"mode must be one of .*, got 'median'"):
            modality_stats([{'image_a': torch.randn(3, 2)}], mode='median')  # type: ignore[arg-type]

    def test_no_batch(self) -> None:
        with pytest.raises(ValueError, match='no batch of data'):
            modality_stats([])


class TestCachedStats:
    def squashed(self) -> dict[str, tuple[Tensor, Tensor]]:
        x = series(samples=200)
        x[17, 4, 2] = 1e30
        return modality_stats([{'image_ts': x}])

    def test_warnings_are_cached_and_repeated(self, tmp_path: Path) -> None:
        path = str(tmp_path / 'stats.json')
        with pytest.warns(ChannelStatsWarning, match='channel 2'):
            first = cached_stats(path, self.squashed)
        with open(path) as f:
            content = json.load(f)
        assert len(content['warnings']) == 1
        assert not [p for p in os.listdir(tmp_path) if p.endswith('.partial')]

        def fail() -> dict[str, tuple[Tensor, Tensor]]:
            raise AssertionError('recomputed')

        with pytest.warns(ChannelStatsWarning, match=f'channel 2.*read from {path}'):
            again = cached_stats(path, fail)
        for a, b in zip(again['ts'], first['ts']):
            torch.testing.assert_close(a, b)

    def test_unreadable_cache_is_recomputed(self, tmp_path: Path) -> None:
        path = tmp_path / 'stats.json'
        path.write_text('{"stats": ')
        with pytest.warns(UserWarning, match='stats.json is unreadable'):
            stats = cached_stats(
                str(path), lambda: {'a': (torch.zeros(1), torch.ones(1))}
            )
        assert stats['a'][1].item() == 1
        assert json.loads(path.read_text())['stats']['a']['std'] == [1.0]

    def test_unwritable_cache_warns(self, tmp_path: Path) -> None:
        blocker = tmp_path / 'file'
        blocker.write_text('')
        path = str(blocker / 'stats.json')
        with pytest.warns(UserWarning, match='cannot write the statistics cache'):
            cached_stats(path, lambda: {'a': (torch.zeros(1), torch.ones(1))})
