# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Multi-sensor pixel time series in the CropHarvest / Presto band layout: fuel moisture, algae blooms."""

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torchgeo.datasets import CropHarvest, DatasetNotFoundError, NonGeoDataset

from .cropharvest_layout import (
    BASE_MODALITIES,
    STATIC_MODALITIES,
    resolve_groups,
    split_modalities,
)
from .tensor import TensorMultiModalDataset

#: How the target is read: a value in target units, or a class index.
PrestoTask = Literal['regression', 'multiclass']


class PrestoPixelTimeSeries(NonGeoDataset):
    """Pixel time series of Sentinel-1, Sentinel-2, ERA5 and SRTM in the CropHarvest / Presto layout.

    The evaluation folders of Presto (Tseng et al. 2023) store one labelled pixel per row as NumPy
    arrays under *root*:

    * ``s1_s2_era5_srtm.npy``: (N, T, 18) float, T monthly steps x the 18 bands of CropHarvest
      (:attr:`torchgeo.datasets.CropHarvest.all_bands`): VV, VH (Sentinel-1, dB); B2, B3, B4, B5, B6,
      B7, B8, B8A, B9, B11, B12 (Sentinel-2 L1C reflectance x 10^4); temperature_2m (K),
      total_precipitation (m) (ERA5 monthly); elevation (m), slope (degrees) (SRTM); and the
      exporter's "NDVI", which in these arrays is (B7 - B3) / (B7 + B3) (a band-index quirk of the
      CropHarvest exporter, see :mod:`torchgeo_colearn.datasets.cropharvest_export`);
    * ``target.npy`` (N,): the target;
    * optional: ``is_test.npy`` (N,) 0/1 (the shipped train/test split), ``latlon.npy`` (N, 2)
      degrees, ``site.npy`` (N,) str (site names, sites repeat over dates), ``uid.npy`` (N,) str
      (sample ids; the row number otherwise) and ``train_test_split.json`` (site name -> ``'train'``
      or ``'test'``, checked against ``is_test.npy``). ``month.npy`` and ``dynamic_world.npy`` are
      not read.

    The 18 bands are split into the base modalities of CropHarvest
    (:data:`~torchgeo_colearn.datasets.cropharvest_layout.BASE_MODALITIES`): ``s1`` (T, 2), ``s2`` (T, 11),
    ``ndvi`` (T, 1), ``weather`` (T, 2) and ``dem`` (2,) elevation and slope, a static vector: SRTM is
    repeated at every step of the arrays, and the loader checks that it is constant over time
    (ValueError naming the first sample and band that is not). *modality_groups* concatenates base
    modalities under a name of your choice, e.g. ``{'s2': ['s2', 'ndvi'], 'topography': ['dem']}``.

    A sample holds ``image_<modality>`` (float32), ``label`` (float32 scalar for regression, int64
    class index for multi-class), ``id``, ``lat`` and ``lon`` (float32 degrees, when ``latlon.npy``
    exists) and ``site`` (when ``site.npy`` exists). :meth:`to_tensor_dataset` carries ``site`` and
    ``is_test`` as per-sample metadata.

    Subclasses are the benchmarks (:class:`FuelMoisture`, :class:`AlgaeBlooms`): they fix the tasks
    and classes.

    If you use this dataset in your research, please cite:

    * https://arxiv.org/abs/2304.14065
    """

    #: File of the (N, T, 18) arrays.
    arrays_file = 's1_s2_era5_srtm.npy'

    #: Tasks the target supports, the default first.
    tasks: ClassVar[tuple[PrestoTask, ...]] = ('regression', 'multiclass')

    #: Target values of the classes of the multi-class task, in label order (label i is classes[i]);
    #: None when the task is not offered.
    classes: ClassVar[tuple[int, ...] | None] = None

    def __init__(
        self,
        root: str = 'data',
        task: PrestoTask | None = None,
        modalities: Sequence[str] | None = None,
        modality_groups: Mapping[str, Sequence[str]] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Initialize a new PrestoPixelTimeSeries instance.

        Args:
            root: Directory holding ``s1_s2_era5_srtm.npy``, ``target.npy`` and the optional files.
            task: ``'regression'`` (the target as a float) or ``'multiclass'`` (the target's position
                in :attr:`classes`), among :attr:`tasks`; default the first of :attr:`tasks`.
            modalities: Base modalities to return, each under its own key; default all of
                :data:`~torchgeo_colearn.datasets.cropharvest_layout.BASE_MODALITIES`.
            modality_groups: Output modality mapped to the base modalities concatenated along the
                channel axis; replaces *modalities*.
            transforms: A function applied to each sample of :meth:`__getitem__`.

        Raises:
            DatasetNotFoundError: If the arrays or the targets are not in *root*.
            ValueError: If an option is invalid, a file has the wrong shape or holds a non-finite
                value, a target is not a class, the static bands vary over time or the split files
                disagree.
        """
        task = self.tasks[0] if task is None else task
        if task not in self.tasks:
            msg = (
                f'{type(self).__name__}: task must be one of {self.tasks}, got {task!r}'
            )
            raise ValueError(msg)
        if task == 'multiclass' and self.classes is None:
            msg = f'{type(self).__name__} has no classes; use task="regression"'
            raise ValueError(msg)
        self.root = root
        self.task = task
        self.transforms = transforms
        self.groups = resolve_groups(modalities, modality_groups)
        self.modalities = tuple(self.groups)

        arrays = self._load_arrays()
        count, steps = arrays.shape[:2]
        self.num_timesteps = steps
        self.tensors = split_modalities(torch.from_numpy(arrays), self.groups)
        self.tensors['label'] = self._labels(self._load('target.npy', (count,)))
        self.ids = self._ids(count)
        self.metadata: dict[str, np.ndarray] = {}
        if self._exists('latlon.npy'):
            latlon = self._load('latlon.npy', (count, 2)).astype(np.float32)
            self.tensors['lat'] = torch.from_numpy(latlon[:, 0].copy())
            self.tensors['lon'] = torch.from_numpy(latlon[:, 1].copy())
        if self._exists('site.npy'):
            self.metadata['site'] = self._load('site.npy', (count,)).astype(str)
        if self._exists('is_test.npy'):
            self.metadata['is_test'] = self._is_test(count)

    def __len__(self) -> int:
        """Return the number of samples.

        Returns:
            Number of samples.
        """
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return one sample.

        Args:
            index: Sample index.

        Returns:
            ``image_<modality>`` (float32, (T, C) or (C,)), ``label``, ``id`` and, when known,
            ``lat``, ``lon`` and ``site``.
        """
        sample: dict[str, Any] = {
            key: value[index] for key, value in self.tensors.items()
        }
        sample['id'] = self.ids[index]
        if 'site' in self.metadata:
            sample['site'] = str(self.metadata['site'][index])
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    @property
    def modality_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of one sample of each modality.

        Returns:
            Modality mapped to (T, C) for time series or (C,) for static modalities.
        """
        return {
            name: tuple(self.tensors[f'image_{name}'].shape[1:])
            for name in self.modalities
        }

    def to_tensor_dataset(self) -> TensorMultiModalDataset:
        """Return the samples as an in-memory dataset that batches without collation.

        The tensors are shared, not copied; *transforms* are not carried.

        Returns:
            A dataset with the ``image_*``, ``label`` (and ``lat``, ``lon``) tensors, the ids and the
            ``site`` and ``is_test`` metadata that exist.
        """
        return TensorMultiModalDataset(self.tensors, self.ids, self.metadata)

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def _require(self, name: str) -> str:
        """Return the path of a file under *root* that must exist.

        Args:
            name: File name.

        Returns:
            Its path.

        Raises:
            DatasetNotFoundError: If the file is missing.
        """
        path = self._path(name)
        if not os.path.isfile(path):
            msg = (
                f'{type(self).__name__}: {path} not found; the folder must hold '
                f'{self.arrays_file} and target.npy (see the dataset documentation)'
            )
            raise _PrestoNotFoundError(msg)
        return path

    def _load(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Load one array and check its shape.

        Args:
            name: File name under *root*.
            shape: Expected shape.

        Returns:
            The array.

        Raises:
            DatasetNotFoundError: If the file is missing.
            ValueError: If the shape differs.
        """
        path = self._require(name)
        array: np.ndarray = np.load(path, allow_pickle=False)
        if array.shape != shape:
            msg = f'{path}: shape {array.shape}, expected {shape}'
            raise ValueError(msg)
        return array

    def _load_arrays(self) -> np.ndarray:
        """Load the (N, T, 18) arrays and check them.

        Returns:
            The float32 arrays.

        Raises:
            DatasetNotFoundError: If the file is missing.
            ValueError: If the arrays have the wrong layout, a non-finite value, or static bands that
                vary over time.
        """
        path = self._require(self.arrays_file)
        arrays: np.ndarray = np.load(path, allow_pickle=False)
        bands = len(CropHarvest.all_bands)
        if arrays.ndim != 3 or arrays.shape[2] != bands or arrays.shape[1] < 1:
            msg = f'{path}: shape {arrays.shape}, expected (N, T, {bands}) (samples, months, bands)'
            raise ValueError(msg)
        finite = np.isfinite(arrays)
        if not finite.all():
            row, step, band = np.argwhere(~finite)[0]
            msg = (
                f'{path}: sample {row}, step {step}, band {CropHarvest.all_bands[band]} holds '
                f'{arrays[row, step, band]}; the arrays must be finite'
            )
            raise ValueError(msg)
        static = [
            CropHarvest.all_bands.index(b)
            for part in sorted(STATIC_MODALITIES)
            for b in BASE_MODALITIES[part]
        ]
        change = np.abs(arrays[:, :, static] - arrays[:, :1, static]).max(1)
        if (change > 0).any():
            row, band = np.argwhere(change > 0)[0]
            name = CropHarvest.all_bands[static[band]]
            msg = (
                f'{path}: static band {name} of sample {row} varies over time by up to '
                f'{change[row, band]:g}; SRTM bands must repeat the same value at every step'
            )
            raise ValueError(msg)
        return arrays.astype(np.float32)

    def _labels(self, target: np.ndarray) -> Tensor:
        """Turn the target into labels of the task.

        Args:
            target: The raw target, shape (N,).

        Returns:
            float32 values (regression) or int64 class indices (multi-class).

        Raises:
            ValueError: If a target is not finite, or not one of :attr:`classes`.
        """
        path = self._path('target.npy')
        if not np.isfinite(target.astype(np.float64)).all():
            row = int(np.flatnonzero(~np.isfinite(target.astype(np.float64)))[0])
            msg = (
                f'{path}: sample {row} has target {target[row]}; targets must be finite'
            )
            raise ValueError(msg)
        match self.task:
            case 'regression':
                return torch.from_numpy(target.astype(np.float32))
            case 'multiclass':
                assert self.classes is not None
                known = np.isin(target, self.classes)
                if not known.all():
                    row = int(np.flatnonzero(~known)[0])
                    msg = (
                        f'{path}: sample {row} has target {target[row]}, not one of the classes '
                        f'{self.classes}'
                    )
                    raise ValueError(msg)
                index = np.searchsorted(np.asarray(self.classes), target)
                return torch.from_numpy(index.astype(np.int64))

    def _ids(self, count: int) -> list[str]:
        """Read the sample ids, or number the rows.

        Args:
            count: Number of samples.

        Returns:
            ``uid.npy`` as strings, or the row numbers.

        Raises:
            ValueError: If an id repeats.
        """
        if not self._exists('uid.npy'):
            return [str(i) for i in range(count)]
        ids = self._load('uid.npy', (count,)).astype(str)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            msg = f'{self._path("uid.npy")}: id {str(unique[counts > 1][0])!r} repeats'
            raise ValueError(msg)
        return [str(i) for i in ids]

    def _is_test(self, count: int) -> np.ndarray:
        """Read the shipped split, checked against ``train_test_split.json`` when both exist.

        Args:
            count: Number of samples.

        Returns:
            Bool array, True for the test samples.

        Raises:
            ValueError: If a flag is not 0/1, or a site's samples disagree with the site split.
        """
        path = self._path('is_test.npy')
        flags = self._load('is_test.npy', (count,))
        if not np.isin(flags, (0, 1)).all():
            row = int(np.flatnonzero(~np.isin(flags, (0, 1)))[0])
            msg = f'{path}: sample {row} has is_test {flags[row]}, expected 0 or 1'
            raise ValueError(msg)
        is_test = flags.astype(bool)
        if 'site' in self.metadata and self._exists('train_test_split.json'):
            with open(self._path('train_test_split.json')) as f:
                site_split: dict[str, str] = json.load(f)
            for row, (site, test) in enumerate(zip(self.metadata['site'], is_test)):
                expected = site_split.get(str(site))
                if expected != ('test' if test else 'train'):
                    msg = (
                        f'{path}: sample {row} (site {site!r}) has is_test {int(test)}, but '
                        f'train_test_split.json says {expected!r}'
                    )
                    raise ValueError(msg)
        return is_test


class FuelMoisture(PrestoPixelTimeSeries):
    """Live fuel moisture of the western USA from four sensors over 3 months (Presto's benchmark).

    2313 samples of 150 sites (sites repeat over dates), target live fuel moisture content in % of dry
    weight (US National Fuel Moisture Database through Rao et al. 2020), T = 3 monthly steps, with a
    site-level train / test split (1578 / 735 samples, 100 / 50 sites). Files: github.com/nasaharvest/
    presto ``data/fuel_moisture/`` (MIT licence). Regression only.

    If you use this dataset in your research, please cite:

    * https://arxiv.org/abs/2304.14065
    * https://doi.org/10.1016/j.rse.2020.111797
    """

    tasks: ClassVar[tuple[PrestoTask, ...]] = ('regression',)


class AlgaeBlooms(PrestoPixelTimeSeries):
    """Cyanobacteria bloom severity of US inland waters from four sensors over 12 months.

    1122 samples of the "Tick Tick Bloom" challenge (NASA, DrivenData) with severity 1 to 5, T = 12
    monthly steps, with a train / test split (777 / 345) as shipped in github.com/nasaharvest/presto
    ``data/algae_blooms/npy/`` (MIT licence). Severity is ordinal: ``task='multiclass'`` (default)
    gives labels 0 to 4 for severities 1 to 5, ``task='regression'`` the severity itself.

    If you use this dataset in your research, please cite:

    * https://arxiv.org/abs/2304.14065
    """

    tasks: ClassVar[tuple[PrestoTask, ...]] = ('multiclass', 'regression')
    classes: ClassVar[tuple[int, ...] | None] = (1, 2, 3, 4, 5)


class _PrestoNotFoundError(DatasetNotFoundError):
    """Raised when a Presto evaluation folder lacks a file, naming it."""

    def __init__(self, message: str) -> None:
        FileNotFoundError.__init__(self, message)
