# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""EuroSAT S1+S2: paired Sentinel-1 SAR and Sentinel-2 multispectral land cover patches."""

import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import rasterio.errors
import torch
from einops import rearrange
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor
from torchgeo.datasets import (
    CopernicusBenchEuroSATS1,
    CopernicusBenchEuroSATS2,
    DatasetNotFoundError,
    NonGeoDataset,
    RGBBandsMissingError,
)
from torchgeo.datasets.copernicus.base import CopernicusBenchBase
from torchgeo.datasets.utils import Path, percentile_normalization

#: Number of differing ids quoted in mismatch errors and warnings.
_QUOTED_IDS = 5


class EuroSATS1S2(NonGeoDataset):
    """EuroSAT with one Sentinel-1 and one Sentinel-2 patch per sample.

    The `Copernicus-Bench <https://arxiv.org/abs/2503.11849>`__ release of EuroSAT pairs every
    EuroSAT-MS patch (Sentinel-2 L1C, 13 bands) with a Sentinel-1 GRD patch of the same place
    (EuroSAT-SAR, VV and VH backscatter in dB), both 64x64 pixels at 10 m. This dataset reads the
    two halves with TorchGeo's :class:`~torchgeo.datasets.CopernicusBenchEuroSATS1` and
    :class:`~torchgeo.datasets.CopernicusBenchEuroSATS2` on the same *root* and pairs them by sample
    id, ``{Class}_{N}``.

    Dataset format:

    * ``root/eurosat_s1/all_imgs/{Class}/{Class}_{N}.tif``: float32, 2 bands, dB
    * ``root/eurosat_s2/all_imgs/{Class}/{Class}_{N}.tif``: uint16, 13 bands, reflectance x 10000
    * ``root/eurosat_s{1,2}/eurosat-{train,val,test}.txt``: one ``{Class}_{N}.jpg`` per line

    Official splits: 16,200 train, 5,400 validation and 5,400 test samples.

    Every patch must have the benchmark's size, 64 x 64 pixels (*patch_size*): a patch of another
    size (e.g. a 120 x 120 BigEarthNet patch) is an error naming the file, since it would silently
    change the benchmark. ``patch_size=None`` accepts any size (then all the patches of a sensor must
    agree to be batched together).

    Classes, in TorchGeo's Copernicus-Bench order (the ``label`` is the index in this tuple, which
    differs from the alphabetical order of :class:`~torchgeo.datasets.EuroSAT`):

    0. AnnualCrop
    1. HerbaceousVegetation
    2. Industrial
    3. PermanentCrop
    4. River
    5. Forest
    6. Highway
    7. Pasture
    8. Residential
    9. SeaLake

    Samples are dicts with

    * ``image_s1``: float32 (len(bands_s1), 64, 64), backscatter in dB (may hold -inf or NaN, which
      the datamodule treats as missing)
    * ``image_s2``: float32 (len(bands_s2), 64, 64), top-of-atmosphere reflectance x 10000
    * ``label``: int64 scalar, class index
    * ``lat``, ``lon``: float32 scalars, degrees (WGS 84), centre of the Sentinel-2 patch
    * ``id``: str, ``{Class}_{N}``

    If you use this dataset in your research, please cite:

    * https://arxiv.org/abs/2503.11849 (Copernicus-Bench)
    * https://doi.org/10.1109/JSTARS.2024.3493237 (EuroSAT-SAR)
    * https://doi.org/10.1109/JSTARS.2019.2918242 (EuroSAT)
    """

    #: Class names; ``label`` indexes this tuple.
    classes = CopernicusBenchEuroSATS2.classes

    #: Sentinel-1 bands, in file order.
    all_bands_s1 = CopernicusBenchEuroSATS1.all_bands

    #: Sentinel-2 bands, in file order (B8A last).
    all_bands_s2 = CopernicusBenchEuroSATS2.all_bands

    #: Height and width of the benchmark's patches, in pixels.
    benchmark_patch_size = 64

    def __init__(
        self,
        root: Path = 'data',
        split: Literal['train', 'val', 'test'] = 'train',
        bands_s1: Sequence[str] | None = None,
        bands_s2: Sequence[str] | None = None,
        on_mismatch: Literal['raise', 'intersect'] = 'raise',
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        download: bool = False,
        checksum: bool = False,
        patch_size: int | None = benchmark_patch_size,
    ) -> None:
        """Initialize a new EuroSATS1S2 instance.

        Args:
            root: Directory holding ``eurosat_s1/`` and ``eurosat_s2/`` (or their zips).
            split: One of 'train', 'val' or 'test'.
            bands_s1: Sentinel-1 bands to load, in this order (default: all of
                :attr:`all_bands_s1`).
            bands_s2: Sentinel-2 bands to load, in this order (default: all of
                :attr:`all_bands_s2`).
            on_mismatch: What to do when the S1 and S2 split files list different samples:
                'raise' an error naming them, or 'intersect': keep the samples listed for both, with
                a warning that counts the dropped ones.
            transforms: A function that takes a sample dict and returns a transformed version.
            download: Download and extract the two zips (via TorchGeo) if they are not in *root*.
            checksum: Check the MD5 of the downloaded zips.
            patch_size: Height and width every patch must have, in pixels (the benchmark's 64);
                None accepts any size.

        Raises:
            ValueError: If a band or *on_mismatch* is unknown, or the split files list duplicated
                or (with ``on_mismatch='raise'``) different samples.
            DatasetNotFoundError: If the data is not in *root* and *download* is False.
        """
        self.root = root
        self.split = split
        self.bands_s1 = _check_bands(bands_s1, self.all_bands_s1, 'bands_s1')
        self.bands_s2 = _check_bands(bands_s2, self.all_bands_s2, 'bands_s2')
        if on_mismatch not in ('raise', 'intersect'):
            msg = f"on_mismatch must be 'raise' or 'intersect', got {on_mismatch!r}"
            raise ValueError(msg)
        self.on_mismatch = on_mismatch
        self.patch_size = patch_size
        self.transforms = transforms
        self.download = download
        self.checksum = checksum

        found: dict[str, CopernicusBenchBase] = {}
        missing: list[type[CopernicusBenchBase]] = []
        for modality, dataset_class, bands in (
            ('s1', CopernicusBenchEuroSATS1, self.bands_s1),
            ('s2', CopernicusBenchEuroSATS2, self.bands_s2),
        ):
            try:
                found[modality] = dataset_class(
                    root, split, bands, download=download, checksum=checksum
                )
            except DatasetNotFoundError:
                missing.append(dataset_class)
        if missing:
            raise self._not_found_error(missing)
        self.s1, self.s2 = found['s1'], found['s2']

        ids_s1, ids_s2 = _split_ids(self.s1), _split_ids(self.s2)
        self.ids = self._pair(ids_s1, ids_s2)
        self._index_s1 = {sample_id: i for i, sample_id in enumerate(ids_s1)}
        self._index_s2 = {sample_id: i for i, sample_id in enumerate(ids_s2)}

    def _not_found_error(
        self, missing: Sequence[type[CopernicusBenchBase]]
    ) -> DatasetNotFoundError:
        """Build the error that says what to download and where to put it.

        Args:
            missing: The TorchGeo classes whose data is not in *root*.

        Returns:
            TorchGeo's error, with download instructions appended.
        """
        missing_paths = ', '.join(
            os.path.join(c.directory, c.filename.format(self.split)) for c in missing
        )
        instructions = (
            f'EuroSAT S1+S2 needs both sensors; missing under root {self.root!r}: '
            f'{missing_paths}. To get the data by hand, download '
            f'{CopernicusBenchEuroSATS1.url} and {CopernicusBenchEuroSATS2.url} '
            '(Hugging Face dataset wangyi111/Copernicus-Bench, folder l2_eurosat_s1s2) into '
            f'{self.root!r}: eurosat_s1.zip and eurosat_s2.zip are extracted there on first use, '
            'giving eurosat_s1/ and eurosat_s2/.'
        )
        error = DatasetNotFoundError(self)
        error.args = (f'{error.args[0]} {instructions}',)
        return error

    def _pair(self, ids_s1: Sequence[str], ids_s2: Sequence[str]) -> list[str]:
        """Check that both sensors list the same samples and return the paired ids.

        Args:
            ids_s1: Sample ids of the S1 split file.
            ids_s2: Sample ids of the S2 split file.

        Returns:
            The ids listed for both sensors, in the order of the S2 split file.

        Raises:
            ValueError: If the lists differ and *on_mismatch* is 'raise'.
        """
        listed_s1, listed_s2 = set(ids_s1), set(ids_s2)
        only_s1 = sorted(listed_s1 - listed_s2)
        only_s2 = sorted(listed_s2 - listed_s1)
        if not only_s1 and not only_s2:
            return list(ids_s2)
        files = f'eurosat_s1/eurosat-{self.split}.txt and eurosat_s2/eurosat-{self.split}.txt'
        difference = (
            f'{len(only_s1)} listed only for S1 {only_s1[:_QUOTED_IDS]}, '
            f'{len(only_s2)} only for S2 {only_s2[:_QUOTED_IDS]}'
        )
        kept = [sample_id for sample_id in ids_s2 if sample_id in listed_s1]
        match self.on_mismatch:
            case 'raise':
                msg = (
                    f'{files} under {self.root!r} list different samples: {difference}; '
                    f"pass on_mismatch='intersect' to keep the {len(kept)} common samples"
                )
                raise ValueError(msg)
            case 'intersect':
                warnings.warn(
                    f'{files} under {self.root!r} list different samples; keeping the '
                    f'{len(kept)} common samples, dropping {difference}',
                    UserWarning,
                    stacklevel=3,
                )
                return kept

    @property
    def labels(self) -> Tensor:
        """The class index of every sample, read from the ids (no image is opened).

        Returns:
            int64 labels, shape (N,).
        """
        return torch.tensor([self.classes.index(i.split('_')[0]) for i in self.ids])

    def files(self) -> list[str]:
        """List the GeoTIFFs the samples are read from.

        Returns:
            The S1 and the S2 file of every sample, in sample order.
        """
        return [
            _tif_path(dataset, sample_id)
            for sample_id in self.ids
            for dataset in (self.s1, self.s2)
        ]

    def split_files(self) -> list[str]:
        """List the split files the samples are chosen from.

        Returns:
            ``eurosat_s1/eurosat-<split>.txt`` and ``eurosat_s2/eurosat-<split>.txt``.
        """
        return [
            os.path.join(d.root, d.directory, d.filename.format(d.split))
            for d in (self.s1, self.s2)
        ]

    def __len__(self) -> int:
        """Return the number of paired samples.

        Returns:
            Length of the dataset.
        """
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return one paired sample.

        Args:
            index: Index of the sample.

        Returns:
            The sample dict (see the class docstring for keys, shapes and units).

        Raises:
            OSError: If a GeoTIFF cannot be read; the message names the file.
            ValueError: If a patch is not *patch_size* x *patch_size* pixels.
        """
        sample_id = self.ids[index]
        s1 = _read(self.s1, self._index_s1[sample_id], sample_id, self.patch_size)
        s2 = _read(self.s2, self._index_s2[sample_id], sample_id, self.patch_size)
        sample: dict[str, Any] = {
            'image_s1': s1['image'],
            'image_s2': s2['image'],
            'label': s2['label'],
            'id': sample_id,
        }
        for key in ('lat', 'lon'):
            if key in s2:
                sample[key] = s2[key]
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(
        self,
        sample: dict[str, Any],
        show_titles: bool = True,
        suptitle: str | None = None,
    ) -> Figure:
        """Plot the Sentinel-2 true colour image and a Sentinel-1 false colour image of a sample.

        Args:
            sample: A sample returned by :meth:`__getitem__`, optionally with a ``prediction``.
            show_titles: Show the label (and prediction) above the panels.
            suptitle: Optional figure title.

        Returns:
            A matplotlib Figure with two panels.

        Raises:
            RGBBandsMissingError: If *bands_s2* lacks B04, B03 or B02.
        """
        rgb_bands = CopernicusBenchEuroSATS2.rgb_bands
        if not set(rgb_bands) <= set(self.bands_s2):
            raise RGBBandsMissingError()
        rgb = sample['image_s2'].numpy()[[self.bands_s2.index(b) for b in rgb_bands]]
        sar = sample['image_s1'].numpy()
        # VV, VH and their mean as red, green, blue; a single band as grey
        sar = np.stack([sar[0], sar[-1], sar.mean(0)])
        images = {'Sentinel-2': rgb, 'Sentinel-1': sar}

        fig, axes = plt.subplots(ncols=len(images), figsize=(4 * len(images), 4))
        for ax, (name, image) in zip(axes, images.items()):
            # no-data (NaN, -inf dB) shown as the darkest valid value
            finite = np.isfinite(image)
            image = np.where(finite, image, image[finite].min() if finite.any() else 0)
            ax.imshow(percentile_normalization(rearrange(image, 'c h w -> h w c')))
            ax.axis('off')
            if show_titles:
                title = f'{name}\nlabel: {self.classes[int(sample["label"])]}'
                if 'prediction' in sample:
                    title += f', prediction: {self.classes[int(sample["prediction"])]}'
                ax.set_title(title)
        if suptitle is not None:
            fig.suptitle(suptitle)
        fig.tight_layout()
        return fig


def _check_bands(
    bands: Sequence[str] | None, all_bands: tuple[str, ...], argument: str
) -> tuple[str, ...]:
    """Validate a band selection.

    Args:
        bands: Selected bands, or None for all.
        all_bands: The bands of the sensor.
        argument: Name of the argument, for the error message.

    Returns:
        The selected bands.

    Raises:
        ValueError: If the selection is empty or names an unknown band.
    """
    if bands is None:
        return all_bands
    selected = tuple(bands)
    unknown = [band for band in selected if band not in all_bands]
    if not selected or unknown:
        msg = f'{argument} must be a non-empty selection of {all_bands}, got {list(selected)}'
        raise ValueError(msg)
    return selected


def _split_ids(dataset: CopernicusBenchBase) -> list[str]:
    """Read the sample ids of a TorchGeo Copernicus-Bench EuroSAT split.

    Args:
        dataset: The S1 or S2 dataset.

    Returns:
        The ids (``{Class}_{N}``, file name without extension) in split file order.

    Raises:
        ValueError: If the split file lists an id twice.
    """
    ids = [os.path.splitext(str(name))[0] for name in dataset.files]
    duplicated = sorted(i for i, count in Counter(ids).items() if count > 1)
    if duplicated:
        path = os.path.join(
            dataset.root, dataset.directory, dataset.filename.format(dataset.split)
        )
        msg = f'{path} lists {len(duplicated)} ids more than once: {duplicated[:_QUOTED_IDS]}'
        raise ValueError(msg)
    return ids


def _tif_path(dataset: CopernicusBenchBase, sample_id: str) -> str:
    """Return the GeoTIFF of a sample, where TorchGeo reads it.

    Args:
        dataset: The S1 or S2 dataset.
        sample_id: The id, ``{Class}_{N}``.

    Returns:
        ``<root>/eurosat_s<n>/all_imgs/<Class>/<id>.tif``.
    """
    classname = sample_id.split('_')[0]
    return os.path.join(
        dataset.root, dataset.directory, 'all_imgs', classname, f'{sample_id}.tif'
    )


def _read(
    dataset: CopernicusBenchBase, index: int, sample_id: str, patch_size: int | None
) -> dict[str, Any]:
    """Read one sample of a TorchGeo Copernicus-Bench EuroSAT dataset.

    Args:
        dataset: The S1 or S2 dataset.
        index: Index of the sample in *dataset*.
        sample_id: Its id, ``{Class}_{N}``.
        patch_size: Height and width the patch must have, or None for any.

    Returns:
        TorchGeo's sample: ``image`` float32 (C, H, W), ``label``, ``lat``, ``lon``.

    Raises:
        OSError: If the GeoTIFF cannot be read; the message names the file.
        ValueError: If the patch is not *patch_size* x *patch_size* pixels.
    """
    try:
        sample: dict[str, Any] = dataset[index]
    except (rasterio.errors.RasterioError, OSError) as error:
        msg = f'cannot read {_tif_path(dataset, sample_id)}: {error}'
        raise OSError(msg) from error
    height, width = sample['image'].shape[-2:]
    if patch_size is not None and (height, width) != (patch_size, patch_size):
        msg = (
            f'{_tif_path(dataset, sample_id)} is {height} x {width} pixels, not the '
            f'{patch_size} x {patch_size} of the benchmark (patch_size); pass '
            'patch_size=None to accept other sizes'
        )
        raise ValueError(msg)
    return sample
