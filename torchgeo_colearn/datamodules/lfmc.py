# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Datamodule of the live fuel moisture content (LFMC) regression benchmark."""

from collections.abc import Mapping, Sequence
from typing import Any

from ..datasets.lfmc import LFMC, Source
from ..datasets.lfmc import modality_info as lfmc_modality_info
from ..datasets.tensor import TensorMultiModalDataset
from ..modality_info import ModalityInfo
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
        **kwargs: Any,
    ) -> None:
        """Initialize a new LFMCDataModule instance.

        Args:
            root: Directory holding ``training_features.csv`` (*source* 'csv') or the
                ``feature_*.geojson`` files (*source* 'geojson').
            source: Which of the two layouts to read.
            modality_groups: Returned modality mapped to the base modalities it concatenates, e.g.
                ``{'s1': ['s1', 's1_ratio'], 'optical': ['optical', 'optical_indices']}`` for MDiCo's
                (4, 3) and (4, 8) inputs; None returns every base modality on its own.
            **kwargs: The folds and batches of :class:`~torchgeo_colearn.datamodules.KFoldDataModule`,
                e.g. ``fold``, ``val_is_test`` (MDiCo's protocol), ``group_by`` (``'site'`` or
                ``'latlon_block'``), ``batch_size``, ``modalities``.
        """
        super().__init__(
            LFMC,
            augment=False,
            root=root,
            source=source,
            modality_groups=modality_groups,
            **kwargs,
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
