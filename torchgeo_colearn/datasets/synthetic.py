# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""A synthetic multi-sensor benchmark with a known shared latent factor."""

from collections.abc import Iterable, Mapping
from typing import Literal, TypeAlias

import torch
from torch import Generator, Tensor

from ..batch import image_key
from ..metrics import TaskType
from .tensor import TensorMultiModalDataset

#: The kinds of synthetic modalities: (T, C) time series, (C,) vectors, (C, H, W) images.
ModalityKind: TypeAlias = Literal['timeseries', 'vector', 'image']

#: Default modalities: a SAR-like and an optical-like time series, and a static vector.
DEFAULT_MODALITIES: dict[str, ModalityKind] = {
    's1': 'timeseries',
    's2': 'timeseries',
    'dem': 'vector',
}

#: Channels of each kind of modality.
CHANNELS: dict[ModalityKind, int] = {'timeseries': 3, 'vector': 16, 'image': 4}

#: Width of the hidden layer of the random mixing networks.
MIXING_WIDTH = 32

#: Number of smooth spatial patterns images are made of.
SPATIAL_PATTERNS = 6


class SyntheticMultiSensor(TensorMultiModalDataset):
    """Multi-sensor samples generated from a shared latent factor.

    Every sample has a shared latent factor z (``shared_dim`` standard normal values) that all modalities
    observe and that alone determines the label, and, per modality, specific factors (``specific_dim``
    values of standard deviation ``specific_scale``) that are nuisance for the task. Each modality
    renders (z, its specific factors) through its own random two-layer tanh network into its layout,
    plus Gaussian noise of standard deviation ``noise`` times the signal's:

    * 'timeseries': (T, C), ``seq_len`` steps of 3 channels;
    * 'vector': (C,), 16 values;
    * 'image': (C, H, W), 4 bands of ``image_size`` pixels, a mix of smooth spatial patterns.

    Labels from z through another random network: 'binary' (score above its median), 'multiclass'
    (argmax of ``num_classes`` scores), 'multilabel' (``num_labels`` scores above their 60th
    percentile), 'regression' (a score scaled to a 20-80 range, in arbitrary units).

    Each modality alone is a noisy view of z entangled with strong nuisance, so a single-modality model
    must learn to discard the nuisance from labels alone; co-learning gets the other modalities' views of
    the same z as extra supervision. The whole dataset is generated at once from *seed* (no per-sample
    Python work) and is deterministic.

    *missing* removes modalities from samples at random, to train and evaluate with missing
    modalities: modality m is removed from ``round(rate * N)`` samples, all its values set to NaN,
    which the datamodules read as a missing modality (``present_<modality>``). The samples are
    drawn independently per modality with *seed*, after the data and labels, which stay those of
    ``missing=None``; a higher rate removes the modality from a superset of the samples.
    """

    def __init__(
        self,
        num_samples: int = 2000,
        modalities: Mapping[str, ModalityKind] = DEFAULT_MODALITIES,
        task: TaskType = 'multiclass',
        num_classes: int = 4,
        num_labels: int = 5,
        shared_dim: int = 4,
        specific_dim: int = 8,
        specific_scale: float = 1.0,
        noise: float = 0.1,
        seq_len: int = 12,
        image_size: int = 16,
        seed: int = 0,
        missing: Mapping[str, float] | None = None,
    ) -> None:
        """Initialize a new SyntheticMultiSensor instance.

        Args:
            num_samples: Number of samples.
            modalities: Modality name mapped to its kind; 2 to 5 modalities.
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            shared_dim: Size of the shared latent factor.
            specific_dim: Size of each modality's specific factors.
            specific_scale: Standard deviation of the specific factors (nuisance strength).
            noise: Observation noise, relative to the signal's standard deviation.
            seq_len: Time steps of time-series modalities.
            image_size: Height and width of image modalities, in pixels.
            seed: Seed of everything random.
            missing: Modality mapped to the fraction of samples that lack it, in [0, 1); None or
                ``{}`` keeps every modality of every sample.

        Raises:
            ValueError: On a modality count outside 2 to 5, an unknown kind or task, or a
                *missing* entry naming an unknown modality or a rate outside [0, 1).
        """
        if not 2 <= len(modalities) <= 5:
            msg = (
                f'SyntheticMultiSensor makes 2 to 5 modalities, got {list(modalities)}'
            )
            raise ValueError(msg)
        if unknown := {k for k in modalities.values() if k not in CHANNELS}:
            msg = f'modality kinds must be in {sorted(CHANNELS)}, got {sorted(unknown)}'
            raise ValueError(msg)
        if task not in ('binary', 'multiclass', 'multilabel', 'regression'):
            msg = f"task must be 'binary', 'multiclass', 'multilabel' or 'regression', got {task!r}"
            raise ValueError(msg)
        check_missing(missing, modalities)
        generator = torch.Generator().manual_seed(seed)
        shared = torch.randn(num_samples, shared_dim, generator=generator)
        tensors: dict[str, Tensor] = {}
        for name, kind in modalities.items():
            specific = specific_scale * torch.randn(
                num_samples, specific_dim, generator=generator
            )
            factors = torch.cat([shared, specific], dim=1)
            tensors[image_key(name)] = _render(
                factors, kind, seq_len, image_size, noise, generator
            )
        tensors['label'] = _labels(shared, task, num_classes, num_labels, generator)
        if missing:
            _remove(tensors, modalities, missing, generator)
        self.task = task
        self.kinds = dict(modalities)
        super().__init__(tensors, ids=[f'synthetic_{i}' for i in range(num_samples)])


