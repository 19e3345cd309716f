# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Datamodule of the live fuel moisture content (LFMC) regression benchmark."""

from collections.abc import Mapping, Sequence

from ..channel_stats import StatsMode
from ..datasets.lfmc import LFMC, Source
from ..datasets.lfmc import modality_info as lfmc_modality_info
from ..datasets.tensor import TensorMultiModalDataset
from ..modality_info import ModalityInfo
from .base import PredictSplit
from .kfold import KFoldDataModule


class LFMCDataModule(KFoldDataModule):
    """K-fold cross-validation over the LFMC benchmark of Rao et al. (2020).

    The whole table is loaded once into tensors (:class:`~torchgeo_colearn.datasets.lfmc.LFMC`),
    then split at sample level into *num_folds* random folds, as MDiCo does, or, with
    ``group_by='site'``, into folds that keep every site whole (spatial cross-validation). Each modality is
    z-scored per channel with statistics of the training folds; the regression target is left in %
    (the task standardises it with :meth:`target_stats`). The targets are checked at setup: a
    missing or non-finite target is an error naming the sample.
    """

    label_task = 'regression'

    def __init__(
        self,
        root: str = 'data',
        source: Source = 'csv',
        modality_groups: Mapping[str, Sequence[str]] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        fold: int = 0,
        num_folds: int = 10,
        seed: int = 10,
        val_is_test: bool = False,
        group_by: str | None = None,
        block_size: float = 0.5,
        modalities: Sequence[str] | None = None,
        stats: StatsMode = 'moments',
        predict_split: PredictSplit = 'test',
    ) -> None:
        """Initialize a new LFMCDataModule instance.

        Args:
            root: Directory holding ``training_features.csv`` (*source* 'csv') or the
                ``feature_*.geojson`` files (*source* 'geojson').
            source: Which of the two layouts to read.
            modality_groups: Returned modality mapped to the base modalities it concatenates, e.g.
                ``{'s1': ['s1', 's1_ratio'], 'optical': ['optical', 'optical_indices']}`` for MDiCo's
                (4, 3) and (4, 8) inputs; None returns every base modality on its own.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading (the in-memory batches need none).
            fold: Index of the test fold.
            num_folds: Number of folds.
            seed: Seed of the fold permutation.
            val_is_test: Validate on the test fold, as the MDiCo authors do; by default the validation
                set is the next fold, carved from the training folds.
            group_by: None for random sample-level folds; ``'site'`` or ``'latlon_block'``
                (cells of *block_size* degrees) to keep each group in one fold (spatial CV).
            block_size: Cell size in degrees of ``group_by='latlon_block'``.
            modalities: Returned modalities to keep in the batches, e.g. ``['s1']`` to train on
                Sentinel-1 alone; None keeps them all.
            stats: Normalisation statistics, ``'moments'`` or ``'robust'`` (see
                :class:`~torchgeo_colearn.datamodules.MultiModalDataModule`).
            predict_split: The split that ``predict`` runs on, ``'test'``, ``'val'`` or ``'train'``.
        """
        super().__init__(
            LFMC,
            batch_size,
            num_workers,
            fold=fold,
            num_folds=num_folds,
            seed=seed,
            val_is_test=val_is_test,
            augment=False,
            group_by=group_by,
            block_size=block_size,
            modalities=modalities,
            stats=stats,
            predict_split=predict_split,
            root=root,
            source=source,
            modality_groups=modality_groups,
        )

    def modality_info(self) -> dict[str, ModalityInfo]:
        """Describe the modalities: the table's variables, their units and the four steps.

        Returns:
            Modality mapped to its description (see :func:`~torchgeo_colearn.datasets.lfmc.\
            modality_info`).
        """
        info = lfmc_modality_info(self.kwargs['modality_groups'])
        return {m: info[m] for m in self.modalities}

    def load_dataset(self) -> TensorMultiModalDataset:
        """Load the whole benchmark into memory.

        Returns:
            All samples (2578 for the full table).

        Raises:
            DatasetNotFoundError: If the table is not in *root*; the message says where to get it.
        """
        return LFMC(**self.kwargs).to_tensor_dataset()
