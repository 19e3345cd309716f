# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""EuroSAT S1+S2 datamodule."""

import os
from collections.abc import Sequence
from typing import Literal

from ..datasets.eurosat_s1s2 import EuroSATS1S2
from .base import MultiModalDataModule


class EuroSATS1S2DataModule(MultiModalDataModule):
    """LightningDataModule for :class:`~torchgeo_colearn.datasets.EuroSATS1S2`.

    Uses the official Copernicus-Bench splits (16,200 train, 5,400 validation, 5,400 test). Batches
    hold ``image_s1`` (B, len(bands_s1), 64, 64) and ``image_s2`` (B, len(bands_s2), 64, 64), each
    z-scored per band with statistics of the training split, plus ``label``, ``lat``, ``lon`` and
    ``id``. The statistics are computed once (one pass over the 16,200 training pairs) and cached in
    :meth:`stats_path`; delete that file to recompute them. During training, random horizontal and
    vertical flips are applied with the same parameters to both images of a sample.
    """

    def __init__(
        self,
        root: str = 'data/eurosat',
        bands_s1: Sequence[str] | None = None,
        bands_s2: Sequence[str] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        download: bool = False,
        augment: bool = True,
        on_mismatch: Literal['raise', 'intersect'] = 'raise',
        checksum: bool = False,
    ) -> None:
        """Initialize a new EuroSATS1S2DataModule instance.

        Args:
            root: Directory holding ``eurosat_s1/`` and ``eurosat_s2/`` (or their zips); the
                statistics cache is written there too.
            bands_s1: Sentinel-1 bands to load (default: VV, VH).
            bands_s2: Sentinel-2 bands to load, in this order (default: all 13, in file order with
                B8A last).
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            download: Download the data from Hugging Face if it is not in *root*.
            augment: Apply random flips (shared by S1 and S2) during training.
            on_mismatch: What to do if the S1 and S2 split files list different samples: 'raise' or
                keep the 'intersect' (see :class:`~torchgeo_colearn.datasets.EuroSATS1S2`).
            checksum: Check the MD5 of the downloaded zips.
        """
        super().__init__(
            EuroSATS1S2,
            batch_size,
            num_workers,
            augment,
            root=root,
            bands_s1=bands_s1,
            bands_s2=bands_s2,
            on_mismatch=on_mismatch,
            download=download,
            checksum=checksum,
        )
        self.root = root
        self.bands_s1 = (
            EuroSATS1S2.all_bands_s1 if bands_s1 is None else tuple(bands_s1)
        )
        self.bands_s2 = (
            EuroSATS1S2.all_bands_s2 if bands_s2 is None else tuple(bands_s2)
        )

    def stats_path(self) -> str:
        """Return the file caching the training-split statistics of the selected bands.

        Returns:
            ``<root>/eurosat_s1s2_stats_s1-<bands>_s2-<bands>.json``, with ``all`` for all bands.
        """
        tags = [
            f'{modality}-' + ('all' if bands == all_bands else '-'.join(bands))
            for modality, bands, all_bands in (
                ('s1', self.bands_s1, EuroSATS1S2.all_bands_s1),
                ('s2', self.bands_s2, EuroSATS1S2.all_bands_s2),
            )
        ]
        return os.path.join(self.root, f'eurosat_s1s2_stats_{"_".join(tags)}.json')

    def setup_splits(self, stage: str) -> None:
        """Set up the official splits needed by *stage* (always the training split, for statistics).

        Args:
            stage: Either 'fit', 'validate', 'test' or 'predict'.
        """
        self.train_dataset = EuroSATS1S2(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = EuroSATS1S2(split='val', **self.kwargs)
        if stage in ('test', 'predict'):
            self.test_dataset = EuroSATS1S2(split='test', **self.kwargs)
            self.predict_dataset = self.test_dataset
