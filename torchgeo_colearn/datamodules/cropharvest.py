# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""CropHarvest datamodule: 10-fold cross-validation of the crop / non-crop and crop-group tasks."""

from typing import Any, Literal

from ..datasets.cropharvest import CROP_GROUPS, CROP_OR_NOT, CropHarvestMultiModal
from ..datasets.cropharvest_layout import (
    NUM_TIMESTEPS,
    TIME_STEPS,
    group_modality_info,
    resolve_groups,
)
from ..datasets.tensor import TensorMultiModalDataset
from ..modality_info import ModalityInfo
from .kfold import KFoldDataModule


class CropHarvestDataModule(KFoldDataModule):
    """CropHarvest loaded once into memory and split into k folds.

    The whole benchmark (:class:`~torchgeo_colearn.datasets.cropharvest.CropHarvestMultiModal`) is
    loaded into tensors, from the dataset's cache file after the first run. Samples are permuted with
    *seed* and cut into *num_folds* folds; fold *fold* is the test set, and the validation set is the
    next fold or, with *val_is_test*, the test fold itself (MDiCo's protocol: 10 folds, seed 10).
    Each modality is z-scored per channel with statistics of the training folds.
    """

    def __init__(
        self,
        root: str = 'data',
        task: Literal['binary', 'multiclass'] = 'binary',
        modality_groups: dict[str, list[str]] | None = None,
        include_test: bool = False,
        batch_size: int = 128,
        download: bool = False,
        checksum: bool = False,
        **kwargs: Any,
    ) -> None:
        """Initialize a new CropHarvestDataModule instance.

        Args:
            root: Root directory holding ``labels.geojson`` and ``features/``.
            task: ``'binary'`` (crop / non-crop, 2 classes) or ``'multiclass'`` (the 10 crop groups of
                :data:`~torchgeo_colearn.datasets.cropharvest.CROP_GROUPS`).
            modality_groups: Output modality mapped to the base modalities (``s1``, ``s2``, ``ndvi``,
                ``weather``, ``dem``) concatenated along the channel axis, e.g. MDiCo's
                ``{'s1': ['s1'], 's2': ['s2', 'ndvi']}``; default every base modality on its own.
            include_test: Keep the label rows flagged ``is_test``.
            batch_size: Size of each mini-batch.
            download: If True, download the dataset when it is missing from *root*.
            checksum: If True, check the MD5 of the downloaded files.
            **kwargs: The folds and batches of :class:`~torchgeo_colearn.datamodules.KFoldDataModule`,
                e.g. ``fold``, ``val_is_test`` (MDiCo's protocol), ``group_by`` (``'dataset'``,
                CropHarvest's source dataset, or ``'latlon_block'``), ``modalities``.
        """
        super().__init__(
            CropHarvestMultiModal,
            batch_size,
            augment=False,
            root=root,
            task=task,
            modality_groups=modality_groups,
            include_test=include_test,
            download=download,
            checksum=checksum,
            **kwargs,
        )
        self.classes = CROP_OR_NOT if task == 'binary' else CROP_GROUPS
        self.label_task = task
        self.num_classes = len(self.classes)

    def modality_info(self) -> dict[str, ModalityInfo]:
        """Describe the modalities: their CropHarvest bands, units and the 12 monthly steps.

        Returns:
            Modality mapped to its description (see
            :func:`~torchgeo_colearn.datasets.cropharvest_layout.group_modality_info`).
        """
        groups = resolve_groups(None, self.kwargs['modality_groups'])
        info = group_modality_info(groups, NUM_TIMESTEPS, TIME_STEPS)
        return {m: info[m] for m in self.modalities}

    def load_dataset(self) -> TensorMultiModalDataset:
        """Load every sample of the selected task into memory.

        Returns:
            The whole benchmark.
        """
        return CropHarvestMultiModal(**self.kwargs).to_tensor_dataset()
