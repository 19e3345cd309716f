# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Live fuel moisture content (LFMC) regression benchmark of Rao et al. (2020)."""

import glob
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset

from ..batch import image_key
from ..modality_info import ModalityInfo
from .tensor import TensorMultiModalDataset

#: Where the LFMC table is read from.
Source = Literal['csv', 'geojson']

#: The four time steps of a sample, oldest first.
TIME_STEPS = ('t-3', 't-2', 't-1', 't')

#: The two 'vv' and 'vh' SAR-over-optical ratios of each optical variable, in the table's order.
_SAR_OPTICAL = tuple(
    f'{sar}_{optical}'
    for sar in ('vv', 'vh')
    for optical in ('red', 'green', 'blue', 'swir', 'nir', 'ndvi', 'ndwi', 'nirv')
)

#: What the time axis of the time-series modalities holds.
TIME_STEPS_DESCRIPTION = (
    't-3, t-2, t-1, t: monthly composites, the last one of the month of the measurement'
)

#: Unit of each variable of the table.
VARIABLE_UNITS: dict[str, str] = {
    'vv': 'dB',
    'vh': 'dB',
    'vh_vv': 'dB',
    **{v: 'reflectance x 10^4' for v in ('red', 'green', 'blue', 'swir', 'nir')},
    **{v: '1' for v in ('ndvi', 'ndwi', 'nirv')},
    **{v: 'ratio' for v in _SAR_OPTICAL},
    **{v: '%' for v in ('silt', 'sand', 'clay')},
    'slope': 'degrees',
    'elevation': 'm',
    'canopy_height': 'm',
}

#: Accepted spellings of ``date``: the CSV's ISO dates and the GeoJSON's US short dates.
_DATE_FORMATS = ('%Y-%m-%d', '%m/%d/%y')

#: Where TorchGeo's WesternUSALiveFuelMoisture downloads the GeoJSON files from.
_AZURE_URL = 'https://radiantearth.blob.core.windows.net/mlhub/su-sar-moisture-content'


class _LFMCNotFoundError(DatasetNotFoundError):
    """Raised when neither LFMC source is on disk, saying where to get it."""

    def __init__(self, message: str) -> None:
        FileNotFoundError.__init__(self, message)


