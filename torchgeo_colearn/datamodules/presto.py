# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Datamodules of the four-sensor pixel time series of Presto: fuel moisture and algae blooms."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from typing_extensions import override

from ..datasets.cropharvest_layout import STATIC_MODALITIES, group_modality_info
from ..datasets.presto import (
    AlgaeBlooms,
    FuelMoisture,
    PrestoPixelTimeSeries,
    PrestoTask,
)
from ..datasets.tensor import TensorMultiModalDataset
from ..modality_info import ModalityInfo
from .kfold import KFoldDataModule, kfold_split

#: How the samples are split: the shipped train / test split, or k folds over all samples.
PrestoSplit = Literal['shipped', 'kfold']

#: The four sensors of the benchmarks, one modality each: Sentinel-1, Sentinel-2 with the
#: exporter's index, ERA5 weather and SRTM topography (a static vector).
FOUR_SENSORS: dict[str, list[str]] = {
    's1': ['s1'],
    's2': ['s2', 'ndvi'],
    'weather': ['weather'],
    'topography': ['dem'],
}


class PrestoDataModule(KFoldDataModule):
    """A Presto pixel-time-series benchmark in memory, split as shipped or into k folds.

    The whole folder (:class:`~torchgeo_colearn.datasets.presto.PrestoPixelTimeSeries`) is loaded once
    into tensors; each modality is z-scored per channel with statistics of the training split.

    Splits (*split*):

    * ``'shipped'``: the test set is the shipped one (``is_test.npy``). The shipped training samples
      are cut into *num_folds* folds (keeping *group_by* groups whole) and fold *fold* is the
      validation set, the others the training set; with *val_is_test* the test set is also the
      validation set (and *fold* must be 0).
    * ``'kfold'``: *num_folds* folds over all samples, fold *fold* is the test set and the next one the
      validation set (:func:`~torchgeo_colearn.datamodules.kfold_split`), with *group_by* groups
      kept whole (spatial cross-validation).
    """

    #: The dataset class of the benchmark.
    dataset_class: type[PrestoPixelTimeSeries] = PrestoPixelTimeSeries

    def __init__(
        self,
        root: str = 'data',
        task: PrestoTask | None = None,
        modality_groups: Mapping[str, Sequence[str]] | None = None,
        split: PrestoSplit = 'shipped',
        **kwargs: Any,
    ) -> None:
        """Initialize a new PrestoDataModule instance.

        Args:
            root: Directory of the NumPy files.
            task: ``'regression'`` or ``'multiclass'`` (when the dataset has classes); default the
                dataset's first task.
            modality_groups: Output modality mapped to the base modalities (``s1``, ``s2``, ``ndvi``,
                ``weather``, ``dem``) it concatenates; default :data:`FOUR_SENSORS`.
            split: ``'shipped'`` or ``'kfold'`` (see the class description; ``fold`` is the
                validation fold of the shipped training samples, or the test fold).
            **kwargs: The folds and batches of :class:`~torchgeo_colearn.datamodules.KFoldDataModule`,
                e.g. ``fold``, ``num_folds``, ``group_by`` (``'site'`` when the folder has
                ``site.npy``, another per-sample attribute, or ``'latlon_block'``), ``batch_size``.

        Raises:
            ValueError: If *split* is unknown.
        """
        if split not in ('shipped', 'kfold'):
            msg = f"split must be 'shipped' or 'kfold', got {split!r}"
            raise ValueError(msg)
        super().__init__(
            self.dataset_class,
            augment=False,
            root=root,
            task=task,
            modality_groups=dict(modality_groups or FOUR_SENSORS),
            **kwargs,
        )
        self.split = split
        classes = self.dataset_class.classes
        if (
            task or self.dataset_class.tasks[0]
        ) == 'multiclass' and classes is not None:
            self.classes = tuple(str(c) for c in classes)

    def modality_info(self) -> dict[str, ModalityInfo]:
        """Describe the modalities: their CropHarvest-layout bands, units and monthly steps.

        Returns:
            Modality mapped to its description (see
            :func:`~torchgeo_colearn.datasets.cropharvest_layout.group_modality_info`).

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        groups = self.kwargs['modality_groups']
        series = [m for m in self.modalities if groups[m][0] not in STATIC_MODALITIES]
        steps = self.sample_shape(series[0])[0] if series else 1
        info = group_modality_info(groups, steps, f'{steps} monthly composites')
        return {m: info[m] for m in self.modalities}

    def load_dataset(self) -> TensorMultiModalDataset:
        """Load every sample into memory.

        Returns:
            The whole benchmark.
        """
        return self.dataset_class(**self.kwargs).to_tensor_dataset()

    @override
    def split_indices(
        self, dataset: TensorMultiModalDataset
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the indices of the three splits: the shipped test set, or k folds (``'kfold'``).

        Raises:
            KeyError: If the shipped split is asked for and the folder has no ``is_test.npy``.
            ValueError: If *val_is_test* is set with the shipped split and *fold* is not 0.
        """
        if self.split == 'kfold':
            return super().split_indices(dataset)
        is_test = dataset.attribute('is_test').astype(bool)
        test = np.flatnonzero(is_test)
        shipped_train = np.flatnonzero(~is_test)
        if self.val_is_test:
            if self.fold != 0:
                msg = (
                    f'fold={self.fold}: with the shipped split and val_is_test the test set is the '
                    'validation set, so there is only fold 0'
                )
                raise ValueError(msg)
            return shipped_train, test, test
        groups = self.groups(dataset)
        train, val, _ = kfold_split(
            len(shipped_train),
            self.num_folds,
            self.fold,
            self.seed,
            val_is_test=True,
            groups=None if groups is None else groups[shipped_train],
        )
        return shipped_train[train], shipped_train[val], test

    def split_summary(self) -> dict[str, Any]:
        """Describe the current split, including which one it is.

        Returns:
            :meth:`KFoldDataModule.split_summary` with ``split`` (``'shipped'`` or ``'kfold'``).
        """
        return {'split': self.split, **super().split_summary()}


