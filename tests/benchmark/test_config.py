# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import Any

import pytest
import yaml

from torchgeo_colearn.benchmark import ConfigError, deep_merge, load_config
from torchgeo_colearn.benchmark.config import restrict_to
from torchgeo_colearn.benchmark.search_space import with_parameters
from torchgeo_colearn.main import main

from .common import GBDT, MDICO, SINGLE, TINY_ENCODERS, write_config

TWO = {'mdico': MDICO, 'single': SINGLE}


def test_base_and_shared_arguments(tmp_path: Path) -> None:
    methods = {
        'mdico': {
            **MDICO,
            'search_space': {'lr': {'type': 'float', 'low': 1e-4, 'high': 1e-2}},
        },
        'no_con': {
            'base': 'mdico',
            'init_args': {'contrastive_weight': 0.0},
            'data': {'val_is_test': True},
        },
        'gbdt': GBDT,
    }
    benchmark = load_config(write_config(tmp_path, methods))
    mdico, no_con, gbdt = benchmark.methods
    assert no_con.class_path.endswith('CoLearnTask')
    assert no_con.init_args['contrastive_weight'] == 0.0
    assert no_con.init_args['encoders'] == TINY_ENCODERS
    assert no_con.data_args == {'val_is_test': True}
    # The search space is not inherited (a variant fixes what its base may tune).
    assert mdico.search_space['lr']['log'] is False and no_con.search_space == {}
    # Shared model arguments go to the classes that accept them only.
    assert gbdt.init_args == {
        'task': 'regression',
        'max_iter': 20,
        'min_samples_leaf': 5,
    }
    assert benchmark.folds == [0, 1]


def test_whole_trainer_section_per_method(tmp_path: Path) -> None:
    methods = {
        'single': SINGLE,
        'longer': {
            'base': 'single',
            'trainer': {
                'patience': 7,
                'precision': 'bf16-mixed',
                'gradient_clip_val': 1.0,
            },
        },
    }
    single, longer = load_config(write_config(tmp_path, methods)).methods
    assert single.runner['patience'] == 1 and longer.runner['patience'] == 7
    assert longer.trainer['max_epochs'] == single.trainer['max_epochs'] == 1
    assert (
        longer.trainer['precision'] == 'bf16-mixed'
        and 'precision' not in single.trainer
    )
    assert longer.trainer['gradient_clip_val'] == 1.0


@pytest.mark.parametrize(
    ('methods', 'extra', 'message'),
    [
        (
            {'mdico': {**MDICO, 'init_args': {'contrastiv_weight': 1.0}}},
            {},
            r'methods\.mdico\.init_args.*contrastiv_weight',
        ),
        (
            {'mdico': {**MDICO, 'init_args': {'lr': 'fast'}}},
            {},
            r'methods\.mdico\.init_args.*lr',
        ),
        (
            {'single': {**SINGLE, 'trainer': {'max_epoch': 3}}},
            {},
            r'methods\.single\.trainer.*max_epoch',
        ),
        (
            {'single': {**SINGLE, 'trainer': {'callbacks': []}}},
            {},
            r'set by the runner',
        ),
        (
            {'single': {**SINGLE, 'trainer': {'patience': -1}}},
            {},
            r'patience must be a non-negative',
        ),
        (
            {'single': {**SINGLE, 'data': {'batch_sise': 8}}},
            {},
            r'methods\.single\.data.*batch_sise',
        ),
        ({'x': {**SINGLE, 'init': {}}}, {}, r"methods\.x: unknown keys \['init'\]"),
        ({'x': {'base': 'nope'}}, {}, "unknown method 'nope'"),
        (
            {'x': {'class_path': 'torchgeo_colearn.Nope'}},
            {},
            r'methods\.x: cannot import',
        ),
        (
            {'a': {**MDICO, 'teacher': 'b'}, 'b': {**MDICO, 'teacher': 'a'}},
            {},
            'unknown or circular',
        ),
        (
            {
                's': {**SINGLE, 'per_modality': True},
                'd': {
                    'class_path': 'torchgeo_colearn.trainers.distillation.DistillationTask',
                    'teacher': 's',
                },
            },
            {},
            'is a per-modality method',
        ),
        (TWO, {'epochs': 3}, 'unknown top-level keys'),
        (
            TWO,
            {
                'model': {
                    'task': 'regression',
                    'encoders': TINY_ENCODERS,
                    'embed_dims': 4,
                }
            },
            r"model: \['embed_dims'\] are accepted by no method",
        ),
        (TWO, {'tuning': {'trials': 0}}, 'tuning.trials must be a positive integer'),
        (
            {'m': {**MDICO, 'search_space': {'lr': {'type': 'float', 'low': 0.1}}}},
            {},
            r"search_space\.lr: missing \['high'\]",
        ),
        (
            {
                'm': {
                    **MDICO,
                    'search_space': {
                        'encoders.*.dropot': {'type': 'float', 'low': 0.0, 'high': 0.5}
                    },
                }
            },
            {},
            r'search_space\.encoders\.\*\.dropot=0\.0.*dropot',
        ),
        (
            {
                'm': {
                    **MDICO,
                    'search_space': {
                        'optimizer': {
                            'type': 'categorical',
                            'choices': ['adam', 'lion'],
                        }
                    },
                }
            },
            {},
            r"search_space\.optimizer='lion'",
        ),
        (
            {
                'm': {
                    **MDICO,
                    'data': {'val_is_test': True},
                    'search_space': {
                        'lr': {'type': 'float', 'low': 0.001, 'high': 0.01}
                    },
                }
            },
            {'tuning': {'trials': 2}},
            'would select on the test fold',
        ),
        *(
            ({'m': {**MDICO, 'search_space': {path: spec}}}, {}, match)
            for path, spec, match in (
                ('lr', {'type': 'gaussian'}, r'search_space\.lr: needs a type'),
                (
                    'lr',
                    {'type': 'float', 'low': 1, 'high': 2, 'step': 1},
                    'unknown keys',
                ),
                (
                    'lr',
                    {'type': 'float', 'low': 0.1, 'high': 0.01},
                    'low must be below',
                ),
                ('optimizer', {'type': 'categorical', 'choices': []}, 'non-empty list'),
                ('lr.value', {'type': 'float', 'low': 0.1, 'high': 0.2}, 'not a dict'),
            )
        ),
    ],
)
def test_invalid_config_names_the_culprit(
    tmp_path: Path, methods: dict[str, Any], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, methods, **extra))


