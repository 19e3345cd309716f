# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The unfused MDiCo model and objective as of revision ed4f1f6, kept only as the tests' reference.

The equivalence tests compare the package's model and losses with this computation, and load its state
dict as a checkpoint saved before the fused implementation; nothing else may import it. It restates
what the fused implementation replaced, so that the two compute independently:

* TempCNN and MLP with the plain torch layers (``nn.Conv1d`` on (B, C, T), ``nn.Linear``), one module
  per encoder: the package's encoders now run grouped, channels-last layers, the code under test.
* MDiCo with separate ``specific.<m>`` and ``shared.<m>`` encoders: the layout of the old checkpoints.
* The loss terms computed one modality and one head call at a time: the package's task stacks them.

What the fused implementation left as it was is imported: the representation tuple, the heads, the
losses and the timm encoder.
"""

import copy
import itertools
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchgeo_colearn.losses import TaskLoss, contrastive_loss
from torchgeo_colearn.models.encoder import build_encoder as package_build_encoder
from torchgeo_colearn.models.head import Head
from torchgeo_colearn.models.mdico import Representation


class TempCNN(nn.Module):
    """The TempCNN encoder of ed4f1f6: ``nn.Conv1d`` blocks over (B, C, T), one encoder per module."""

    def __init__(self, config: Mapping[str, Any], out_dim: int) -> None:
        """Build the encoder of a ``tempcnn`` config (the tests give every width and rate)."""
        super().__init__()
        channels = config['in_channels']
        features = channels if isinstance(channels, int) else math.prod(channels)
        hidden, kernel = config['hidden_dim'], config['kernel_size']
        dense, dropout = config['dense_dim'], config['dropout']
        self.pooling = config.get('pooling', 'flatten')
        self.blocks = nn.ModuleList()
        for layer in range(config.get('num_layers', 3)):
            self.blocks.append(
                nn.Sequential(
                    nn.Conv1d(
                        features if layer == 0 else hidden,
                        hidden,
                        kernel,
                        padding=kernel // 2,
                    ),
                    nn.BatchNorm1d(hidden),
                    nn.ReLU(),
                    nn.Dropout(dropout),
                )
            )
        seq_len = config.get('seq_len')
        pooled = hidden * seq_len if self.pooling == 'flatten' and seq_len else hidden
        self.dense = nn.Sequential(
            nn.Linear(pooled, dense),
            nn.BatchNorm1d(dense),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.output = nn.Linear(dense, out_dim)
        self.norm: nn.Module = (
            nn.LayerNorm(out_dim) if config.get('layer_norm') else nn.Identity()
        )

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Encode (B, T, C) or (B, T, C, H, W) series, the invalid steps zeroed before each block."""
        features = x.flatten(2).transpose(1, 2)
        step_mask = None if valid is None else valid.unsqueeze(1).to(features.dtype)
        for block in self.blocks:
            if step_mask is not None:
                features = features * step_mask
            features = block(features)
        if self.pooling == 'flatten':
            pooled = features.flatten(1)
        elif step_mask is None:
            pooled = features.mean(-1)
        else:
            pooled = (features * step_mask).sum(-1) / step_mask.sum(-1).clamp(min=1)
        out: Tensor = self.norm(self.output(self.dense(pooled)))
        return out


