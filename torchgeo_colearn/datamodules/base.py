# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Base classes for multi-modal datamodules."""

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Literal, TypeAlias, get_args

import kornia.augmentation as K
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import NonGeoDataset

from ..batch import IMAGE_PREFIX, image_key, modalities_in, present_key
from ..cache import CacheKey
from ..channel_stats import (
    Stats,
    StatsMode,
    cached_stats,
    modality_stats,
    stats_from_json,
    stats_to_json,
)
from ..datasets.tensor import TensorMultiModalDataset
from ..distributed import computed_on_rank_zero
from ..labels import balanced_weights, target_moments
from ..metrics import TaskType
from ..modality_info import ModalityInfo, unnamed_modality_info
from ..transforms import ModalityNormalizer
from .checks import check_selected_modalities, check_split_labels, check_training_size
from .missing import (
    SPLITS,
    check_min_modalities,
    keep_samples,
    sample_presence,
    select_samples,
)
from .utils import SelectModalities, current_split, in_memory_loader, labels_of

#: Bumped whenever the statistics or their cache file change, to invalidate old caches.
_STATS_FORMAT = 2

#: The split that ``predict`` (``colearn predict``, ``Trainer.predict``) runs on.
PredictSplit: TypeAlias = Literal['train', 'val', 'test']


def _flip_augmentation() -> K.AugmentationSequential:
    """Return the default geometric augmentation of image modalities.

    Returns:
        Random horizontal and vertical flips, with the same parameters for every image key.
    """
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(), K.RandomVerticalFlip(), data_keys=None, keepdim=True
    )