class LFMC(NonGeoDataset):
    """Live fuel moisture content of the western USA, from Sentinel-1 and Landsat-8 time series.

    The benchmark of Rao et al. (2020) as used by MDiCo (Mena et al., 2025): 2578 samples (site and
    date) of measured live fuel moisture content, each with the three monthly composites before the
    measurement and the one of its month, plus static site descriptors.

    Sources (*source*):

    * ``'csv'``: ``root/training_features.csv`` of github.com/kkraoj/lfmc_from_sar (``input_data/``):
      2615 rows, 142 columns (the sample index, ``percent(t)``, ``date``, ``site``, the 7 static
      variables, 27 dynamic variables at each of t-3, t-2, t-1, t, the static variables repeated for
      t-3 to t-1, ``latitude``, ``longitude``). Rows repeating an index keep the last one, as MDiCo
      does: 2578 samples.
    * ``'geojson'``: TorchGeo's :class:`~torchgeo.datasets.WesternUSALiveFuelMoisture` layout,
      ``root/**/feature_*.geojson``, one Feature per sample with the same variables as properties
      and a Point ``[lon, lat]``. There is no sample index: the id is the file name without
      extension, and rows repeating a (site, date) keep the last file in name order (the CSV's
      duplicates are such rows).

    Base modalities (time series are (4, C) ordered t-3, t-2, t-1, t; static ones are (C,)):

    * ``s1`` (4, 2): Sentinel-1 backscatter vv, vh (dB).
    * ``s1_ratio`` (4, 1): vh_vv = vh - vv (dB).
    * ``optical`` (4, 5): Landsat-8 surface reflectance x 10^4, red, green, blue, swir, nir.
    * ``optical_indices`` (4, 3): ndvi, ndwi, nirv.
    * ``sar_optical`` (4, 16): vv and vh over red, green, blue, swir, nir, ndvi, ndwi, nirv.
    * ``soil`` (3,): silt, sand, clay (%; -999 marks no data in the source, kept as is).
    * ``dem`` (2,): slope (degrees), elevation (m).
    * ``canopy`` (1,): canopy height (m).
    * ``landcover`` (12,): one-hot of the GLOBCOVER ``forest_cover`` code over :attr:`landcover_codes`.

    *modality_groups* concatenates base modalities of the same layout along the channel axis into
    the returned modalities, e.g. MDiCo's ``{'s1': ['s1', 's1_ratio'], 'optical': ['optical',
    'optical_indices']}`` gives ``image_s1`` (4, 3) and ``image_optical`` (4, 8).

    A sample holds ``image_<modality>`` (float32), ``label`` (float32 scalar, LFMC in %), ``id`` (the
    sample index as str), ``lat``, ``lon`` (float32, degrees), ``year`` (int64), ``site`` and
    ``date`` (ISO ``YYYY-MM-DD``).

    If you use this dataset in your research, please cite:

    * https://doi.org/10.1016/j.rse.2020.111797
    """

    filename = 'training_features.csv'
    target = 'percent(t)'

    #: Variables of each time-series base modality (the columns are ``<variable>(<step>)``).
    temporal_modalities: ClassVar[dict[str, tuple[str, ...]]] = {
        's1': ('vv', 'vh'),
        's1_ratio': ('vh_vv',),
        'optical': ('red', 'green', 'blue', 'swir', 'nir'),
        'optical_indices': ('ndvi', 'ndwi', 'nirv'),
        'sar_optical': _SAR_OPTICAL,
    }

    #: Variables of each static base modality (read at step t).
    static_modalities: ClassVar[dict[str, tuple[str, ...]]] = {
        'soil': ('silt', 'sand', 'clay'),
        'dem': ('slope', 'elevation'),
        'canopy': ('canopy_height',),
    }

    #: The GLOBCOVER codes of ``forest_cover(t)``, in one-hot order.
    landcover_codes = (14, 20, 30, 50, 70, 90, 100, 110, 130, 140, 150, 160)
    landcover_column = 'forest_cover(t)'

    #: Every base modality, in the default order.
    base_modalities = (*temporal_modalities, *static_modalities, 'landcover')

    def __init__(
        self,
        root: str = 'data',
        source: Source = 'csv',
        modality_groups: Mapping[str, Sequence[str]] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Initialize a new LFMC instance.

        Args:
            root: Directory holding ``training_features.csv`` (*source* 'csv') or, at any depth, the
                ``feature_*.geojson`` files (*source* 'geojson').
            source: Which of the two layouts to read.
            modality_groups: Returned modality name mapped to the base modalities it concatenates
                along the channel axis; None returns every base modality on its own.
            transforms: A function/transform that takes a sample dict and returns a transformed
                version (applied by :meth:`__getitem__` only).

        Raises:
            DatasetNotFoundError: If the source files are not in *root*.
            ValueError: If *source* or *modality_groups* is invalid, or the data lack a column,
                hold a non-numeric value, an unknown land-cover code or an unreadable date.
        """
        if source not in get_args(Source):
            msg = f'source must be one of {get_args(Source)}, got {source!r}'
            raise ValueError(msg)
        self.root = root
        self.source = source
        self.transforms = transforms
        self.groups = _check_groups(modality_groups, self.base_modalities)
        self.modalities = tuple(self.groups)

        match source:
            case 'csv':
                path = os.path.join(root, self.filename)
                if not os.path.isfile(path):
                    raise _LFMCNotFoundError(self._missing_message())
                frame = _read_csv(path)
            case 'geojson':
                files = sorted(
                    glob.glob(
                        os.path.join(root, '**', 'feature_*.geojson'), recursive=True
                    )
                )
                if not files:
                    raise _LFMCNotFoundError(self._missing_message())
                path = root
                frame = _read_geojson(files, self._required_columns())
        self.path = path
        self.frame = self._validate(frame)
        self.tensors = self._build_tensors()
        self.ids = [str(i) for i in self.frame.index]
        self.sites = self.frame['site'].astype(str).tolist()
        self.dates = self.frame['date'].tolist()

    def _missing_message(self) -> str:
        """Explain where to get the chosen source.

        Returns:
            The message of the not-found error.
        """
        match self.source:
            case 'csv':
                return (
                    f'LFMC table not found: {os.path.join(self.root, self.filename)!r} does not '
                    f'exist. Download input_data/{self.filename} from '
                    'https://github.com/kkraoj/lfmc_from_sar and put it in that directory '
                    "(or use source='geojson' with the Source Cooperative files)."
                )
            case 'geojson':
                return (
                    f'LFMC GeoJSON files not found: no feature_*.geojson under {self.root!r}. '
                    'Download the stanford/sar-moisture-conent collection from Source Cooperative '
                    '(https://beta.source.coop/stanford/sar-moisture-conent, e.g. azcopy sync '
                    f'{_AZURE_URL} {self.root} --recursive=true) into that directory (or use '
                    f"source='csv' with {self.filename} from github.com/kkraoj/lfmc_from_sar)."
                )

    def _validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Check the columns and values of the raw table and de-duplicate it.

        Args:
            frame: The table as read, indexed by the sample id.

        Returns:
            The de-duplicated table, with numeric feature columns and ISO dates.

        Raises:
            ValueError: If a column is missing, a value is not numeric, a target is missing or not
                finite (NaN, inf; the message names the samples) or a date cannot be read.
        """
        numeric = self._numeric_columns()
        required = self._required_columns()
        missing = [c for c in required if c not in frame.columns]
        if missing:
            msg = f'{self.path}: missing column(s) {missing}'
            raise ValueError(msg)
        frame = frame[required].copy()
        for column in numeric:
            frame[column] = _to_numeric(frame[column], self.path, column)
        no_target = ~np.isfinite(frame[self.target].to_numpy())
        if no_target.any():
            values = frame[self.target][no_target][:5].tolist()
            msg = (
                f'{self.path}: column {self.target!r} is empty or not finite for sample(s) '
                f'{frame.index[no_target][:5].tolist()} (values {values}); LFMC needs a target '
                'for every sample'
            )
            raise ValueError(msg)
        frame['date'] = _iso_dates(frame['date'], self.path)
        match self.source:
            case 'csv':
                repeated = frame.index.duplicated(keep='last')
                what = 'index'
            case 'geojson':
                repeated = frame.duplicated(['site', 'date'], keep='last').to_numpy()
                what = '(site, date)'
        if repeated.any():
            warnings.warn(
                f'{self.path}: dropped {int(repeated.sum())} row(s) whose {what} repeats a later '
                'row (keeping the last, as MDiCo does)',
                UserWarning,
                stacklevel=3,
            )
        return frame[~repeated]

    def _required_columns(self) -> list[str]:
        """List the table columns the dataset reads.

        Returns:
            The numeric columns (:meth:`_numeric_columns`), then ``site`` and ``date``.
        """
        return [*self._numeric_columns(), 'site', 'date']

    def _numeric_columns(self) -> list[str]:
        """List the numeric table columns the dataset reads.

        Returns:
            The target, the columns of the base modalities (time series first), ``latitude`` and
            ``longitude``.
        """
        temporal = [
            f'{variable}({step})'
            for variables in self.temporal_modalities.values()
            for step in TIME_STEPS
            for variable in variables
        ]
        static = [
            f'{variable}(t)'
            for variables in self.static_modalities.values()
            for variable in variables
        ]
        return [
            self.target,
            *temporal,
            *static,
            self.landcover_column,
            'latitude',
            'longitude',
        ]

    def _base_array(self, modality: str) -> np.ndarray:
        """Read one base modality from the table.

        Args:
            modality: A name in :attr:`base_modalities`.

        Returns:
            Float32 array, (N, 4, C) for time series and (N, C) for static modalities.

        Raises:
            ValueError: If a land-cover code is not one of :attr:`landcover_codes`.
        """
        if modality in self.temporal_modalities:
            variables = self.temporal_modalities[modality]
            columns = [f'{v}({step})' for step in TIME_STEPS for v in variables]
            values = self.frame[columns].to_numpy(np.float32)
            return values.reshape(len(self.frame), len(TIME_STEPS), len(variables))
        if modality in self.static_modalities:
            columns = [f'{v}(t)' for v in self.static_modalities[modality]]
            return self.frame[columns].to_numpy(np.float32)
        codes = self.frame[self.landcover_column].to_numpy()
        known = np.isin(codes, self.landcover_codes)
        if not known.all():
            row = int(np.argmin(known))
            msg = (
                f'{self.path}: sample {self.frame.index[row]} has {self.landcover_column} '
                f'{codes[row]:g}, not one of the GLOBCOVER codes {self.landcover_codes}'
            )
            raise ValueError(msg)
        one_hot: np.ndarray = codes[:, None] == np.asarray(self.landcover_codes)
        return one_hot.astype(np.float32)

    def _build_tensors(self) -> dict[str, Tensor]:
        """Stack every sample into one tensor per batch key.

        Returns:
            ``image_<modality>`` for each returned modality, ``label``, ``lat``, ``lon`` and ``year``,
            each with the samples on the first axis.
        """
        cache: dict[str, np.ndarray] = {}
        tensors: dict[str, Tensor] = {}
        for name, parts in self.groups.items():
            for part in parts:
                if part not in cache:
                    cache[part] = self._base_array(part)
            arrays = [cache[part] for part in parts]
            tensors[image_key(name)] = torch.from_numpy(np.concatenate(arrays, axis=-1))
        frame = self.frame
        tensors['label'] = torch.from_numpy(frame[self.target].to_numpy(np.float32))
        tensors['lat'] = torch.from_numpy(frame['latitude'].to_numpy(np.float32))
        tensors['lon'] = torch.from_numpy(frame['longitude'].to_numpy(np.float32))
        years = [int(date[:4]) for date in frame['date']]
        tensors['year'] = torch.tensor(years, dtype=torch.int64)
        return tensors

    def __len__(self) -> int:
        """Return the number of samples in the dataset.

        Returns:
            Number of samples (2578 for the full benchmark).
        """
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return a sample.

        Args:
            index: Index of the sample.

        Returns:
            ``image_<modality>`` (float32, (4, C) or (C,)), ``label`` (float32 scalar, %), ``id``,
            ``lat``, ``lon``, ``year``, ``site`` and ``date``.
        """
        sample: dict[str, Any] = {
            key: value[index] for key, value in self.tensors.items()
        }
        sample['id'] = self.ids[index]
        sample['site'] = self.sites[index]
        sample['date'] = self.dates[index]
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def to_tensor_dataset(self) -> TensorMultiModalDataset:
        """Return the samples as an in-memory dataset that batches without collation.

        The tensors are shared, not copied; *transforms* are not carried. ``site`` and ``date`` are
        carried as metadata (for grouped folds), outside the batches.

        Returns:
            A dataset with the ``image_*``, ``label``, ``lat``, ``lon`` and ``year`` tensors, the
            sample ids and the ``site`` and ``date`` metadata.
        """
        return TensorMultiModalDataset(
            self.tensors, self.ids, {'site': self.sites, 'date': self.dates}
        )


def modality_info(
    groups: Mapping[str, Sequence[str]] | None,
) -> dict[str, ModalityInfo]:
    """Describe the returned modalities of :class:`LFMC`.

    Args:
        groups: Returned modality mapped to the base modalities it concatenates, or None for every
            base modality on its own (as *modality_groups* of :class:`LFMC`).

    Returns:
        Modality mapped to its sample shape ((4, C) or (C,)), variable names (the table's column
        names without the step, ``landcover_<code>`` for the one-hot land cover), units
        (:data:`VARIABLE_UNITS`, ``'1'`` for the one-hot) and time steps.
    """
    info = {}
    for name, parts in _check_groups(groups, LFMC.base_modalities).items():
        bands: list[str] = []
        for part in parts:
            if part in LFMC.temporal_modalities:
                bands += LFMC.temporal_modalities[part]
            elif part in LFMC.static_modalities:
                bands += LFMC.static_modalities[part]
            else:
                bands += [f'landcover_{code}' for code in LFMC.landcover_codes]
        temporal = parts[0] in LFMC.temporal_modalities
        info[name] = ModalityInfo(
            (len(TIME_STEPS), len(bands)) if temporal else (len(bands),),
            tuple(bands),
            tuple(VARIABLE_UNITS.get(b, '1') for b in bands),
            TIME_STEPS_DESCRIPTION if temporal else None,
        )
    return info


def _check_groups(
    groups: Mapping[str, Sequence[str]] | None, base: Sequence[str]
) -> dict[str, list[str]]:
    """Check the requested modality groups.

    Args:
        groups: Returned modality mapped to base modalities, or None for each base one alone.
        base: The base modalities.

    Returns:
        The groups as a dict of lists.

    Raises:
        ValueError: If a group is empty, names an unknown base modality, or mixes time series and
            static modalities.
    """
    if groups is None:
        return {name: [name] for name in base}
    if not groups:
        msg = 'modality_groups must name at least one modality'
        raise ValueError(msg)
    checked = {}
    for name, parts in groups.items():
        if isinstance(parts, str) or not parts:
            msg = f'modality_groups[{name!r}] must be a non-empty list of base modalities, got {parts!r}'
            raise ValueError(msg)
        unknown = [p for p in parts if p not in base]
        if unknown:
            msg = f'modality_groups[{name!r}]: unknown modality {unknown}; choose from {list(base)}'
            raise ValueError(msg)
        temporal = {p in LFMC.temporal_modalities for p in parts}
        if len(temporal) > 1:
            msg = (
                f'modality_groups[{name!r}] mixes time series {list(LFMC.temporal_modalities)} '
                f'and static modalities: {list(parts)}'
            )
            raise ValueError(msg)
        checked[name] = list(parts)
    return checked


def _read_csv(path: str) -> pd.DataFrame:
    """Read the CSV table.

    Args:
        path: Path of ``training_features.csv``.

    Returns:
        The raw table, indexed by its first column.
    """
    return pd.read_csv(path, index_col=0, dtype={'site': str, 'date': str})


def _read_geojson(files: Sequence[str], required: Sequence[str]) -> pd.DataFrame:
    """Read TorchGeo's one-Feature-per-file GeoJSON layout into a CSV-like table.

    Args:
        files: The ``feature_*.geojson`` paths, in sample order.
        required: Columns every file must provide (``latitude`` and ``longitude`` come from the
            geometry).

    Returns:
        The raw table with the properties as columns plus ``latitude`` and ``longitude``, indexed by
        the file names without extension.

    Raises:
        ValueError: If a file is not a GeoJSON Feature with properties and a Point geometry, or
            lacks a required property.
    """
    rows = []
    for path in files:
        with open(path) as f:
            feature = json.load(f)
        try:
            properties = dict(feature['properties'])
            lon, lat = feature['geometry']['coordinates'][:2]
        except (KeyError, TypeError, ValueError) as error:
            msg = f'{path}: expected a GeoJSON Feature with properties and a Point geometry'
            raise ValueError(msg) from error
        properties['latitude'] = lat
        properties['longitude'] = lon
        if missing := [c for c in required if c not in properties]:
            msg = f'{path}: missing propert(y/ies) {missing}'
            raise ValueError(msg)
        rows.append(properties)
    ids = [os.path.splitext(os.path.basename(path))[0] for path in files]
    return pd.DataFrame(rows, index=pd.Index(ids))


def _to_numeric(column: pd.Series, path: str, name: str) -> pd.Series:
    """Convert a column to float64, refusing non-numeric values.

    Args:
        column: Column as read.
        path: File the column comes from, for the error message.
        name: Column name, for the error message.

    Returns:
        The column as float64; empty cells and pandas' NA markers (e.g. 'NA') are NaN.

    Raises:
        ValueError: If a non-empty value is not a number.
    """
    values = pd.to_numeric(column, errors='coerce')
    bad = values.isna() & column.notna()
    if bad.any():
        row = column.index[bad][0]
        msg = f'{path}: column {name!r} holds non-numeric value {column[bad].iloc[0]!r} (sample {row})'
        raise ValueError(msg)
    return values.astype(np.float64)


def _iso_dates(dates: pd.Series, path: str) -> pd.Series:
    """Normalise dates to ISO ``YYYY-MM-DD`` strings.

    Args:
        dates: Dates as ``YYYY-MM-DD`` (CSV) or ``M/D/YY`` (GeoJSON).
        path: File the dates come from, for the error message.

    Returns:
        The ISO date strings.

    Raises:
        ValueError: If a date has neither format.
    """
    parsed = []
    for row, text in dates.items():
        for fmt in _DATE_FORMATS:
            try:
                parsed.append(datetime.strptime(str(text), fmt).date().isoformat())
                break
            except ValueError:
                continue
        else:
            msg = (
                f'{path}: sample {row} has date {text!r}, expected YYYY-MM-DD or M/D/YY'
            )
            raise ValueError(msg)
    return pd.Series(parsed, index=dates.index, dtype=object)
