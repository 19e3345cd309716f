# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import torch

from torchgeo_colearn.trainers import SingleModalityTask

from ..fakes import tiny_tempcnn

ENCODERS = {
    's1': tiny_tempcnn(3, 6),
    's2': {'name': 'mlp', 'in_features': 5, 'hidden_dims': [8]},
}


def test_one_modality_is_a_model_trained_alone() -> None:
    model = SingleModalityTask(encoders={'s2': ENCODERS['s2']}, num_classes=3)
    assert model.scenarios() == [('s2',)]
    batch = {'image_s2': torch.randn(4, 5), 'label': torch.tensor([0, 1, 2, 0])}
    inputs = model.modality_inputs(batch, require_all=True)
    losses, outputs = model.losses(inputs, model.encode(inputs), batch['label'])
    assert set(losses) == {'s2_loss', 'loss'} and set(outputs) == {('s2',)}


def test_checkpoints_of_release_0_1_load() -> None:
    model = SingleModalityTask(encoders=ENCODERS, num_classes=3)
    state = {
        key.removeprefix('model.'): value.clone() + 1
        for key, value in model.state_dict().items()
    }
    assert any(key.startswith('encoders.s1.') for key in state)
    checkpoint = {'state_dict': state}
    fresh = SingleModalityTask(encoders=ENCODERS, num_classes=3)
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint['state_dict'])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value + 1)