class MultiModalDataModule(NonGeoDataModule):
    """Base datamodule for ``image_<modality>`` batches.

    Compared with :class:`~torchgeo.datamodules.NonGeoDataModule` it

    * follows TorchGeo's augmentation protocol per split, then normalises each modality on its own:
      on the device after the batch transfer, ``train_aug``, ``val_aug``, ``test_aug`` or
      ``predict_aug`` (falling back to ``aug``, as
      :meth:`~torchgeo.datamodules.BaseDataModule.on_after_batch_transfer` does) is applied to the
      (B, C, H, W) image modalities, with the same parameters for all the co-registered images of
      a sample; time series and vectors are never augmented. The default ``train_aug`` flips
      (*augment*), the default ``aug`` does nothing (TorchGeo's default divides by 255). Then each
      modality is z-scored with its own per-channel, NaN-aware statistics computed on the training
      split only (:class:`~torchgeo_colearn.transforms.ModalityNormalizer`); NaN and ``inf``
      become 0 with a validity mask when *fill_nan* is set;
    * leaves out at setup the samples with fewer than *min_modalities* modalities (a sample lacks
      a modality whose values are all NaN or infinite), and marks the others' gaps with
      ``present_<modality>`` (B,) bool, for the :attr:`incomplete_modalities` only; the rows of
      the samples without a modality are 0 after normalisation (``valid_<modality>`` False)
      (:mod:`~torchgeo_colearn.datamodules.missing`);
    * computes the statistics with :func:`~torchgeo_colearn.channel_stats.modality_stats`, as
      moments or robust (*stats*), warning about channels that extreme values squash, and caches
      them in a file named after a hash of the training files, split lists and options
      (:meth:`stats_cache_key`) when the subclass reads files;
    * keeps only the *modalities* asked for in the batches (and their statistics);
    * predicts the split chosen by *predict_split* (the test split by default);
    * describes the raw values of each modality (:meth:`modality_info`: sample shape, band names
      and order, units, time steps), which tasks record with the statistics for deployment
      (``docs/deploy.md``);
    * checks at setup that the labels fit the datamodule's task (:attr:`label_task`,
      :attr:`num_classes`), and for training that the training split and batches hold at least 2
      samples (batch normalisation); the last training batch is dropped when incomplete, so no
      training batch holds a single sample;
    * loads :class:`~torchgeo_colearn.datasets.TensorMultiModalDataset` splits a whole batch at a time;
    * saves the statistics in its state dict, so that checkpoints carry them.
    """

    #: Task the labels are for, checked at setup; None checks only that float labels are finite.
    label_task: TaskType | None = None

    #: Classes (binary, multiclass) or labels (multilabel) the labels are checked against.
    num_classes: int | None = None

    #: Every sample has every modality (e.g. every file is required): setup reads no split for gaps.
    complete_by_construction: ClassVar[bool] = False

    #: Names of the classes (binary, multiclass) or labels (multilabel) in label order, when the
    #: data name them; recorded by the tasks for deployment.
    classes: tuple[str, ...] | None = None

    def __init__(
        self,
        dataset_class: type[NonGeoDataset],
        batch_size: int = 32,
        num_workers: int = 0,
        augment: bool = True,
        fill_nan: bool = True,
        *,
        modalities: Sequence[str] | None = None,
        stats: StatsMode = 'moments',
        predict_split: PredictSplit = 'test',
        min_modalities: int = 1,
        **kwargs: Any,
    ) -> None:
        """Initialize a new MultiModalDataModule instance.

        Args:
            dataset_class: Dataset class to instantiate.
            batch_size: Size of each mini-batch; at least 2 for training (batch normalisation).
            num_workers: Number of workers for parallel data loading.
            augment: Apply random flips to image modalities during training.
            fill_nan: Replace NaN and inf by 0 after normalisation and mark invalid time steps; when
                False, they reach the model as NaN, which raises.
            modalities: Modalities to keep in the batches (and to compute statistics for), e.g.
                ``['s1']`` to train a model on one sensor alone; None keeps every modality.
            stats: Normalisation statistics: ``'moments'`` (mean, standard deviation) or
                ``'robust'`` (median, 1.4826 x median absolute deviation, insensitive to a few
                extreme values).
            predict_split: The split that ``predict`` runs on: ``'test'`` (default), ``'val'`` or
                ``'train'``.
            min_modalities: The fewest of the (selected) modalities a sample must have to be kept,
                in every split; 1 leaves out only the samples that have none.
            **kwargs: Passed to *dataset_class*.

        Raises:
            ValueError: If *modalities* is empty or a string, *stats* or *predict_split* is
                unknown, or *min_modalities* is below 1 or above the number of *modalities*.
        """
        if modalities is not None and (isinstance(modalities, str) or not modalities):
            msg = f'modalities must be a non-empty list of modality names or None, got {modalities!r}'
            raise ValueError(msg)
        if stats not in get_args(StatsMode):
            msg = f'stats must be one of {get_args(StatsMode)}, got {stats!r}'
            raise ValueError(msg)
        if predict_split not in get_args(PredictSplit):
            msg = f'predict_split must be one of {get_args(PredictSplit)}, got {predict_split!r}'
            raise ValueError(msg)
        check_min_modalities(min_modalities, modalities, type(self).__name__)
        super().__init__(dataset_class, batch_size, num_workers, **kwargs)
        self.augment = augment
        self.fill_nan = fill_nan
        self.selected_modalities = None if modalities is None else tuple(modalities)
        self.stats_mode = stats
        self.predict_split = predict_split
        self.min_modalities = min_modalities
        #: Modalities that some sample of the loaded splits lacks, whose batches carry
        #: ``present_<modality>``; known after :meth:`setup`.
        self.incomplete_modalities: tuple[str, ...] = ()
        self.aug: Callable[[dict[str, Tensor]], dict[str, Tensor]] = nn.Identity()
        self.train_aug = _flip_augmentation() if augment else None
        self.normalizer: ModalityNormalizer | None = None
        self._stats: Stats | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities of the batches.

        Returns:
            Modality names, in the order of the data; only the selected ones when *modalities* was
            given.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        available = self._available_modalities()
        if self.selected_modalities is None:
            return available
        return tuple(m for m in available if m in self.selected_modalities)

    def _available_modalities(self) -> tuple[str, ...]:
        """List the modalities the data provides, before any selection.

        Returns:
            Modality names.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        dataset = self.train_dataset or self.test_dataset or self.val_dataset
        if dataset is None:
            msg = f'{type(self).__name__}.modalities is known only after setup()'
            raise RuntimeError(msg)
        if isinstance(dataset, TensorMultiModalDataset):
            return dataset.modalities
        return modalities_in(dataset[0])

    def stats_cache_key(self) -> CacheKey | None:
        """Say what the statistics of the training split depend on, to cache them.

        Subclasses that read files return the directory of the cache, the files of the training
        split, the split lists and the options that change the statistics; the base class adds the
        statistics mode, the modality selection and the cache format. In-memory datamodules return
        None (the default), since their statistics cost one tensor reduction.

        Returns:
            The key of the cache, or None for no cache.
        """
        return None

    def stats_path(self) -> str | None:
        """Return the file caching the normalisation statistics, if any.

        Returns:
            A JSON path named after the hash of :meth:`stats_cache_key`, or None for no cache.
        """
        key = self.stats_cache_key()
        if key is None:
            return None
        selection = self.selected_modalities
        options = {
            **key.options,
            'format': _STATS_FORMAT,
            'stats': self.stats_mode,
            'modalities': None if selection is None else sorted(selection),
        }
        if self.min_modalities > 1:
            options['min_modalities'] = self.min_modalities
        return replace(key, options=options).path('.json')

    def compute_stats(self) -> Stats:
        """Compute the normalisation statistics of the selected modalities on the training split.

        Returns:
            Modality mapped to (mean, std) of shape (C,).

        Raises:
            RuntimeError: If there is no training split.

        Warns:
            ChannelStatsWarning: For a channel without finite values or squashed by extreme values.
        """
        dataset = self.train_dataset
        if dataset is None:
            msg = (
                f'{type(self).__name__} has no training split to compute statistics on'
            )
            raise RuntimeError(msg)
        batches: Any
        if isinstance(dataset, TensorMultiModalDataset):
            batches = [
                {
                    **{
                        k: v
                        for k, v in dataset.tensors.items()
                        if k.startswith(IMAGE_PREFIX)
                    },
                    'id': dataset.ids,
                }
            ]
        else:
            batches = self._stream(dataset)
        return modality_stats(batches, self.selected_modalities, self.stats_mode)

    def _ensure_normalizer(self) -> None:
        """Build the normaliser from loaded, cached or freshly computed statistics.

        With several processes (DDP), rank 0 alone computes (or reads, or writes the cache of) the
        statistics and sends them to the others, so that every process normalises alike.
        """
        if self._stats is None:
            self._stats = computed_on_rank_zero(
                lambda: cached_stats(self.stats_path(), self.compute_stats)
            )
        self.normalizer = ModalityNormalizer(self._stats, fill_nan=self.fill_nan)

    def setup(self, stage: str) -> None:
        """Set up and check the splits, keep the samples with enough modalities, build the normaliser.

        Subclasses set ``train_dataset`` and friends in :meth:`setup_splits`; the statistics always come
        from the training split (after *min_modalities*), whatever the stage.

        Args:
            stage: Either 'fit', 'validate', 'test' or 'predict'.

        Raises:
            ValueError: If a selected modality is not in the data, *min_modalities* is above the
                number of modalities or leaves a split empty, the training split or batches are
                too small, or a label does not fit the task.

        Warns:
            UserWarning: Counting the samples that *min_modalities* leaves out, per split.
        """
        self.setup_splits(stage)
        if stage == 'predict':
            self._select_predict_split()
        name = type(self).__name__
        if self.selected_modalities is not None:
            check_selected_modalities(
                name, self.selected_modalities, self._available_modalities()
            )
        self._select_samples()
        if stage == 'fit':
            check_training_size(self)
        check_split_labels(
            name, self._splits_set_up(), self.label_task, self.num_classes
        )
        self._ensure_normalizer()

    def setup_splits(self, stage: str) -> None:
        """Set ``train_dataset``, ``val_dataset``, ``test_dataset`` and ``predict_dataset``.

        The training split must be set for every stage: it provides the statistics. By default the
        dataset's official splits, ``dataset_class(split=..., **kwargs)``: ``'train'`` always,
        ``'val'`` to fit and validate, ``'test'`` to test and predict.

        Args:
            stage: Either 'fit', 'validate', 'test' or 'predict'.
        """
        # TorchGeo's convention: a dataset with official splits takes their name as ``split``
        official: Callable[..., Dataset[dict[str, Tensor]]] = self.dataset_class
        self.train_dataset = official(split='train', **self.kwargs)
        match stage:
            case 'fit' | 'validate':
                self.val_dataset = official(split='val', **self.kwargs)
            case 'test' | 'predict':
                self.test_dataset = official(split='test', **self.kwargs)
                self.predict_dataset = self.test_dataset

    def _select_predict_split(self) -> None:
        """Point ``predict_dataset`` at the split chosen by *predict_split*.

        Raises:
            RuntimeError: If the datamodule has no such split.
        """
        dataset = getattr(self, f'{self.predict_split}_dataset')
        if dataset is None and self.predict_split == 'val':
            self.setup_splits('validate')
            dataset = self.val_dataset
        if dataset is None:
            msg = (
                f'{type(self).__name__} has no {self.predict_split!r} split to predict'
            )
            raise RuntimeError(msg)
        self.predict_dataset = dataset

    def modality_info(self) -> dict[str, ModalityInfo]:
        """Describe the raw values of each modality of the batches.

        What a deployed model must be fed (``docs/deploy.md``): the shape of one sample, the band
        names in channel order, their units and what the time axis holds. Datamodules that know
        their sensors override this; the default reads the shapes from a training sample and names
        the bands ``band_0``, ``band_1``, ... with unit ``'unknown'``.

        Returns:
            Modality mapped to its description, for every modality of :attr:`modalities`.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        return {m: unnamed_modality_info(self.sample_shape(m)) for m in self.modalities}

    def sample_shape(self, modality: str) -> tuple[int, ...]:
        """Return the shape of one training sample of a modality, as loaded (before batching).

        Args:
            modality: A modality of the data.

        Returns:
            The shape without the batch axis.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        dataset = self.set_up_train_dataset('sample_shape')
        if isinstance(dataset, TensorMultiModalDataset):
            return tuple(dataset.tensors[image_key(modality)].shape[1:])
        return tuple(dataset[0][image_key(modality)].shape)

    def set_up_train_dataset(self, caller: str) -> Dataset[dict[str, Any]]:
        """Return the training split, which *caller* needs.

        Args:
            caller: The method that needs it, for the message.

        Returns:
            ``train_dataset``.

        Raises:
            RuntimeError: If called before :meth:`setup`.
        """
        if self.train_dataset is None:
            msg = f'{type(self).__name__}.{caller}() is known only after setup()'
            raise RuntimeError(msg)
        return self.train_dataset

    def _select_samples(self) -> None:
        """Keep the samples with *min_modalities* modalities; set :attr:`incomplete_modalities`.

        See :func:`~torchgeo_colearn.datamodules.missing.select_samples`; skipped (no read) when
        :attr:`complete_by_construction`.
        """
        if self.complete_by_construction:
            check_min_modalities(
                self.min_modalities, self.modalities, type(self).__name__
            )
            return
        selection = select_samples(
            type(self).__name__,
            self._splits_set_up(),
            self.modalities,
            self.min_modalities,
            self._stream,
            self._keep_samples,
        )
        for split, dataset in selection.datasets.items():
            setattr(self, f'{split}_dataset', dataset)
        self.incomplete_modalities = selection.incomplete

    def _splits_set_up(self) -> dict[str, Dataset[Any]]:
        """Return the splits that are set up.

        Returns:
            Split name mapped to its dataset, in the order train, val, test, predict.
        """
        return {
            split: dataset
            for split in SPLITS
            if (dataset := getattr(self, f'{split}_dataset')) is not None
        }

    def _keep_samples(
        self, split: str, dataset: Dataset[Any], keep: Tensor
    ) -> Dataset[Any]:
        """Restrict a split to some of its samples (:meth:`_select_samples`).

        Args:
            split: The split, e.g. ``'train'``.
            dataset: Its dataset.
            keep: (N,) bool, True for the samples to keep.

        Returns:
            The restricted dataset.
        """
        return keep_samples(dataset, keep)

    def _stream(self, dataset: Dataset[Any]) -> DataLoader[dict[str, Any]]:
        """Read a per-sample split once, in order, as the batches of the datamodule.

        Args:
            dataset: The split.

        Returns:
            A loader of its batches, with the selected modalities only.
        """
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=self._collate_fn(),
        )

    def _collate_fn(self) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """Return the collate function, dropping the modalities that are not selected.

        Returns:
            :attr:`collate_fn`, wrapped when *modalities* was given.
        """
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]] = self.collate_fn
        if self.selected_modalities is None:
            return collate
        return SelectModalities(collate, self.selected_modalities)

    def _dataloader_factory(self, split: str) -> DataLoader[dict[str, Tensor]]:
        """Build a dataloader, batching in-memory datasets without per-sample collation.

        The last incomplete training batch is dropped unless the split is smaller than one batch,
        so that tiny splits still train; with the checks of :meth:`setup`, no training batch holds
        a single sample.

        In-memory datasets are batched by a batch sampler; with several processes (DDP), Lightning
        deals its batches out to them, so the training permutation is drawn from a seed of rank 0.

        Args:
            split: Either 'train', 'val', 'test' or 'predict'.

        Returns:
            A dataloader for the split.
        """
        dataset = self._valid_attribute(f'{split}_dataset', 'dataset')
        batch_size = self._valid_attribute(f'{split}_batch_size', 'batch_size')
        train = split == 'train'
        drop_last = train and len(dataset) > batch_size
        if isinstance(dataset, TensorMultiModalDataset):
            return in_memory_loader(
                dataset, batch_size, train, drop_last, self.selected_modalities
            )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=self._collate_fn(),
            drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
        )

    def on_after_batch_transfer(
        self, batch: dict[str, Tensor], dataloader_idx: int
    ) -> dict[str, Tensor]:
        """Mark the missing modalities, augment the images with the split's augmentation, normalise.

        ``present_<modality>`` is added for the :attr:`incomplete_modalities`. The augmentation is
        TorchGeo's choice: ``<split>_aug`` of the trainer's current stage, or ``aug`` if that is
        None; none without a trainer.

        Args:
            batch: A batch of data, already on the device.
            dataloader_idx: Index of the dataloader.

        Returns:
            The augmented, normalised batch, with ``present_<modality>`` (B,) bool keys.
        """
        for modality in self.incomplete_modalities:
            if image_key(modality) in batch:
                batch[present_key(modality)] = sample_presence(
                    batch[image_key(modality)]
                )
        split = current_split(self.trainer)
        if split is not None:
            aug = self._valid_attribute(f'{split}_aug', 'aug')
            images = {
                k: v
                for k, v in batch.items()
                if k.startswith(IMAGE_PREFIX) and isinstance(v, Tensor) and v.ndim == 4
            }
            if images:
                batch.update(aug(images))
        if self.normalizer is None:
            self._ensure_normalizer()
        assert self.normalizer is not None
        device = batch[image_key(modalities_in(batch)[0])].device
        self.normalizer.to(device)
        normalized: dict[str, Tensor] = self.normalizer(batch)
        return normalized

    def train_labels(self) -> Tensor:
        """Return the labels of the training split.

        Returns:
            The ``label`` of every training sample, stacked.

        Raises:
            RuntimeError: If there is no training split.
        """
        dataset = self.train_dataset
        if dataset is None:
            msg = f'{type(self).__name__} has no training split'
            raise RuntimeError(msg)
        labels = labels_of(dataset)
        if labels is not None:
            return labels
        size = len(dataset)  # type: ignore[arg-type]
        return torch.stack([torch.as_tensor(dataset[i]['label']) for i in range(size)])

    def class_weights(self, num_classes: int | None = None) -> Tensor:
        """Return 'balanced' weights of the training labels (see :func:`.labels.balanced_weights`).

        Args:
            num_classes: Number of classes of the task (classes absent from the split get weight 0).

        Returns:
            Float32 weights, shape (num_classes,) or (num_labels,).
        """
        return balanced_weights(self.train_labels(), num_classes)

    def target_stats(self) -> tuple[float, float]:
        """Return the mean and standard deviation (ddof=0) of the training targets.

        Returns:
            Mean and std of the regression target.
        """
        return target_moments(self.train_labels())

    def state_dict(self) -> dict[str, Any]:
        """Return the normalisation statistics, saved in Lightning checkpoints.

        Returns:
            The statistics as lists (empty before setup).
        """
        if self._stats is None:
            return {}
        return {'stats': stats_to_json(self._stats)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the normalisation statistics from a checkpoint.

        Args:
            state_dict: A dict returned by :meth:`state_dict`.
        """
        if 'stats' in state_dict:
            self._stats = stats_from_json(state_dict['stats'])
            self.normalizer = ModalityNormalizer(self._stats, fill_nan=self.fill_nan)
