# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""CropHarvest split into named modalities, for the crop / non-crop and crop-group tasks."""

import contextlib
import functools
import glob
import json
import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchgeo.datasets import CropHarvest
from torchgeo.datasets.utils import Path, lazy_import

from ..batch import image_key
from ..cache import CacheKey, atomic_write
from .cropharvest_layout import (
    BASE_MODALITIES,
    NUM_TIMESTEPS,
    STATIC_MODALITIES,
    resolve_groups,
    split_modalities,
)
from .tensor import TensorMultiModalDataset

#: Classes of the multi-class task: the FAO indicative crop groups of ``classification_label``, in
#: the order of cropharvest's ``CropClassifications`` (label 0 to 9), whatever the data holds.
CROP_GROUPS = (
    'non_crop',
    'cereals',
    'vegetables_melons',
    'fruits_nuts',
    'oilseeds',
    'root_tuber',
    'beverage_spice',
    'leguminous',
    'sugar',
    'other',
)

#: Classes of the binary task (``is_crop`` 0 or 1).
CROP_OR_NOT = ('non_crop', 'crop')


#: Bumped whenever the layout or the key of the cache file changes, to invalidate old caches.
_CACHE_VERSION = 2
_CACHE_PREFIX = 'colearn_cache_'


@dataclass(frozen=True)
class _Sample:
    """One selected array: where it lives and what the task reads from its label row."""

    id: str
    path: str
    label: int
    lat: float
    lon: float