def check_missing(
    missing: Mapping[str, float] | None, modalities: Iterable[str]
) -> None:
    """Check the *missing* option of the synthetic benchmark.

    Args:
        missing: Modality mapped to the fraction of samples that lack it, or None.
        modalities: The generated modalities.

    Raises:
        ValueError: If *missing* names a modality that is not generated, or a rate is outside
            [0, 1).
    """
    if not missing:
        return
    names = list(modalities)
    if unknown := sorted(set(missing) - set(names)):
        msg = f'missing names modalities {unknown} that are not generated; generated: {names}'
        raise ValueError(msg)
    if bad := {m: r for m, r in missing.items() if not 0 <= r < 1}:
        msg = f'missing rates must be in [0, 1), got {bad}'
        raise ValueError(msg)


def _remove(
    tensors: dict[str, Tensor],
    modalities: Iterable[str],
    missing: Mapping[str, float],
    generator: Generator,
) -> None:
    """Remove modalities from random samples: set all their values to NaN.

    One uniform key per sample and modality, drawn for every modality in order whatever *missing*
    holds; modality m is removed from the ``round(rate * N)`` samples with the smallest keys.

    Args:
        tensors: The generated modalities, changed in place.
        modalities: The generated modalities, in order.
        missing: Modality mapped to the fraction of samples that lack it.
        generator: Random generator, past the data and labels.
    """
    for name in modalities:
        x = tensors[image_key(name)]
        keys = torch.rand(len(x), generator=generator)
        count = round(missing.get(name, 0.0) * len(x))
        x[keys.argsort()[:count]] = torch.nan


def _mix(factors: Tensor, out_features: int, generator: Generator) -> Tensor:
    """Map factors through a random two-layer tanh network.

    Args:
        factors: (N, k) factors.
        out_features: Output size.
        generator: Random generator.

    Returns:
        (N, out_features) values of unit scale.
    """
    first = (
        torch.randn(factors.shape[1], MIXING_WIDTH, generator=generator)
        / factors.shape[1] ** 0.5
    )
    second = (
        torch.randn(MIXING_WIDTH, out_features, generator=generator) / MIXING_WIDTH**0.5
    )
    mixed: Tensor = torch.tanh(factors @ first) @ second
    return mixed


def _render(
    factors: Tensor,
    kind: ModalityKind,
    seq_len: int,
    image_size: int,
    noise: float,
    generator: Generator,
) -> Tensor:
    """Render factors as one modality.

    Args:
        factors: (N, k) shared and specific factors.
        kind: The modality kind.
        seq_len: Time steps of time series.
        image_size: Size of images.
        noise: Relative noise level.
        generator: Random generator.

    Returns:
        The float32 modality tensor, (N, T, C), (N, C) or (N, C, H, W).
    """
    num_samples = factors.shape[0]
    channels = CHANNELS[kind]
    match kind:
        case 'timeseries':
            # A smooth trajectory per channel: random temporal bases weighted by the mixed factors.
            steps = torch.linspace(0, 1, seq_len)
            frequencies = torch.rand(MIXING_WIDTH, generator=generator) * 3 + 0.5
            phases = torch.rand(MIXING_WIDTH, generator=generator) * 6.3
            bases = torch.sin(steps[:, None] * frequencies * 6.3 + phases)  # (T, W)
            weights = _mix(factors, MIXING_WIDTH * channels, generator)
            signal = torch.einsum(
                'tw,nwc->ntc', bases, weights.view(num_samples, MIXING_WIDTH, channels)
            )
        case 'vector':
            signal = _mix(factors, channels, generator)
        case 'image':
            coords = torch.linspace(-1, 1, image_size)
            centres = torch.rand(SPATIAL_PATTERNS, 2, generator=generator) * 2 - 1
            distance = (coords[None, :, None] - centres[:, 0, None, None]) ** 2 + (
                coords[None, None, :] - centres[:, 1, None, None]
            ) ** 2
            patterns = torch.exp(-distance / 0.3)  # (P, H, W)
            weights = _mix(factors, channels * SPATIAL_PATTERNS, generator)
            signal = torch.einsum(
                'ncp,phw->nchw',
                weights.view(num_samples, channels, SPATIAL_PATTERNS),
                patterns,
            )
    scale = signal.std()
    return (
        signal + noise * scale * torch.randn(signal.shape, generator=generator)
    ).float()


def _labels(
    shared: Tensor,
    task: TaskType,
    num_classes: int,
    num_labels: int,
    generator: Generator,
) -> Tensor:
    """Derive labels from the shared factor.

    Args:
        shared: (N, shared_dim) shared factor.
        task: The task type.
        num_classes: Number of classes (multiclass).
        num_labels: Number of labels (multilabel).
        generator: Random generator.

    Returns:
        int64 (N,) classes, float32 (N, L) multi-hot labels or float32 (N,) values.
    """
    match task:
        case 'binary':
            score = _mix(shared, 1, generator)[:, 0]
            return (score > score.median()).long()
        case 'multiclass':
            return _mix(shared, num_classes, generator).argmax(1)
        case 'multilabel':
            scores = _mix(shared, num_labels, generator)
            return (scores > scores.quantile(0.6, dim=0)).float()
        case 'regression':
            score = _mix(shared, 1, generator)[:, 0]
            return (50 + 30 * (score - score.mean()) / (3 * score.std())).float()
