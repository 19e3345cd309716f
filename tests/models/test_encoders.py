# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from torchgeo.models import ResNet18_Weights

from torchgeo_colearn.models import (
    ENCODERS,
    MLP,
    Encoder,
    TempCNN,
    TimmEncoder,
    build_encoder,
    register_encoder,
)
from torchgeo_colearn.models.mdico import MDiCo


@pytest.mark.parametrize(
    'config,shape',
    [
        ({'name': 'tempcnn', 'in_channels': 2, 'seq_len': 12}, (12, 2)),
        (
            {'name': 'tempcnn', 'in_channels': [10, 6, 6], 'pooling': 'mean'},
            (7, 10, 6, 6),
        ),
        ({'name': 'mlp', 'in_features': 5}, (5,)),
        ({'name': 'timm', 'model': 'resnet10t', 'in_channels': 13}, (13, 32, 32)),
    ],
)
def test_build_and_run(config: dict[str, Any], shape: tuple[int, ...]) -> None:
    encoder = build_encoder(config, out_dim=8)
    assert encoder.accepts(shape)
    assert encoder(torch.randn(3, *shape)).shape == (3, 8)


def test_tempcnn_layer_norm() -> None:
    encoder = TempCNN(3, 16, seq_len=4, layer_norm=True).eval()
    out = encoder(torch.randn(5, 4, 3))
    assert torch.allclose(out.mean(1), torch.zeros(5), atol=1e-5)


def test_tempcnn_mask_ignores_padding() -> None:
    encoder = TempCNN(2, 8, pooling='mean').eval()
    x = torch.randn(2, 6, 2)
    valid = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    padded = x.clone()
    padded[0, 4:] = 1000.0
    assert torch.allclose(encoder(x, valid), encoder(padded, valid), atol=1e-5)
    # the same series without its padding gives the same embedding
    assert torch.allclose(encoder(x[:1, :4]), encoder(x, valid)[:1], atol=1e-5)


def test_tempcnn_variable_length_needs_mean() -> None:
    with pytest.raises(ValueError, match='needs seq_len'):
        TempCNN(2, 8)


def test_tempcnn_even_kernel() -> None:
    with pytest.raises(ValueError, match='odd'):
        TempCNN(2, 8, seq_len=4, kernel_size=4)


def test_accepts() -> None:
    encoder = TempCNN(3, 8, seq_len=12)
    assert encoder.accepts((12, 3))
    assert not encoder.accepts((12, 4))
    assert not encoder.accepts((3,))


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="'transformer' is not one of"):
        build_encoder({'name': 'transformer'}, 8)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="bad arguments for encoder 'mlp'"):
        build_encoder({'name': 'mlp', 'in_channels': 3}, 8)


def test_register_custom_encoder() -> None:
    @register_encoder('test_linear')
    class Linear(MLP):
        pass

    try:
        assert isinstance(
            build_encoder({'name': 'test_linear', 'in_features': 2}, 4), Encoder
        )
    finally:
        del ENCODERS['test_linear']


def test_torchgeo_weights_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Offline: the weight's state dict comes from a local random resnet18 with 13 bands.
    reference = timm.create_model('resnet18', in_chans=13, num_classes=0)
    state = {k: v + 1 for k, v in reference.state_dict().items()}
    state['fc.weight'] = torch.zeros(1000, 512)
    monkeypatch.setattr(
        type(ResNet18_Weights.SENTINEL2_ALL_MOCO),
        'get_state_dict',
        lambda self, progress: state,
    )
    with pytest.warns(UserWarning, match='fc.weight'):
        encoder = build_encoder(
            {
                'name': 'timm',
                'model': 'resnet18',
                'in_channels': 13,
                'weights': 'ResNet18_Weights.SENTINEL2_ALL_MOCO',
            },
            8,
        )
    assert isinstance(encoder, TimmEncoder)
    loaded = encoder.backbone.state_dict()
    assert torch.equal(loaded['conv1.weight'], state['conv1.weight'])


def test_torchgeo_weights_other_band_count(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = timm.create_model('resnet18', in_chans=13, num_classes=0)
    state = reference.state_dict()
    monkeypatch.setattr(
        type(ResNet18_Weights.SENTINEL2_ALL_MOCO),
        'get_state_dict',
        lambda self, progress: state,
    )
    with pytest.warns(UserWarning, match='conv1.weight'):
        encoder = build_encoder(
            {
                'name': 'timm',
                'model': 'resnet18',
                'in_channels': 2,
                'weights': 'ResNet18_Weights.SENTINEL2_ALL_MOCO',
            },
            8,
        )
    assert encoder(torch.randn(2, 2, 32, 32)).shape == (2, 8)


def test_mdico_shared_init() -> None:
    encoders = {
        'a': {'name': 'mlp', 'in_features': 3},
        'b': {'name': 'mlp', 'in_features': 4},
    }
    copied = MDiCo(encoders, embed_dim=4, output_dim=2, shared_init='copy')
    for p, q in zip(copied.specific['a'].parameters(), copied.shared['a'].parameters()):
        assert torch.equal(p, q) and p is not q
    independent = MDiCo(encoders, embed_dim=4, output_dim=2, shared_init='independent')
    pairs = zip(
        independent.specific['a'].parameters(), independent.shared['a'].parameters()
    )
    assert not all(torch.equal(p, q) for p, q in pairs)


def test_mdico_representation_shapes() -> None:
    model = MDiCo(
        {
            'a': {'name': 'mlp', 'in_features': 3},
            'b': {'name': 'mlp', 'in_features': 4},
        },
        4,
        1,
    )
    rep = model.encode('a', torch.randn(5, 3))
    assert rep.specific.shape == rep.unused.shape == rep.shared.shape == (5, 4)
    assert (rep.shared >= 0).all()  # ReLU projection
    assert model.predict('a', rep).shape == (5,)