class CropHarvestMultiModal(CropHarvest):
    """CropHarvest with one ``image_<modality>`` per sensor and the MDiCo labels.

    The on-disk format is TorchGeo's :class:`~torchgeo.datasets.CropHarvest` (Zenodo record 7257688):
    ``root/labels.geojson`` and one ``root/features/arrays/<index>_<dataset>.h5`` per labelled pixel,
    holding a dataset ``array`` of shape (12, 18) (monthly time steps ending on 1 February x bands
    ``VV, VH, B2..B12, temperature_2m, total_precipitation, elevation, slope, NDVI``). Download,
    checksum and extraction of ``features.tar.gz`` are TorchGeo's.

    Differences from TorchGeo's class:

    * the task is ``'binary'`` (label ``is_crop``, classes :data:`CROP_OR_NOT`) or ``'multiclass'``
      (``classification_label``, the fixed class order :data:`CROP_GROUPS`; rows whose
      ``classification_label`` is null are left out, as in MDiCo);
    * label rows with ``is_test`` true (CropHarvest's held-out test regions) are left out unless
      *include_test* is set;
    * the 18 bands are split into base modalities (:data:`BASE_MODALITIES`): ``s1`` (12, 2) VV, VH;
      ``s2`` (12, 11) B2 to B12 without B10; ``ndvi`` (12, 1); ``weather`` (12, 2) temperature (K),
      precipitation (m); ``dem`` (2,) elevation (m), slope (degrees) at the first step. Groups
      concatenate base modalities along the channel axis, e.g. MDiCo's ``{'s2': ['s2', 'ndvi']}``;
    * the label row of each array is found once, through a dictionary;
    * :meth:`to_tensor_dataset` loads every sample at once and caches the arrays in one file under
      *root*, so that only the first run reads the ~70,000 small files.

    A sample holds ``image_<modality>`` (float32), ``label`` (int64 scalar), ``id``
    (``'<index>_<dataset>'``), ``lat`` and ``lon`` (float32 degrees, NaN when the row has none).

    If you use this dataset in your research, please cite:

    * https://openreview.net/forum?id=JtjzUXPEaCu
    """

    #: The array files of :attr:`arrays_dir`, their names parsed into index and dataset (CropHarvest
    #: dataset names use hyphens, never underscores), and what the messages say of those names.
    array_glob: ClassVar[str] = '*.h5'
    array_name: ClassVar[re.Pattern[str]] = re.compile(r'^(\d+)_([^_]+)\.h5$')
    array_name_format: ClassVar[str] = 'array files must be named <index>_<dataset>.h5'

    def __init__(
        self,
        root: Path = 'data',
        task: Literal['binary', 'multiclass'] = 'binary',
        modalities: Sequence[str] | None = None,
        modality_groups: Mapping[str, Sequence[str]] | None = None,
        include_test: bool = False,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        download: bool = False,
        checksum: bool = False,
    ) -> None:
        """Initialize a new CropHarvestMultiModal instance.

        TorchGeo's ``__init__`` is not called: it derives raw crop-name classes from a table that is
        scanned once per sample, both of which this class replaces.

        Args:
            root: Root directory holding ``labels.geojson`` and ``features/``.
            task: ``'binary'`` (crop / non-crop from ``is_crop``) or ``'multiclass'`` (crop groups from
                ``classification_label``).
            modalities: Base modalities to return, each under its own key; default all of
                :data:`BASE_MODALITIES`.
            modality_groups: Output modality mapped to the base modalities concatenated along the
                channel axis, e.g. ``{'s1': ['s1'], 's2': ['s2', 'ndvi']}``; replaces *modalities*.
            include_test: Keep the label rows flagged ``is_test``.
            transforms: A function applied to each sample of :meth:`__getitem__`.
            download: If True, download the dataset when it is missing from *root*.
            checksum: If True, check the MD5 of the downloaded files.

        Raises:
            DatasetNotFoundError: If the dataset is not found and *download* is False.
            DependencyNotFoundError: If h5py is not installed.
            ValueError: If an option is invalid, a file name or a label row is malformed, or no sample
                is left.
        """
        lazy_import('h5py')
        self.root = root
        self.task = task
        self.include_test = include_test
        self.transforms = transforms
        self.download = download
        self.checksum = checksum
        self.groups = resolve_groups(modalities, modality_groups)
        self.modalities = tuple(self.groups)
        match task:
            case 'binary':
                self.classes = np.array(CROP_OR_NOT)
            case 'multiclass':
                self.classes = np.array(CROP_GROUPS)
            case _:
                raise ValueError(f"task must be 'binary' or 'multiclass', got {task!r}")
        self._band_index = {
            name: torch.tensor(
                [
                    self.all_bands.index(b)
                    for part in parts
                    for b in BASE_MODALITIES[part]
                ]
            )
            for name, parts in self.groups.items()
        }

        self._verify()
        self.files = self._load_features(self.root)
        self._labelled = self._match_label_rows()
        self.samples = [
            s for s in map(self._to_sample, self._labelled) if s is not None
        ]
        if not self.samples:
            msg = (
                f'no CropHarvest sample left in {self.root} for task={task!r}, '
                f'include_test={include_test} ({len(self._labelled)} arrays have a label row)'
            )
            raise ValueError(msg)

    @property
    def labels_path(self) -> str:
        """Path of ``labels.geojson``.

        Returns:
            The path under *root*.
        """
        return os.path.join(self.root, self.file_dict['labels']['extracted_filename'])

    @property
    def arrays_dir(self) -> str:
        """Directory of the ``<index>_<dataset>.h5`` array files.

        Returns:
            ``root/features/arrays``.
        """
        return os.path.join(self.root, self.file_dict['features']['extracted_filename'])

    @property
    def modality_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of one sample of each modality.

        Returns:
            Modality mapped to (12, C) for time series or (C,) for static modalities.
        """
        return {
            name: (len(index),)
            if self._is_static(name)
            else (NUM_TIMESTEPS, len(index))
            for name, index in self._band_index.items()
        }

    def __len__(self) -> int:
        """Return the number of selected samples.

        Returns:
            Length of the dataset.
        """
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load one sample from its h5 file.

        Args:
            index: Sample index.

        Returns:
            The sample: ``image_<modality>`` float32 of shape (12, C) or (C,), ``label`` int64 scalar,
            ``id``, ``lat`` and ``lon`` float32 scalars.
        """
        sample = self.samples[index]
        out: dict[str, Any] = self._split(self._load_array(sample.path))
        out['label'] = torch.tensor(sample.label)
        out['lat'] = torch.tensor(sample.lat, dtype=torch.float32)
        out['lon'] = torch.tensor(sample.lon, dtype=torch.float32)
        out['id'] = sample.id
        if self.transforms is not None:
            out = self.transforms(out)
        return out

    def to_tensor_dataset(self) -> TensorMultiModalDataset:
        """Load every selected sample into one in-memory dataset.

        The (12, 18) arrays of all the files that have a label row (whatever the task and test
        filter) are read once and saved to :meth:`cache_path`; later calls read that single file. The
        cache file is named after a hash of the names, sizes and bytes of those files, so it is
        rebuilt when a file is added, removed or changed. The *transforms* are not applied.

        Returns:
            The samples with the keys of :meth:`__getitem__`, each stacked along a first axis of length
            ``len(self)``, and the source ``dataset`` name of each sample as metadata (for grouped
            folds).
        """
        ids, arrays = self._stacked_arrays()
        position = {id_: row for row, id_ in enumerate(ids)}
        rows = torch.tensor([position[s.id] for s in self.samples], dtype=torch.long)
        tensors = self._split(arrays[rows])
        tensors['label'] = torch.tensor([s.label for s in self.samples])
        tensors['lat'] = torch.tensor(
            [s.lat for s in self.samples], dtype=torch.float32
        )
        tensors['lon'] = torch.tensor(
            [s.lon for s in self.samples], dtype=torch.float32
        )
        # the id is '<index>_<dataset>' and dataset names have no underscore
        datasets = [s.id.split('_', 1)[1] for s in self.samples]
        return TensorMultiModalDataset(
            tensors, ids=[s.id for s in self.samples], metadata={'dataset': datasets}
        )

    @functools.cached_property
    def _cache_key(self) -> CacheKey:
        """What the cache of the stacked arrays depends on (the files are hashed once).

        Returns:
            The key of :meth:`cache_path`.
        """
        return CacheKey(
            os.fspath(self.root),
            _CACHE_PREFIX.rstrip('_'),
            options={'version': _CACHE_VERSION},
            files=[file['chip'] for file, _ in self._labelled],
        )

    def cache_path(self) -> str:
        """Return the cache file of the stacked arrays.

        Returns:
            ``root/colearn_cache_<hash>.pt``, the hash covering the cache format and the relative
            name, size and bytes (the first and last 64 KiB; the arrays are smaller, so all of them)
            of every labelled array file (:class:`~torchgeo_colearn.cache.CacheKey`).
        """
        return self._cache_key.path('.pt')

    def plot(self, sample: dict[str, Any], suptitle: str | None = None) -> Figure:
        """Plot every modality of a sample: time series as lines over the months, vectors as bars.

        Args:
            sample: A sample returned by :meth:`__getitem__`.
            suptitle: Optional title of the figure.

        Returns:
            A matplotlib figure with one panel per modality, titled with the class name.
        """
        fig, axs = plt.subplots(
            1,
            len(self.modalities),
            figsize=(4 * len(self.modalities), 3),
            squeeze=False,
        )
        for ax, modality in zip(axs[0], self.modalities):
            values = np.asarray(sample[image_key(modality)])
            if values.ndim == 2:
                ax.plot(np.arange(1, NUM_TIMESTEPS + 1), values)
                ax.set_xlabel('Month')
            else:
                ax.bar(np.arange(len(values)), values)
            ax.set_title(modality)
        label = self.classes[int(sample['label'])]
        fig.suptitle(f'{suptitle}: {label}' if suptitle is not None else label)
        return fig

    def _load_features(self, root: Path) -> list[dict[str, str]]:
        """List the array files of :attr:`arrays_dir`, parsing index and dataset from their names.

        Args:
            root: Root directory of the dataset (:attr:`arrays_dir` is under it).

        Returns:
            One dict per file, sorted by name: ``chip`` (path), ``index`` and ``dataset``.

        Raises:
            ValueError: If a file name does not match :attr:`array_name`.
        """
        files = []
        for path in sorted(glob.glob(os.path.join(self.arrays_dir, self.array_glob))):
            match = self.array_name.match(os.path.basename(path))
            if match is None:
                msg = f'{path}: CropHarvest {self.array_name_format}'
                raise ValueError(msg)
            files.append({'chip': path, 'index': match[1], 'dataset': match[2]})
        return files

    def _load_array(self, path: Path) -> Tensor:
        """Load the (12, 18) array of one file.

        Args:
            path: Path of the h5 file.

        Returns:
            The float32 array, shape (12, 18).

        Raises:
            OSError: If the file cannot be read (missing, truncated, not HDF5).
            KeyError: If the file has no ``array`` dataset.
            ValueError: If the array does not have shape (12, 18).
        """
        h5py = lazy_import('h5py')
        try:
            with h5py.File(path, 'r') as f:
                if 'array' not in f:
                    msg = f'{path}: no dataset "array" (found {sorted(f)})'
                    raise KeyError(msg)
                array = np.asarray(f['array'][()])
        except OSError as error:
            msg = f'cannot read CropHarvest array file {path}: {error}'
            raise OSError(msg) from error
        expected = (NUM_TIMESTEPS, len(self.all_bands))
        if array.shape != expected:
            msg = f'{path}: "array" has shape {array.shape}, expected {expected} (months, bands)'
            raise ValueError(msg)
        return torch.from_numpy(array.astype(np.float32))

    def _load_label_rows(self) -> dict[tuple[int, str], dict[str, Any]]:
        """Read ``labels.geojson`` into a lookup by (index, dataset).

        Returns:
            The properties of the first row of every (index, dataset) key.

        Raises:
            ValueError: If the file is not valid JSON, not a FeatureCollection, or a row lacks its
                index or dataset; the message names the file.
        """
        path = self.labels_path
        try:
            with open(path, encoding='utf8') as f:
                content = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            msg = f'{path} is not valid GeoJSON: {error}'
            raise ValueError(msg) from error
        features = content.get('features') if isinstance(content, dict) else None
        if features is None:
            msg = f'{path}: expected a GeoJSON FeatureCollection with a "features" list'
            raise ValueError(msg)
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        duplicates = 0
        for number, feature in enumerate(features):
            properties = feature.get('properties') or {}
            try:
                key = (int(properties['index']), str(properties['dataset']))
            except (KeyError, TypeError, ValueError) as error:
                msg = f'{path}: feature {number} has no valid "index" and "dataset" properties'
                raise ValueError(msg) from error
            if key in rows:
                duplicates += 1
            else:
                rows[key] = properties
        if duplicates:
            warnings.warn(
                f'{path}: {duplicates} rows repeat an (index, dataset) pair; the first row is used',
                UserWarning,
                stacklevel=3,
            )
        return rows

    def _match_label_rows(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """Pair every array file with its label row, warning about the unpaired ones.

        Returns:
            (file, properties) of every array that has a label row, in file order.
        """
        rows = self._load_label_rows()
        labelled = []
        unlabelled = []
        for file in self.files:
            properties = rows.pop((int(file['index']), file['dataset']), None)
            if properties is None:
                unlabelled.append(os.path.basename(file['chip']))
            else:
                labelled.append((file, properties))
        if unlabelled:
            warnings.warn(
                f'{len(unlabelled)} of {len(self.files)} CropHarvest arrays have no row in '
                f'{self.labels_path} and are skipped (e.g. {unlabelled[0]})',
                UserWarning,
                stacklevel=3,
            )
        if rows:
            index, dataset = next(iter(rows))
            warnings.warn(
                f'{len(rows)} rows of {self.labels_path} have no array in {self.arrays_dir} and '
                f'are skipped (e.g. {index}_{dataset})',
                UserWarning,
                stacklevel=3,
            )
        return labelled

    def _to_sample(self, pair: tuple[dict[str, str], dict[str, Any]]) -> _Sample | None:
        """Read the task label of one labelled array, if it belongs to the selection.

        Args:
            pair: The file and the properties of its label row.

        Returns:
            The sample, or None if the test filter or the task leaves it out.

        Raises:
            ValueError: If a flag is not boolean or a ``classification_label`` is unknown.
        """
        file, properties = pair
        sample_id = f'{file["index"]}_{file["dataset"]}'
        if not self.include_test and self._flag(properties, 'is_test', sample_id):
            return None
        match self.task:
            case 'binary':
                label = int(self._flag(properties, 'is_crop', sample_id))
            case 'multiclass':
                group = properties.get('classification_label')
                if group is None:
                    return None
                if group not in CROP_GROUPS:
                    msg = (
                        f'{self.labels_path}: row {sample_id} has classification_label {group!r}, '
                        f'expected one of {CROP_GROUPS}'
                    )
                    raise ValueError(msg)
                label = CROP_GROUPS.index(group)
        return _Sample(
            sample_id,
            file['chip'],
            label,
            _coordinate(properties.get('lat')),
            _coordinate(properties.get('lon')),
        )

    def _flag(self, properties: Mapping[str, Any], key: str, sample_id: str) -> bool:
        """Read a boolean property of a label row.

        Args:
            properties: The label row.
            key: The property, e.g. ``'is_crop'``.
            sample_id: Identifier of the row, for the error message.

        Returns:
            The flag.

        Raises:
            ValueError: If the value is missing or neither 0/1 nor true/false.
        """
        value = properties.get(key)
        if value not in (0, 1):  # True == 1 and False == 0
            msg = f'{self.labels_path}: row {sample_id} has {key}={value!r}, expected 0/1 or true/false'
            raise ValueError(msg)
        return bool(value)

    def _is_static(self, name: str) -> bool:
        """Tell whether an output modality is made of static base modalities.

        Args:
            name: Output modality.

        Returns:
            True for (C,) vectors taken at the first time step.
        """
        return self.groups[name][0] in STATIC_MODALITIES

    def _split(self, arrays: Tensor) -> dict[str, Tensor]:
        """Slice CropHarvest arrays into the output modalities.

        Args:
            arrays: Arrays of shape (..., 12, 18).

        Returns:
            ``image_<modality>`` mapped to (..., 12, C) or, for static modalities, (..., C).
        """
        return split_modalities(arrays, self.groups)

    def _stacked_arrays(self) -> tuple[list[str], Tensor]:
        """Return the arrays of every labelled file, from the cache when it is current.

        Returns:
            The identifiers and the float32 arrays, shape (N, 12, 18), in file order.
        """
        ids = [f'{file["index"]}_{file["dataset"]}' for file, _ in self._labelled]
        path = self.cache_path()
        if os.path.exists(path):
            try:
                cached = torch.load(path, weights_only=True)
                if cached['ids'] == ids:
                    arrays: Tensor = cached['arrays']
                    return ids, arrays
            except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError):
                warnings.warn(
                    f'{path} is unreadable; rebuilding it', UserWarning, stacklevel=3
                )
        arrays = torch.stack(
            [self._load_array(file['chip']) for file, _ in self._labelled]
        )
        self._write_cache(path, ids, arrays)
        return ids, arrays

    def _write_cache(self, path: str, ids: list[str], arrays: Tensor) -> None:
        """Save the stacked arrays atomically and remove the caches they replace.

        A read-only root only costs a warning: the next run reads the files again.

        Args:
            path: The cache file.
            ids: Sample identifiers.
            arrays: The arrays, shape (N, 12, 18).
        """
        try:
            atomic_write(
                path,
                lambda partial: torch.save({'ids': ids, 'arrays': arrays}, partial),
            )
        except OSError as error:
            warnings.warn(
                f'cannot write the CropHarvest cache {path} ({error}); the arrays will be read '
                'from the h5 files again next time',
                UserWarning,
                stacklevel=4,
            )
            return
        for stale in glob.glob(os.path.join(self.root, f'{_CACHE_PREFIX}*.pt')):
            if os.path.abspath(stale) != os.path.abspath(path):
                with contextlib.suppress(
                    FileNotFoundError
                ):  # another process removed it
                    os.remove(stale)


def _coordinate(value: Any) -> float:
    """Read a latitude or longitude property.

    Args:
        value: The property value, possibly None.

    Returns:
        The coordinate in degrees, NaN when missing.
    """
    return float('nan') if value is None else float(value)