class FuelMoistureDataModule(PrestoDataModule):
    """Live fuel moisture regression from Sentinel-1, Sentinel-2, ERA5 and SRTM (M = 4).

    :class:`~torchgeo_colearn.datasets.presto.FuelMoisture`: 2313 samples of 150 sites, 3 monthly
    steps. By default the shipped site-level split (test: 735 samples of 50 sites) with a validation
    set of whole sites carved from the 1578 training samples; ``split='kfold'`` gives site-grouped
    folds over all samples. The target is left in %; the task standardises it with
    :meth:`target_stats`.
    """

    dataset_class = FuelMoisture

    def __init__(self, *, group_by: str | None = 'site', **kwargs: Any) -> None:
        """Initialize a new FuelMoistureDataModule instance.

        Args:
            group_by: ``'site'`` (default: whole sites per fold, as the shipped split), None for
                sample-level folds, or ``'latlon_block'``.
            **kwargs: The arguments of :class:`PrestoDataModule` but ``task`` (regression); ``root``
                is the folder of ``presto_fuel_moisture``.
        """
        super().__init__(task='regression', group_by=group_by, **kwargs)


class AlgaeBloomsDataModule(PrestoDataModule):
    """Algae bloom severity from Sentinel-1, Sentinel-2, ERA5 and SRTM (M = 4).

    :class:`~torchgeo_colearn.datasets.presto.AlgaeBlooms`: 1122 samples, 12 monthly steps, severity
    1 to 5 as 5 classes (labels 0 to 4, ``task='multiclass'``) or as a value
    (``task='regression'``). By default the shipped split (777 train / 345 test) with a random
    validation fold carved from the training samples; ``split='kfold'`` gives k folds over all
    samples (``group_by='latlon_block'`` for spatial ones).
    """

    dataset_class = AlgaeBlooms

    def __init__(self, *, task: PrestoTask = 'multiclass', **kwargs: Any) -> None:
        """Initialize a new AlgaeBloomsDataModule instance.

        Args:
            task: ``'multiclass'`` (5 severities) or ``'regression'`` (severity 1 to 5 as a value).
            **kwargs: The arguments of :class:`PrestoDataModule`; ``root`` is the folder of
                ``presto_algae_blooms``, ``group_by`` None (sample-level folds) or
                ``'latlon_block'`` for spatial folds.
        """
        super().__init__(task=task, **kwargs)