class MLP(nn.Module):
    """The MLP encoder of ed4f1f6: Linear + BatchNorm + ReLU + Dropout blocks, then a Linear."""

    def __init__(self, config: Mapping[str, Any], out_dim: int) -> None:
        """Build the encoder of an ``mlp`` config (the tests give every width and rate)."""
        super().__init__()
        widths = [config['in_features'], *config['hidden_dims']]
        layers: list[nn.Module] = []
        for width, hidden in itertools.pairwise(widths):
            layers += [
                nn.Linear(width, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
                nn.Dropout(config['dropout']),
            ]
        layers.append(nn.Linear(widths[-1], out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Encode (B, C) vectors (``valid`` is unused)."""
        out: Tensor = self.layers(x)
        return out


def build_encoder(config: Mapping[str, Any], out_dim: int) -> nn.Module:
    """Build the reference encoder of a config: the copies above, else the package's (timm)."""
    match config['name']:
        case 'tempcnn':
            return TempCNN(config, out_dim)
        case 'mlp':
            return MLP(config, out_dim)
        case _:
            return package_build_encoder(config, out_dim)


class MDiCo(nn.Module):
    """The MDiCo model of ed4f1f6: a specific and a shared encoder module per modality."""

    def __init__(self, hparams: Mapping[str, Any], output_dim: int) -> None:
        """Build the model of a CoLearnTask's hyperparameters.

        Args:
            hparams: The task's ``encoders``, ``embed_dim``, ``head_hidden_dim`` and ``shared_init``.
            output_dim: Size of the raw task output.
        """
        super().__init__()
        encoders: Mapping[str, Mapping[str, Any]] = hparams['encoders']
        self.modalities = tuple(encoders)
        self.embed_dim = d = hparams['embed_dim']
        head_hidden_dim = hparams['head_hidden_dim']
        self.specific = nn.ModuleDict()
        self.shared = nn.ModuleDict()
        for m, config in encoders.items():
            self.specific[m] = build_encoder(config, 2 * d)
            self.shared[m] = (
                copy.deepcopy(self.specific[m])
                if hparams['shared_init'] == 'copy'
                else build_encoder(config, 2 * d)
            )
        self.projection = nn.ModuleDict()
        self.main_heads = nn.ModuleDict()
        for m in self.modalities:
            linear = nn.Linear(2 * d, d)
            self.projection[m] = nn.Sequential(linear, nn.BatchNorm1d(d), nn.ReLU())
            self.main_heads[m] = Head(2 * d, output_dim, head_hidden_dim)
        self.aux_head = Head(d, output_dim, head_hidden_dim)
        discriminators = [Head(d, len(encoders), head_hidden_dim) for _ in range(2)]
        self.discriminator_specific, self.discriminator_unused = discriminators

    def encode(
        self, modality: str, x: Tensor, valid: Tensor | None = None
    ) -> Representation:
        """The specific and unused halves of the specific encoder, and the projected shared one."""
        specific, unused = self.specific[modality](x, valid).split(self.embed_dim, 1)
        shared = self.projection[modality](self.shared[modality](x, valid))
        return Representation(specific, unused, shared)

    def predict(self, modality: str, representation: Representation) -> Tensor:
        """The main head of a modality on concat(specific, shared)."""
        features = torch.cat([representation.specific, representation.shared], dim=1)
        out: Tensor = self.main_heads[modality](features)
        return out


def training_losses(
    model: MDiCo,
    criterion: TaskLoss,
    hparams: Mapping[str, Any],
    inputs: Mapping[str, tuple[Tensor, Tensor | None]],
    target: Tensor,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Compute the weighted MDiCo objective of ed4f1f6, one modality and one head call at a time.

    Returns:
        The loss terms with a non-zero weight and the total ``loss``, and each modality's main-head
        outputs.
    """
    reps = {m: model.encode(m, x, valid) for m, (x, valid) in inputs.items()}
    outputs = {m: model.predict(m, rep) for m, rep in reps.items()}
    terms: dict[str, Tensor] = {}
    weights = {
        'main_loss': hparams['main_weight'],
        'aux_loss': hparams['aux_weight'],
        'contrastive_loss': hparams['contrastive_weight'],
        'discriminator_loss': hparams['discriminator_weight'],
    }
    if weights['main_loss']:
        terms['main_loss'] = torch.stack(
            [criterion(out, target) for out in outputs.values()]
        ).mean()
    if weights['aux_loss']:
        aux = [
            criterion(model.aux_head(rep.specific), target)
            + criterion(model.aux_head(rep.shared), target)
            for rep in reps.values()
        ]
        terms['aux_loss'] = torch.stack(aux).mean() / 2
    if weights['contrastive_loss']:
        terms['contrastive_loss'] = contrastive_loss(
            {m: rep.shared for m, rep in reps.items()},
            hparams['temperature'],
            hparams['contrastive_reduction'],
        )
    if weights['discriminator_loss']:
        terms['discriminator_loss'] = discriminator_loss(model, hparams, reps)
    total = sum(
        (weights[name] * value for name, value in terms.items()), torch.zeros(())
    )
    return {**terms, 'loss': total}, outputs


def discriminator_loss(
    model: MDiCo, hparams: Mapping[str, Any], reps: Mapping[str, Representation]
) -> Tensor:
    """Mean over modalities of 1/2 [CE(D1(specific), m) + CE(D2(unused or shared), m)]."""
    losses = []
    for index, modality in enumerate(model.modalities):
        rep = reps[modality]
        target = torch.full((rep.specific.shape[0],), index, device=rep.specific.device)
        second = (
            rep.unused if hparams['discriminator_input'] == 'unused' else rep.shared
        )
        losses.append(
            F.cross_entropy(model.discriminator_specific(rep.specific), target)
            + F.cross_entropy(model.discriminator_unused(second), target)
        )
    return torch.stack(losses).mean() / 2
