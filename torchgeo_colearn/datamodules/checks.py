# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Checks of the multi-modal datamodules at setup: modality selection, training size, labels."""

from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

from ..labels import check_labels
from ..metrics import TaskType
from .utils import ids_of, labels_of

#: Attributes of a datamodule that choose its splits, named when a split is too small.
SPLIT_OPTIONS = ('fold', 'num_folds', 'seed', 'val_is_test')


def check_selected_modalities(
    owner: str, selected: Sequence[str], available: Sequence[str]
) -> None:
    """Check that the selected modalities exist in the data.

    Args:
        owner: The datamodule, for the message.
        selected: The modalities asked for.
        available: The modalities of the data.

    Raises:
        ValueError: If a selected modality is not in the data; the message lists the available
            ones.
    """
    unknown = [m for m in selected if m not in available]
    if unknown:
        msg = (
            f'{owner}: modalities {unknown} are not in the data; available '
            f'modalities: {list(available)}'
        )
        raise ValueError(msg)


def check_training_size(datamodule: Any) -> None:
    """Check that training batches can hold at least 2 samples (batch normalisation).

    Args:
        datamodule: A set-up datamodule: its training split, batch sizes, name and
            :data:`SPLIT_OPTIONS`.

    Raises:
        ValueError: If the training split has fewer than 2 samples or the training batch size
            is below 2.
    """
    name = type(datamodule).__name__
    size = len(datamodule.train_dataset)
    if size < 2:
        options = ', '.join(
            f'{option}={getattr(datamodule, option)!r}'
            for option in SPLIT_OPTIONS
            if hasattr(datamodule, option)
        )
        msg = (
            f'{name}: the train split has {size} sample(s)'
            + (f' ({options})' if options else '')
            + '; training needs at least 2 (the batch normalisation of the models fails on '
            'a batch of one sample). Give the split more data, e.g. fewer folds.'
        )
        raise ValueError(msg)
    batch_size = datamodule.train_batch_size
    if batch_size is None:
        batch_size = datamodule.batch_size
    if batch_size < 2:
        msg = (
            f'{name}: batch_size={batch_size} for training; the batch normalisation of the '
            'models needs batches of at least 2 samples. Set batch_size to 2 or more.'
        )
        raise ValueError(msg)


def check_split_labels(
    owner: str,
    splits: Mapping[str, Dataset[Any]],
    label_task: TaskType | None,
    num_classes: int | None,
) -> None:
    """Check the labels of every split against the datamodule's task and classes.

    Only splits whose labels are known without reading the samples are checked (in-memory
    datasets and datasets with a ``labels`` tensor); a dataset shared by several splits is
    checked once.

    Args:
        owner: The datamodule, for the message.
        splits: Split name mapped to its dataset.
        label_task: Task the labels are for; None checks only that float labels are finite.
        num_classes: Classes (binary, multiclass) or labels (multilabel).

    Raises:
        ValueError: If a label does not fit the task; the message names the split, the sample
            and the value.
    """
    checked: list[object] = []
    for split, dataset in splits.items():
        if any(dataset is d for d in checked):
            continue
        checked.append(dataset)
        labels = labels_of(dataset)
        if labels is not None:
            check_labels(
                labels,
                label_task,
                num_classes,
                f"{owner}, {split} split, 'label'",
                ids_of(dataset),
            )
