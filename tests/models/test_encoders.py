# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from torch import Tensor
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


@pytest.mark.parametrize(
    'config,shape',
    [
        ({'name': 'tempcnn', 'in_channels': 3, 'seq_len': 6, 'hidden_dim': 8}, (6, 3)),
        (
            {
                'name': 'tempcnn',
                'in_channels': [2, 3, 3],
                'pooling': 'mean',
                'hidden_dim': 8,
                'layer_norm': True,
            },
            (5, 2, 3, 3),
        ),
        ({'name': 'mlp', 'in_features': 5, 'hidden_dims': [8, 6]}, (5,)),
        ({'name': 'mlp', 'in_features': 5, 'hidden_dims': []}, (5,)),
    ],
)
def test_copies_run_independent_encoders(
    config: dict[str, Any], shape: tuple[int, ...]
) -> None:
    # three copies in one module compute what three separate encoders with their slices compute
    grouped = build_encoder(config, out_dim=4, copies=3).eval()
    x = torch.randn(7, *shape)
    out = grouped(x)
    assert out.shape == (7, 12)
    state = grouped.state_dict()
    for copy in range(3):
        single = build_encoder(config, out_dim=4).eval()
        single.load_state_dict(
            {k: v.chunk(3)[copy] if v.dim() else v for k, v in state.items()}
        )
        assert torch.allclose(single(x), out[:, 4 * copy : 4 * (copy + 1)], atol=1e-5)


def test_copies_unsupported() -> None:
    with pytest.raises(ValueError, match="'timm' cannot run 2 copies"):
        build_encoder({'name': 'timm', 'in_channels': 3}, 8, copies=2)


def test_tempcnn_keeps_conv1d_state_dict() -> None:
    # checkpoints of the (B, C, T) implementation use nn.Conv1d weights (C_out, C_in, K)
    encoder = TempCNN(3, 8, seq_len=4, hidden_dim=6, kernel_size=3)
    assert encoder.state_dict()['blocks.0.0.weight'].shape == (6, 3, 3)
    assert encoder.state_dict()['blocks.1.0.weight'].shape == (6, 6, 3)


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


def moco_state_dict(monkeypatch: pytest.MonkeyPatch) -> dict[str, Tensor]:
    """Serve the MoCo Sentinel-2 weights offline: a random 13-band resnet18's state dict.

    Returns:
        The state dict the weights will load; edit it in place to change what they load.
    """
    state: dict[str, Tensor] = timm.create_model(
        'resnet18', in_chans=13, num_classes=0
    ).state_dict()
    monkeypatch.setattr(
        type(ResNet18_Weights.SENTINEL2_ALL_MOCO),
        'get_state_dict',
        lambda self, progress: state,
    )
    return state


def moco_resnet18(in_channels: int) -> Encoder:
    """A timm resnet18 encoder of 8 features with the MoCo Sentinel-2 weights, named in the config."""
    config = {
        'name': 'timm',
        'model': 'resnet18',
        'in_channels': in_channels,
        'weights': 'ResNet18_Weights.SENTINEL2_ALL_MOCO',
    }
    return build_encoder(config, 8)


def test_torchgeo_weights_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = moco_state_dict(monkeypatch)
    state.update({k: v + 1 for k, v in state.items()})
    state['fc.weight'] = torch.zeros(1000, 512)
    with pytest.warns(UserWarning, match='fc.weight'):
        encoder = moco_resnet18(13)
    assert isinstance(encoder, TimmEncoder)
    loaded = encoder.backbone.state_dict()
    assert torch.equal(loaded['conv1.weight'], state['conv1.weight'])


def test_torchgeo_weights_other_band_count(monkeypatch: pytest.MonkeyPatch) -> None:
    moco_state_dict(monkeypatch)
    with pytest.warns(UserWarning, match='conv1.weight'):
        encoder = moco_resnet18(2)
    assert encoder(torch.randn(2, 2, 32, 32)).shape == (2, 8)
