# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Datamodule of the embedded synthetic multi-sensor benchmark."""

import warnings
from collections.abc import Mapping
from typing import Any

from ..datasets.synthetic import (
    DEFAULT_MODALITIES,
    ModalityKind,
    SyntheticMultiSensor,
    check_missing,
)
from ..datasets.tensor import TensorMultiModalDataset
from ..metrics import TaskType
from ..modality_info import ModalityInfo
from .kfold import KFoldDataModule


class SyntheticMultiSensorDataModule(KFoldDataModule):
    """The embedded default benchmark: needs no download, trains in minutes on a CPU.

    Wraps :class:`~torchgeo_colearn.datasets.SyntheticMultiSensor` with k-fold splits (by default 5
    folds: 3 for training, 1 for validation, 1 for testing).
    """

    def __init__(
        self,
        num_samples: int = 2000,
        modality_kinds: dict[str, ModalityKind] = DEFAULT_MODALITIES,
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
        missing: dict[str, float] | None = None,
        batch_size: int = 64,
        num_folds: int = 5,
        modalities: list[str] | dict[str, ModalityKind] | None = None,
        **kwargs: Any,
    ) -> None:
        """Initialize a new SyntheticMultiSensorDataModule instance.

        Args:
            num_samples: Number of samples, all folds together.
            modality_kinds: Generated modalities: name mapped to 'timeseries', 'vector' or 'image';
                2 to 5 modalities.
            task: 'binary', 'multiclass', 'multilabel' or 'regression'.
            num_classes: Number of classes (multiclass).
            num_labels: Number of labels (multilabel).
            shared_dim: Size of the shared latent factor.
            specific_dim: Size of each modality's specific factors.
            specific_scale: Standard deviation of the specific factors.
            noise: Observation noise relative to the signal.
            seq_len: Time steps of time series.
            image_size: Height and width of images, in pixels.
            seed: Seed of the data, of the samples *missing* removes modalities from, and of the
                fold permutation.
            missing: Generated modality mapped to the fraction of all samples that lack it, in
                [0, 1), e.g. ``{'s2': 0.3}``: its values are NaN in those samples, which the
                batches mark with ``present_s2`` (see
                :class:`~torchgeo_colearn.datasets.SyntheticMultiSensor`); the same samples
                whatever the fold.
            batch_size: Size of each mini-batch.
            num_folds: Number of folds.
            modalities: Generated modalities to keep in the batches, e.g. ``['s1']`` to train on
                one alone (the data of each modality does not depend on this selection); None keeps
                them all. A mapping is the former spelling of *modality_kinds*, still accepted with
                a DeprecationWarning.
            **kwargs: The folds and batches of :class:`~torchgeo_colearn.datamodules.KFoldDataModule`,
                e.g. ``fold``, ``val_is_test``, ``augment``, ``stats``, ``min_modalities``.

        Raises:
            ValueError: If *missing* names a modality that is not generated or a rate outside
                [0, 1).
        """
        if isinstance(modalities, Mapping):
            warnings.warn(
                'SyntheticMultiSensorDataModule(modalities={name: kind}) is deprecated: pass the '
                'generated modalities as modality_kinds; modalities now selects among them',
                DeprecationWarning,
                stacklevel=2,
            )
            modality_kinds, modalities = dict(modalities), None
        check_missing(missing, modality_kinds)
        dataset_args: dict[str, Any] = {
            'num_samples': num_samples,
            'modalities': modality_kinds,
            'task': task,
            'num_classes': num_classes,
            'num_labels': num_labels,
            'shared_dim': shared_dim,
            'specific_dim': specific_dim,
            'specific_scale': specific_scale,
            'noise': noise,
            'seq_len': seq_len,
            'image_size': image_size,
            'missing': missing,
        }
        super().__init__(
            SyntheticMultiSensor,
            batch_size,
            num_folds=num_folds,
            seed=seed,
            modalities=modalities,
            **kwargs,
        )
        # the dataset's own 'modalities' (the generated kinds) cannot travel through **kwargs,
        # where the name selects modalities
        self.kwargs = dataset_args
        self.label_task = task
        self.num_classes = {
            'binary': 2,
            'multiclass': num_classes,
            'multilabel': num_labels,
        }.get(task)

    def modality_info(self) -> dict[str, ModalityInfo]:
        """Describe the generated modalities.

        Returns:
            Modality mapped to its shape ((T, 3), (16,) or (4, H, W)), channels ``channel_<i>`` in
            arbitrary units, and ``seq_len`` synthetic steps for time series.
        """
        kinds: dict[str, ModalityKind] = self.kwargs['modalities']
        steps = f'{self.kwargs["seq_len"]} synthetic steps'
        info = {}
        for modality in self.modalities:
            shape = self.sample_shape(modality)
            channels = shape[0] if kinds[modality] != 'timeseries' else shape[1]
            info[modality] = ModalityInfo(
                shape,
                tuple(f'channel_{i}' for i in range(channels)),
                ('arbitrary',) * channels,
                steps if kinds[modality] == 'timeseries' else None,
            )
        return info

    def load_dataset(self) -> TensorMultiModalDataset:
        """Generate the whole benchmark.

        Returns:
            All samples.
        """
        return SyntheticMultiSensor(seed=self.seed, **self.kwargs)
