# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""EuroSAT S1+S2 datamodule."""

from collections.abc import Sequence
from typing import Any, Literal

from ..cache import CacheKey
from ..datasets.eurosat_s1s2 import EuroSATS1S2
from ..modality_info import ModalityInfo
from .base import MultiModalDataModule
from .missing import unfiltered


class EuroSATS1S2DataModule(MultiModalDataModule):
    """LightningDataModule for :class:`~torchgeo_colearn.datasets.EuroSATS1S2`.

    Uses the official Copernicus-Bench splits (16,200 train, 5,400 validation, 5,400 test). Batches
    hold ``image_s1`` (B, len(bands_s1), 64, 64) and ``image_s2`` (B, len(bands_s2), 64, 64), each
    z-scored per band with statistics of the training split, plus ``label``, ``lat``, ``lon`` and
    ``id``. The statistics are computed once (one pass over the 16,200 training pairs) and cached in
    :meth:`stats_path`, a file named after a hash of the training GeoTIFFs, the split lists and the
    options, so that a changed file or split list gives a new cache. During training, random
    horizontal and vertical flips are applied with the same parameters to both images of a sample.
    """

    label_task = 'multiclass'
    num_classes = len(EuroSATS1S2.classes)
    # every sample needs both images (a missing file is an error), and they are never all NaN
    complete_by_construction = True
    classes = tuple(EuroSATS1S2.classes)

    def __init__(
        self,
        root: str = 'data/eurosat',
        bands_s1: Sequence[str] | None = None,
        bands_s2: Sequence[str] | None = None,
        batch_size: int = 64,
        download: bool = False,
        on_mismatch: Literal['raise', 'intersect'] = 'raise',
        checksum: bool = False,
        patch_size: int | None = EuroSATS1S2.benchmark_patch_size,
        **kwargs: Any,
    ) -> None:
        """Initialize a new EuroSATS1S2DataModule instance.

        Args:
            root: Directory holding ``eurosat_s1/`` and ``eurosat_s2/`` (or their zips); the
                statistics cache is written there too.
            bands_s1: Sentinel-1 bands to load (default: VV, VH).
            bands_s2: Sentinel-2 bands to load, in this order (default: all 13, in file order with
                B8A last).
            batch_size: Size of each mini-batch.
            download: Download the data from Hugging Face if it is not in *root*.
            on_mismatch: What to do if the S1 and S2 split files list different samples: 'raise' or
                keep the 'intersect' (see :class:`~torchgeo_colearn.datasets.EuroSATS1S2`).
            checksum: Check the MD5 of the downloaded zips.
            patch_size: Height and width every patch must have, in pixels (the benchmark's 64); a
                patch of another size is an error naming the file; None accepts any size.
            **kwargs: The batches of :class:`~torchgeo_colearn.datamodules.MultiModalDataModule`,
                e.g. ``augment`` (random flips shared by S1 and S2), ``modalities`` (``['s1']`` or
                ``['s2']`` to train on one sensor alone).
        """
        super().__init__(
            EuroSATS1S2,
            batch_size,
            root=root,
            bands_s1=bands_s1,
            bands_s2=bands_s2,
            on_mismatch=on_mismatch,
            patch_size=patch_size,
            download=download,
            checksum=checksum,
            **kwargs,
        )
        self.root = root
        self.bands_s1 = (
            EuroSATS1S2.all_bands_s1 if bands_s1 is None else tuple(bands_s1)
        )
        self.bands_s2 = (
            EuroSATS1S2.all_bands_s2 if bands_s2 is None else tuple(bands_s2)
        )
        self.patch_size = patch_size

    def modality_info(self) -> dict[str, ModalityInfo]:
        """Describe the two sensors: bands, units and the patch size.

        Returns:
            ``s1`` (len(bands_s1), P, P) backscatter in dB and ``s2`` (len(bands_s2), P, P) L1C
            reflectance x 10^4, P the *patch_size* (free when None), for the selected modalities.
        """
        size = self.patch_size
        info = {
            's1': ModalityInfo(
                (len(self.bands_s1), size, size),
                self.bands_s1,
                ('dB',) * len(self.bands_s1),
            ),
            's2': ModalityInfo(
                (len(self.bands_s2), size, size),
                self.bands_s2,
                ('reflectance x 10^4',) * len(self.bands_s2),
            ),
        }
        return {m: info[m] for m in self.modalities}

    def stats_cache_key(self) -> CacheKey:
        """Say what the training-split statistics depend on.

        Returns:
            A key under *root* named ``eurosat_s1s2_stats_s1-<bands>_s2-<bands>`` (``all`` for all
            bands), over the S1 and S2 GeoTIFFs of the training split, both training split lists
            and the band and mismatch options.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        # the key names every training file; min_modalities, in the options, picks among them
        train = unfiltered(self.set_up_train_dataset('stats_cache_key'))
        assert isinstance(train, EuroSATS1S2)
        tags = [
            f'{modality}-' + ('all' if bands == all_bands else '-'.join(bands))
            for modality, bands, all_bands in (
                ('s1', self.bands_s1, EuroSATS1S2.all_bands_s1),
                ('s2', self.bands_s2, EuroSATS1S2.all_bands_s2),
            )
        ]
        return CacheKey(
            self.root,
            f'eurosat_s1s2_stats_{"_".join(tags)}',
            options={
                'bands_s1': list(self.bands_s1),
                'bands_s2': list(self.bands_s2),
                'on_mismatch': self.kwargs['on_mismatch'],
            },
            files=train.files(),
            whole_files=train.split_files(),
        )
