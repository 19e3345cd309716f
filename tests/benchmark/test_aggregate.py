# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import math

import pandas as pd
import pytest
from scipy.stats import wilcoxon

from torchgeo_colearn.benchmark import paired_comparison, rank_summary, summarize
from torchgeo_colearn.benchmark.aggregate import wilcoxon_p

REFERENCE = [0.5, 0.6, 0.7, 0.55, 0.65, 0.8]
OTHER = [0.4, 0.65, 0.5, 0.45, 0.6, 0.7]
THIRD = [0.1, 0.2, 0.3, 0.2, 0.1, 0.3]


def scores_frame() -> pd.DataFrame:
    rows = []
    for run, values in enumerate(zip(REFERENCE, OTHER, THIRD)):
        for method, value in zip(('ref', 'other', 'third'), values):
            for metric, score in (('R2', value), ('RMSE', 1 - value)):
                rows.append(
                    {
                        'method': method,
                        'fold': run % 3,
                        'seed': run // 3,
                        'scenario': 's1',
                        'metric': metric,
                        'value': score,
                    }
                )
    # A fused scenario that only the reference predicts.
    rows.append(
        {
            'method': 'ref',
            'fold': 0,
            'seed': 0,
            'scenario': 's1+s2',
            'metric': 'R2',
            'value': 0.9,
        }
    )
    return pd.DataFrame(rows)


def test_summarize_marks_best_in_both_directions() -> None:
    summary = summarize(scores_frame(), ['ref', 'other', 'third'])
    r2 = summary[(summary['metric'] == 'R2') & (summary['scenario'] == 's1')].set_index(
        'method'
    )
    assert r2.loc['ref', 'mean'] == pytest.approx(sum(REFERENCE) / 6)
    assert r2.loc['ref', 'std'] == pytest.approx(pd.Series(REFERENCE).std())
    assert r2.loc['ref', 'best'] and not r2.loc['other', 'best']
    rmse = summary[summary['metric'] == 'RMSE'].set_index('method')
    assert rmse.loc['ref', 'best'] and not rmse.loc['third', 'best']


@pytest.mark.parametrize('metric', ['R2', 'RMSE'])
def test_paired_comparison_with_wilcoxon(metric: str) -> None:
    comparison = paired_comparison(
        scores_frame(), 'ref', metric, ['ref', 'other', 'third']
    )
    assert list(comparison['method']) == ['other', 'third']  # s1+s2: no other method
    row = comparison.iloc[0]
    differences = [r - o for r, o in zip(REFERENCE, OTHER)]
    # Positive favours the reference for both directions of the metric.
    assert row['difference_mean'] == pytest.approx(sum(differences) / 6)
    assert row['wins'] == 5 and row['n'] == 6
    assert row['p_value'] == pytest.approx(wilcoxon(differences).pvalue)
    assert comparison.iloc[1]['wins'] == 6 and comparison.iloc[1]['p_value'] < 0.05


def test_wilcoxon_undefined_cases() -> None:
    assert math.isnan(wilcoxon_p([0.1]))
    assert math.isnan(wilcoxon_p([0.0, 0.0, 0.0]))


def test_rank_summary() -> None:
    ranks = rank_summary(scores_frame(), 'R2', ['ref', 'other', 'third'])
    assert list(ranks.columns) == ['s1', 's1+s2']
    # ref is first in 5 of 6 runs and second once.
    assert ranks.loc['ref', 's1'] == pytest.approx((5 * 1 + 2) / 6)
    assert ranks.loc['third', 's1'] == pytest.approx(3.0)
    assert ranks.loc['ref', 's1+s2'] == 1.0 and ranks['s1+s2'].isna()['other']
    # Lower is better: the same order.
    rmse = rank_summary(scores_frame(), 'RMSE', ['ref', 'other', 'third'])
    assert rmse.loc['ref', 's1'] == pytest.approx(ranks.loc['ref', 's1'])
