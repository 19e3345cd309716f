# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""TreeSatAI-Time-Series: aerial images and yearly Sentinel-1/2 time series, multi-label genera."""

import json
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

import numpy as np
import rasterio
import rasterio.errors
import torch
from einops import rearrange
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset, TreeSatAI
from torchgeo.datasets.utils import (
    Path,
    download_url,
    extract_archive,
    percentile_normalization,
)

from ..batch import doy_key, image_key
from .treesatai_ts_series import H5_NAME, TIME_SERIES_SIZE, read_time_series

#: A modality of TreeSatAI-Time-Series.
Sensor: TypeAlias = Literal['aerial', 's1_asc', 's1_des', 's2']

#: A time-series modality, stored in the ``sentinel-ts`` HDF5 files.
TimeSeriesSensor: TypeAlias = Literal['s1_asc', 's1_des', 's2']

#: What :meth:`TreeSatAITimeSeries._of_every_patch` finds: a path, or a path and a year.
_File = TypeVar('_File')

#: An official split.
Split: TypeAlias = Literal['train', 'val', 'test']


class TreeSatAITimeSeries(NonGeoDataset):
    """TreeSatAI-Time-Series multi-label tree genus classification.

    `TreeSatAI-Time-Series <https://huggingface.co/datasets/IGNF/TreeSatAI-Time-Series>`__ extends the
    TreeSatAI Benchmark Archive (:class:`~torchgeo.datasets.TreeSatAI`) with every Sentinel-1 and
    Sentinel-2 acquisition of one year for each of its 50,381 patches of 60 m x 60 m in Lower Saxony,
    Germany: the aerial year if it is 2017 or later, else 2017. It is the TreeSatAI benchmark of MDiCo
    (Mena et al. 2025) and OmniSat (Astruc et al. 2024).

    Modalities (``sensors``), returned under ``image_<sensor>`` as float32:

    * ``aerial``: (4, 304, 304) colour-infrared orthophoto at 0.2 m, bands IR, G, B, R, uint8 on disk;
    * ``s1_asc``, ``s1_des``: (T, 2, 6, 6) Sentinel-1 backscatter (VV, VH) of the ascending and
      descending orbits at 10 m;
    * ``s2``: (T, 10, 6, 6) Sentinel-2 L2A reflectances (B02, B03, B04, B05, B06, B07, B08, B8A, B11,
      B12) at 10 m; with ``s2_masks`` the snow and cloud probabilities follow as channels 10 and 11,
      (T, 12, 6, 6).

    T differs between sensors and patches. Each time series comes with ``valid_<sensor>`` (T,) bool, all
    True (padding to a common length is the collate function's job, see
    :class:`~torchgeo_colearn.datamodules.treesatai_ts.PadTimeSeries`) and ``doy_<sensor>`` (T,) int64,
    the day of year (1-366) of each acquisition, read from the product names. Missing values (NaN) of
    the Sentinel-1 data are kept.

    Labels: ``label`` (15,) float32 multi-hot over the 15 genera of :attr:`classes` (TorchGeo's order),
    set for each genus whose area share in the patch is above ``label_threshold`` (0.07, as MDiCo and
    OmniSat). Patches with no genus above it are dropped, with a warning that counts them.

    Metadata: ``id`` (patch name without ``.tif``) and, when a time series is read, ``year`` (int64, the
    year of the series).

    Layout under ``root`` (the archives of the Hugging Face repository, extracted)::

        aerial/{name}.tif                 # or aerial/60m/{name}.tif
        sentinel-ts/{name}_{year}.h5      # sen-1-asc-data, sen-1-des-data, sen-2-data, sen-2-masks,
                                          # sen-1-asc-products, sen-1-des-products, sen-2-products
        labels/TreeSatBA_v9_60m_multi_labels.json
        split/{train,val,test}_filenames.lst

    If you use this dataset in your research, please cite:

    * https://doi.org/10.5194/essd-15-681-2023
    * https://doi.org/10.48550/arXiv.2404.08351
    """

    url = 'https://huggingface.co/datasets/IGNF/TreeSatAI-Time-Series/resolve/main/'

    #: Genera, in TorchGeo's order (the label axis).
    classes = TreeSatAI.classes

    all_sensors: tuple[Sensor, ...] = ('aerial', 's1_asc', 's1_des', 's2')
    time_series_sensors: tuple[TimeSeriesSensor, ...] = ('s1_asc', 's1_des', 's2')
    all_bands: ClassVar[dict[Sensor, tuple[str, ...]]] = {
        'aerial': tuple(TreeSatAI.all_bands['aerial']),
        's1_asc': ('VV', 'VH'),
        's1_des': ('VV', 'VH'),
        's2': ('B02', 'B03', 'B04', 'B05', 'B06', 'B07', 'B08', 'B8A', 'B11', 'B12'),
    }
    #: Channels of ``sen-2-masks``, appended to ``s2`` when ``s2_masks`` is set.
    mask_bands = ('snow_probability', 'cloud_probability')
    rgb_bands: ClassVar[dict[Sensor, tuple[str, ...]]] = {
        'aerial': ('R', 'G', 'B'),
        's2': ('B04', 'B03', 'B02'),
    }

    #: Prefix of the HDF5 datasets of each time series: ``<prefix>-data`` and ``<prefix>-products``.
    h5_prefix: ClassVar[dict[TimeSeriesSensor, str]] = {
        's1_asc': 'sen-1-asc',
        's1_des': 'sen-1-des',
        's2': 'sen-2',
    }
    h5_masks = 'sen-2-masks'
    #: Height and width of the Sentinel patches (60 m at 10 m).
    time_series_size = TIME_SERIES_SIZE

    labels_file = os.path.join('labels', 'TreeSatBA_v9_60m_multi_labels.json')

    #: Folder under ``root`` mapped to the archive of the Hugging Face repository that holds it.
    archives: ClassVar[dict[str, str]] = {
        'split': 'split.zip',
        'labels': 'labels.zip',
        'aerial': 'aerial.zip',
        'sentinel-ts': 'sentinel-ts.zip',
    }

    def __init__(
        self,
        root: Path = 'data',
        split: Split = 'train',
        sensors: Sequence[Sensor] = all_sensors,
        s2_masks: bool = False,
        label_threshold: float = 0.07,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        download: bool = False,
    ) -> None:
        """Initialize a new TreeSatAITimeSeries instance.

        Args:
            root: Root directory where the dataset can be found.
            split: One of 'train', 'val' or 'test' (the official lists).
            sensors: Modalities to load, a non-empty subset of :attr:`all_sensors`.
            s2_masks: Append the snow and cloud probabilities to ``s2`` as two more channels.
            label_threshold: A genus is a label of a patch if its area share is above this, in [0, 1).
            transforms: A function/transform that takes a sample and returns a transformed version.
            download: If True, download the missing archives (about 16 GB with the aerial images)
                into *root* and extract them.

        Raises:
            ValueError: If an argument is invalid or a patch has an unknown genus.
            KeyError: If a patch of the split has no labels.
            FileNotFoundError: If a patch of the split lacks the file of a requested modality.
            DatasetNotFoundError: If the dataset is not found and *download* is False.
        """
        if split not in ('train', 'val', 'test'):
            msg = f"split must be 'train', 'val' or 'test', got {split!r}"
            raise ValueError(msg)
        unknown = set(sensors) - set(self.all_sensors)
        if not sensors or unknown:
            msg = f'sensors must be a non-empty subset of {self.all_sensors}, got {tuple(sensors)}'
            raise ValueError(msg)
        if s2_masks and 's2' not in sensors:
            raise ValueError("s2_masks=True needs 's2' in sensors")
        if not 0 <= label_threshold < 1:
            msg = f'label_threshold must be in [0, 1), got {label_threshold}'
            raise ValueError(msg)

        self.root = root
        self.split = split
        self.sensors: tuple[Sensor, ...] = tuple(
            s for s in self.all_sensors if s in sensors
        )
        self.series: tuple[TimeSeriesSensor, ...] = tuple(
            s for s in self.time_series_sensors if s in sensors
        )
        self.s2_masks = s2_masks
        self.label_threshold = label_threshold
        self.transforms = transforms
        self.download = download

        self._verify()
        names = self._read_split()
        self.names, self.labels = self._read_labels(names)
        self.aerial_files = self._index_aerial() if 'aerial' in self.sensors else {}
        self.h5_files = self._index_time_series() if self.series else {}

    @property
    def ids(self) -> list[str]:
        """The patch names, one per sample (the ``id`` of the samples).

        Returns:
            Patch names without ``.tif``.
        """
        return self.names

    def files(self) -> list[str]:
        """List the data files the samples are read from.

        Returns:
            The aerial GeoTIFFs, then the time-series HDF5 files of the patches (those of the
            selected sensors), in sample order.
        """
        aerial = [self.aerial_files[n] for n in self.names if n in self.aerial_files]
        return aerial + [self.h5_files[n][0] for n in self.names if n in self.h5_files]

    def list_files(self) -> list[str]:
        """List the files that choose the patches and their labels.

        Returns:
            The split list and the labels JSON.
        """
        return [
            os.path.join(self.root, 'split', f'{self.split}_filenames.lst'),
            os.path.join(self.root, self.labels_file),
        ]

    def __len__(self) -> int:
        """Return the number of patches in the split.

        Returns:
            Number of patches with at least one genus above the threshold.
        """
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return one patch.

        Args:
            index: Index of the patch.

        Returns:
            The sample dict: ``image_<sensor>``, ``valid_<sensor>`` and ``doy_<sensor>`` for time series,
            ``label``, ``id`` and ``year`` (with time series).

        Raises:
            OSError: If a file cannot be read (e.g. truncated).
            KeyError: If an HDF5 file lacks a dataset.
            ValueError: If an array has an unexpected shape or a product name has no date.
        """
        name = self.names[index]
        sample: dict[str, Any] = {}
        if 'aerial' in self.sensors:
            sample[image_key('aerial')] = self._load_aerial(self.aerial_files[name])
        if self.series:
            file, year = self.h5_files[name]
            sample.update(self._load_time_series(file))
            sample['year'] = torch.tensor(year)
        sample['label'] = self.labels[index].clone()
        sample['id'] = name
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _verify(self) -> None:
        """Check that the needed folders exist; extract or download the archives that provide them.

        Raises:
            DatasetNotFoundError: If a folder and its archive are missing and *download* is False.
        """
        folders = ['split', 'labels']
        if 'aerial' in self.sensors:
            folders.append('aerial')
        if self.series:
            folders.append('sentinel-ts')
        missing = [f for f in folders if not os.path.isdir(os.path.join(self.root, f))]
        absent = [
            self.archives[f]
            for f in missing
            if not os.path.isfile(os.path.join(self.root, self.archives[f]))
        ]
        if absent and not self.download:
            error = DatasetNotFoundError(self)
            urls = ', '.join(self.url + archive for archive in absent)
            msg = (
                f'{error} Missing folders {missing}: download {urls} into '
                f'{os.fspath(self.root)!r} (they are extracted there on first use).'
            )
            error.args = (msg,)
            raise error
        for folder in missing:
            archive = self.archives[folder]
            if archive in absent:
                download_url(self.url + archive, self.root, filename=archive)
            self._extract(folder)

    def _extract(self, folder: str) -> None:
        """Extract the archive of a folder into *root*.

        The archives either hold the folder itself (``labels/...``) or its content only; the latter is
        extracted into ``root/<folder>``.

        Args:
            folder: Folder under *root* the archive provides.

        Raises:
            OSError: If the archive is not a readable zip file or does not provide *folder*.
        """
        path = os.path.join(self.root, self.archives[folder])
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.namelist()
        except zipfile.BadZipFile as err:
            msg = f'{path} is not a readable zip file ({err}); delete it and download it again'
            raise OSError(msg) from err
        nested = all(m.startswith(f'{folder}/') for m in members)
        extract_archive(path, self.root if nested else os.path.join(self.root, folder))
        if not os.path.isdir(os.path.join(self.root, folder)):
            msg = f'extracting {path} did not create {os.path.join(self.root, folder)}'
            raise OSError(msg)

    def _read_split(self) -> list[str]:
        """Read the patch names of the split list.

        Returns:
            Patch names, without the ``.tif`` suffix, in file order.

        Raises:
            FileNotFoundError: If the list is missing.
            ValueError: If the list is empty or has duplicates.
        """
        path = os.path.join(self.root, 'split', f'{self.split}_filenames.lst')
        with open(path) as f:
            names = [line.strip().removesuffix('.tif') for line in f if line.strip()]
        if not names:
            msg = f'{path} lists no patch'
            raise ValueError(msg)
        if len(set(names)) != len(names):
            msg = f'{path} lists {len(names) - len(set(names))} patches twice'
            raise ValueError(msg)
        return names

    def _read_labels(self, names: list[str]) -> tuple[list[str], Tensor]:
        """Build the multi-hot labels and drop the patches without any genus above the threshold.

        Args:
            names: Patch names of the split.

        Returns:
            The kept names and their labels, shape (N, 15), float32.

        Raises:
            KeyError: If a patch has no entry in the labels file.
            ValueError: If an entry names an unknown genus or is malformed.
        """
        path = os.path.join(self.root, self.labels_file)
        with open(path) as f:
            table: dict[str, list[list[Any]]] = json.load(f)
        absent = [n for n in names if f'{n}.tif' not in table]
        if absent:
            msg = f'{len(absent)} patches of split {self.split!r} have no labels in {path}, e.g. {absent[:3]}'
            raise KeyError(msg)
        kept: list[str] = []
        rows: list[Tensor] = []
        for name in names:
            row = torch.zeros(len(self.classes), dtype=torch.float32)
            for entry in table[f'{name}.tif']:
                if len(entry) != 2 or entry[0] not in self.classes:
                    msg = f'{path}: entry {entry!r} of {name}.tif is not [genus, area share] with a genus of {self.classes}'
                    raise ValueError(msg)
                if float(entry[1]) > self.label_threshold:
                    row[self.classes.index(entry[0])] = 1
            if row.any():
                kept.append(name)
                rows.append(row)
        dropped = len(names) - len(kept)
        if dropped:
            warnings.warn(
                f'{dropped} of {len(names)} patches of split {self.split!r} have no genus with an area '
                f'share above {self.label_threshold} and are dropped',
                UserWarning,
            )
        if not kept:
            msg = f'no patch of split {self.split!r} has a genus above {self.label_threshold}'
            raise ValueError(msg)
        return kept, torch.stack(rows)

    def _index_aerial(self) -> dict[str, str]:
        """Find the aerial image of every patch, in ``aerial/`` or ``aerial/60m/``.

        Returns:
            Patch name mapped to its GeoTIFF path.

        Raises:
            FileNotFoundError: If a patch has no aerial image.
        """
        found: dict[str, str] = {}
        for folder in (
            os.path.join(self.root, 'aerial', '60m'),
            os.path.join(self.root, 'aerial'),
        ):
            if os.path.isdir(folder):
                for file in os.listdir(folder):
                    if file.endswith('.tif'):
                        found.setdefault(
                            file.removesuffix('.tif'), os.path.join(folder, file)
                        )
        where = os.path.join(self.root, 'aerial', '[60m/]')
        return self._of_every_patch(found, f'aerial image {where}<name>.tif')

    def _index_time_series(self) -> dict[str, tuple[str, int]]:
        """Find the time-series file ``sentinel-ts/{name}_{year}.h5`` of every patch.

        Returns:
            Patch name mapped to its HDF5 path and the year of its series.

        Raises:
            FileNotFoundError: If a patch has no time-series file.
            ValueError: If a patch has several.
        """
        folder = os.path.join(self.root, 'sentinel-ts')
        found: dict[str, tuple[str, int]] = {}
        for file in os.listdir(folder):
            match = H5_NAME.match(file)
            if match is None:
                continue
            name = match['name']
            if name in found:
                msg = f'patch {name} has several time-series files in {folder}: {os.path.basename(found[name][0])}, {file}'
                raise ValueError(msg)
            found[name] = (os.path.join(folder, file), int(match['year']))
        where = os.path.join(folder, '<name>_<year>.h5')
        return self._of_every_patch(found, f'time-series file {where}')

    def _of_every_patch(self, found: dict[str, _File], what: str) -> dict[str, _File]:
        """Take the file of every patch of the split from those found.

        Args:
            found: Patch name mapped to its file.
            what: The file, for the message.

        Returns:
            The files of :attr:`names`, in order.

        Raises:
            FileNotFoundError: If a patch has none.
        """
        absent = [n for n in self.names if n not in found]
        if absent:
            msg = f'{len(absent)} patches of split {self.split!r} have no {what}, e.g. {absent[:3]}'
            raise FileNotFoundError(msg)
        return {n: found[n] for n in self.names}

    def _load_aerial(self, path: str) -> Tensor:
        """Read an aerial image.

        Args:
            path: GeoTIFF path.

        Returns:
            The image, shape (4, H, W), float32.

        Raises:
            OSError: If the file cannot be read.
            ValueError: If it does not have 4 bands.
        """
        try:
            with rasterio.open(path) as src:
                array = src.read()
        except (OSError, rasterio.errors.RasterioError) as err:
            msg = f'cannot read aerial image {path}: {err}'
            raise OSError(msg) from err
        bands = len(self.all_bands['aerial'])
        if array.ndim != 3 or array.shape[0] != bands:
            msg = (
                f'aerial image {path} has shape {array.shape}, expected ({bands}, H, W)'
            )
            raise ValueError(msg)
        return torch.from_numpy(array.astype(np.float32))

    def _load_time_series(self, path: str) -> dict[str, Tensor]:
        """Read the requested time series of a patch (:func:`~torchgeo_colearn.datasets.treesatai_ts_series.read_time_series`).

        Args:
            path: HDF5 path.

        Returns:
            ``image_<sensor>``, ``valid_<sensor>`` and ``doy_<sensor>`` for each time-series sensor.
        """
        return read_time_series(
            path,
            {s: (self.h5_prefix[s], len(self.all_bands[s])) for s in self.series},
            (self.h5_masks, len(self.mask_bands)) if self.s2_masks else None,
        )

    def plot(
        self,
        sample: dict[str, Any],
        show_titles: bool = True,
        suptitle: str | None = None,
    ) -> Figure:
        """Plot a sample: the aerial image and the mean of each channel of each time series.

        Args:
            sample: A sample returned by :meth:`__getitem__` (unnormalised, unpadded).
            show_titles: Flag indicating whether to show titles above each panel.
            suptitle: Optional suptitle, placed before the labels.

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        sensors = [s for s in self.sensors if image_key(s) in sample]
        fig, axs = plt.subplots(
            ncols=len(sensors), figsize=(4 * len(sensors), 4), squeeze=False
        )
        for ax, sensor in zip(axs[0], sensors):
            x = sample[image_key(sensor)]
            if sensor == 'aerial':
                bands = [
                    self.all_bands['aerial'].index(b) for b in self.rgb_bands['aerial']
                ]
                image = rearrange(x[bands].numpy(), 'c h w -> h w c')
                ax.imshow(percentile_normalization(image))
                ax.axis('off')
            else:
                doy = sample[doy_key(sensor)].numpy()
                means = x.flatten(2).nanmean(-1).numpy()
                names = list(self.all_bands[sensor])
                if sensor == 's2' and self.s2_masks:
                    names += self.mask_bands
                for channel, band in enumerate(names):
                    ax.plot(doy, means[:, channel], marker='.', label=band)
                ax.set_xlabel('day of year')
                ax.legend(fontsize='x-small', ncols=2)
            if show_titles:
                ax.set_title(sensor)
        if show_titles:
            title = f'Label: {self._genera(sample["label"])}'
            if 'prediction' in sample:
                title += f'\nPrediction: {self._genera(sample["prediction"])}'
            fig.suptitle(f'{suptitle}\n{title}' if suptitle else title)
        fig.tight_layout()
        return fig

    def _genera(self, multi_hot: Tensor) -> str:
        """Name the genera of a multi-hot vector.

        Args:
            multi_hot: (15,) labels or probabilities.

        Returns:
            The genera above 0.5, comma-separated.
        """
        return ', '.join(c for c, v in zip(self.classes, multi_hot.tolist()) if v > 0.5)
