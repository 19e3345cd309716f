# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from torchgeo_colearn.benchmark import load_config
from torchgeo_colearn.benchmark.executors import resources

from .common import GBDT, MDICO, run, write_config

ray = pytest.importorskip('ray')


@pytest.fixture
def local_ray() -> Iterator[None]:
    """A local Ray instance with 2 worker CPUs, shared by the calls of a test."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def test_ray_executor_matches_serial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], local_ray: None
) -> None:
    """Two Ray workers run a 2 methods x 2 folds grid and give the serial executor's table."""
    path = Path(write_config(tmp_path, {'mdico': MDICO, 'gbdt': GBDT}))
    serial = run(str(path), tmp_path / 'serial')
    parallel = run(str(path), tmp_path / 'ray', '--executor', 'ray')
    progress = capsys.readouterr().out
    assert '(ray)' in progress and progress.count(': ok in') == 8
    keys = ['method', 'scenario', 'metric']
    merged = serial.merge(parallel, on=keys, suffixes=('_serial', '_ray'))
    assert len(merged) == len(serial) == len(parallel) == 2 * 3 * 3
    pd.testing.assert_series_equal(
        merged['mean_serial'],
        merged['mean_ray'],
        check_names=False,
        rtol=1e-4,
        atol=1e-4,
    )
    # The same resumable folder: a second call skips every unit.
    run(str(path), tmp_path / 'ray', '--executor', 'ray')
    assert capsys.readouterr().out.count('done before, skipped') == 4


def test_resources_from_the_config(tmp_path: Path) -> None:
    methods = {
        'mdico': {
            **MDICO,
            'trainer': {'accelerator': 'gpu', 'devices': 2, 'threads': 4},
        },
        'gbdt': GBDT,
    }
    mdico, gbdt = load_config(write_config(tmp_path, methods)).methods
    assert resources(mdico) == {'num_cpus': 4.0, 'num_gpus': 2.0}
    assert resources(gbdt) == {'num_cpus': 1.0, 'num_gpus': 0.0}