def test_typo_exits_before_any_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    methods = {
        'single': {**SINGLE, 'per_modality': True},
        'mdico': {**MDICO, 'init_args': {'temprature': 0.1}},
    }
    config = write_config(tmp_path, methods)
    with pytest.raises(SystemExit) as exit_info:
        main(['benchmark', '--config', config, '--output', str(tmp_path / 'out')])
    assert exit_info.value.code != 0
    assert 'methods.mdico.init_args' in str(exit_info.value.code)
    assert 'temprature' in str(exit_info.value.code)
    assert not (tmp_path / 'out').exists()


def test_per_modality_parts(tmp_path: Path) -> None:
    benchmark = load_config(
        write_config(tmp_path, {'single': {**SINGLE, 'per_modality': True}})
    )
    (single,) = benchmark.methods
    assert single.parts() == ['s1', 's2']
    init_args, data_args = restrict_to(single, 's2')
    assert list(init_args['encoders']) == ['s2'] and data_args == {'modalities': ['s2']}


def test_per_modality_needs_the_datamodule_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a `modalities` option the datamodule cannot be restricted: named at load time."""
    config = yaml.safe_load(
        Path(write_config(tmp_path, {'single': SINGLE})).read_text()
    )
    config['data']['class_path'] = 'tests.benchmark.common.WithoutSelection'
    config['methods']['single']['per_modality'] = True
    path = tmp_path / 'plain.yaml'
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(
        ConfigError,
        match=r"methods\.single\.data \(per-modality run 's1'\).*modalities",
    ):
        load_config(str(path))


def test_with_parameters_sets_nested_paths() -> None:
    arguments: dict[str, Any] = {
        'lr': 0.1,
        'encoders': {'a': {'dropout': 0.1}, 'b': {'dropout': 0.2}},
    }
    tuned = with_parameters(arguments, {'lr': 0.01, 'encoders.*.dropout': 0.3})
    assert tuned == {
        'lr': 0.01,
        'encoders': {'a': {'dropout': 0.3}, 'b': {'dropout': 0.3}},
    }
    assert arguments['encoders']['a']['dropout'] == 0.1


def test_deep_merge() -> None:
    base = {'a': {'x': 1, 'y': 2}, 'b': 1}
    assert deep_merge(base, {'a': {'y': 3}}) == {'a': {'x': 1, 'y': 3}, 'b': 1}
    assert base == {'a': {'x': 1, 'y': 2}, 'b': 1}


def test_shipped_configs_parse() -> None:
    for name in ('lfmc', 'synthetic', 'cropharvest_binary'):
        benchmark = load_config(f'experiments/benchmarks/{name}.yaml')
        assert benchmark.reference == 'mdico'
        names = [m.name for m in benchmark.methods]
        assert names.index('feature_fusion') < names.index('distillation')
        assert benchmark.method('single').per_modality
        assert not benchmark.method('single_joint').per_modality
        assert 'gbdt' in names
    lfmc = load_config('experiments/benchmarks/lfmc.yaml')
    assert lfmc.data['init_args']['root'].startswith('../shared/data/')


def test_extends_merges_over_another_config(tmp_path: Path) -> None:
    base = write_config(tmp_path, {'mdico': MDICO, 'single': SINGLE})
    derived = tmp_path / 'derived.yaml'
    derived.write_text(
        yaml.safe_dump(
            {
                'extends': Path(base).name,
                'name': 'derived',
                'data': {'init_args': {'num_folds': 5}},
                'methods': {
                    'single': None,
                    'mdico_small': {'base': 'mdico', 'init_args': {'embed_dim': 2}},
                },
            }
        )
    )
    benchmark = load_config(str(derived))
    assert benchmark.name == 'derived'
    assert [m.name for m in benchmark.methods] == ['mdico', 'mdico_small']
    assert benchmark.data['init_args']['num_folds'] == 5
    assert benchmark.data['init_args']['num_samples'] == 64
    assert benchmark.method('mdico_small').init_args['embed_dim'] == 2
    assert '# extends tiny.yaml' in benchmark.text
