# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path

import pandas as pd
import pytest
import torch

from torchgeo_colearn.callbacks import RobustnessEvaluation
from torchgeo_colearn.callbacks.robustness import add_noise, drop_time_steps

from ..fakes import fake_task, loader, make_dataset, make_trainer


def test_curves_files_and_clean_level(tmp_path: Path) -> None:
    model = fake_task('multiclass')
    callback = RobustnessEvaluation(noise_levels=[0.5, 2.0], missing_fractions=[0.5])
    trainer = make_trainer(tmp_path, [callback])
    trainer.test(model, loader(make_dataset('multiclass')), verbose=False)
    log_dir = Path(trainer.log_dir or '')
    for name in (
        'test_robustness.csv',
        'test_robustness_noise.png',
        'test_robustness_missing.png',
    ):
        assert (log_dir / name).exists()
    robustness = pd.read_csv(log_dir / 'test_robustness.csv')
    noise = robustness[robustness['perturbation'] == 'noise']
    assert sorted(set(noise['level'])) == [0.0, 0.5, 2.0]
    assert len(noise) == 3 * 3
    clean = noise[(noise['level'] == 0) & (noise['scenario'] == 's2')]
    assert float(clean['OverallAccuracy'].iloc[0]) == pytest.approx(
        model.scenario_results['test']['s2']['OverallAccuracy']
    )
    # heavy noise costs accuracy against the clean score on average over the scenarios
    by_level = noise.groupby('level')['OverallAccuracy'].mean()
    assert by_level[2.0] <= by_level[0.0] + 0.05
    # only scenarios with a time series (s1) have a missing-step curve
    missing = robustness[robustness['perturbation'] == 'missing']
    assert set(missing['scenario']) == {'s1', 's1+s2'}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={'images': 0}).Reload()
    assert {'test/robustness_noise', 'test/robustness_missing'} <= set(
        events.Tags()['images']
    )


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match='non-negative'):
        RobustnessEvaluation(noise_levels=[-1])
    with pytest.raises(ValueError, match=r'\[0, 1\)'):
        RobustnessEvaluation(missing_fractions=[1.0])
    with pytest.raises(ValueError, match='at least one'):
        RobustnessEvaluation(noise_levels=[0.0])


def test_missing_fractions_without_series_warns(tmp_path: Path) -> None:
    model = fake_task('regression', modalities=('s2', 's4'))
    callback = RobustnessEvaluation(missing_fractions=[0.5], scenarios=['s2'])
    with pytest.warns(UserWarning, match='no time-series modality'):
        make_trainer(tmp_path, [callback], logger=False).test(
            model,
            loader(make_dataset('regression', modalities=('s2', 's4'))),
            verbose=False,
        )
    assert callback.rows == []


def test_drop_time_steps_counts_and_masks() -> None:
    batch = make_dataset('multiclass', num_samples=50).batch(range(50))
    valid = batch['valid_s1']
    dropped = drop_time_steps(batch, 0.5, torch.Generator().manual_seed(1))
    keep = dropped['valid_s1']
    n_valid = valid.sum(1)
    expected = n_valid - torch.minimum((0.5 * n_valid).round().long(), n_valid - 1)
    assert torch.equal(keep.sum(1), expected)
    assert not (keep & ~valid).any()
    assert torch.equal(
        dropped['image_s1'][~keep], torch.zeros_like(dropped['image_s1'][~keep])
    )
    assert torch.equal(dropped['image_s1'][keep], batch['image_s1'][keep])
    assert dropped['image_s2'] is batch['image_s2']
    assert batch['valid_s1'] is valid  # the input batch is left alone


def test_drop_time_steps_keeps_one_step_and_creates_mask() -> None:
    x = torch.ones(4, 5, 2, 3, 3)
    dropped = drop_time_steps({'image_a': x}, 0.99)
    assert dropped['valid_a'].shape == (4, 5)
    assert dropped['valid_a'].sum(1).tolist() == [1, 1, 1, 1]


def test_add_noise_scales_with_level() -> None:
    batch = {'image_a': torch.zeros(2000, 3), 'label': torch.zeros(2000)}
    assert torch.equal(add_noise(batch, 0.0)['image_a'], batch['image_a'])
    noisy = add_noise(batch, 2.0, torch.Generator().manual_seed(0))
    assert float(noisy['image_a'].std()) == pytest.approx(2.0, rel=0.05)
    assert noisy['label'] is batch['label']
