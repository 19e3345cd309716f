# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Loss terms of MDiCo and of the baselines."""

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributed import gather_batches
from .metrics import TaskType
from .presence import Presence

#: How the contrastive loss combines the modality pairs.
ContrastiveReduction = Literal['mean', 'sum_ordered']


def at_least_float32(x: Tensor) -> Tensor:
    """Promote half-precision values to float32, for losses computed under mixed precision.

    Args:
        x: Any floating-point tensor.

    Returns:
        *x* in float32 if it was float16 or bfloat16, else *x* itself (float64 stays float64).
    """
    return x.to(torch.promote_types(x.dtype, torch.float32))


def nt_xent(z_a: Tensor, z_b: Tensor, temperature: float) -> Tensor:
    """NT-Xent (InfoNCE) loss between two views of the same samples.

    Both views are concatenated (2B embeddings); for each embedding, the positive is the same sample in
    the other view and the negatives are the other 2B - 2 embeddings, from both views (the MDiCo
    authors' formulation, as in SimCLR). Similarities are cosine similarities divided by the
    temperature, computed in float32 (also under mixed precision).

    With several processes (``torch.distributed`` initialised, e.g. by Lightning's DDP), the views
    of every process are gathered with their gradients (:func:`~torchgeo_colearn.distributed.\
    gather_batches`): the anchors are this process's 2B embeddings, the negatives come from the global
    batch of N samples (2N - 2 per anchor), and the loss is the mean over the local anchors. The mean of
    this loss over W processes with batches of B samples each is then the loss of one process holding
    the W B samples, and so is the gradient after DDP averages the processes' gradients.

    Args:
        z_a: Embeddings of the first view, shape (B, d).
        z_b: Embeddings of the second view, shape (B, d).
        temperature: Softmax temperature tau.

    Returns:
        The mean loss over the 2B (local) anchors, a scalar. Symmetric in (z_a, z_b).
    """
    return _nt_xent(_Views.of(z_a), _Views.of(z_b), temperature)


class _Views(NamedTuple):
    """A view's normalised float32 embeddings, local and gathered from every process."""

    #: This process's (B, d) embeddings.
    local: Tensor
    #: Every process's (N, d) embeddings, in rank order.
    every: Tensor
    #: Index of this process's first sample in ``every``.
    offset: int

    @classmethod
    def of(cls, z: Tensor) -> '_Views':
        local = F.normalize(z.float(), dim=1)
        every, offset = gather_batches(local)
        return cls(local, every, offset)


def _nt_xent(a: _Views, b: _Views, temperature: float) -> Tensor:
    """NT-Xent of :func:`nt_xent` on normalised, gathered views.

    Args:
        a: The first view.
        b: The second view.
        temperature: Softmax temperature tau.

    Returns:
        The mean loss over the local anchors.
    """
    size, total = a.local.shape[0], a.every.shape[0]
    # float32 similarities also under mixed precision (autocast would multiply in half precision)
    with torch.autocast(a.local.device.type, enabled=False):
        logits = torch.cat([a.local, b.local]) @ torch.cat([a.every, b.every]).T
    logits = logits / temperature
    index = torch.arange(size, device=logits.device) + a.offset
    anchors = torch.arange(2 * size, device=logits.device)
    # an anchor is not its own negative; its positive is the same sample in the other view
    logits[anchors, torch.cat([index, index + total])] = float('-inf')
    return F.cross_entropy(logits, torch.cat([index + total, index]))


def contrastive_loss(
    shared: Mapping[str, Tensor],
    temperature: float,
    reduction: ContrastiveReduction = 'mean',
    presence: Presence | None = None,
) -> Tensor:
    """Contrastive loss between the shared embeddings of every pair of modalities.

    Across processes, the negatives come from the global batch (see :func:`nt_xent`); each
    modality's embeddings are gathered once (once per pair when samples lack modalities).

    With samples that lack modalities (*presence*), the term of a pair uses the samples that hold
    both modalities, as anchors and as negatives, and the reduction runs over the pairs that some
    sample of the batch holds; a batch in which no sample holds two modalities gives 0.

    Args:
        shared: Modality mapped to its shared embedding, shape (B_m, d): the rows of the B_m samples
            that hold the modality (B_m = B without *presence*); at least two modalities.
        temperature: Softmax temperature tau.
        reduction: 'mean' over the M(M-1)/2 unordered pairs (default), or 'sum_ordered' over the
            M(M-1) ordered pairs, which reproduces the MDiCo authors' code (each symmetric pair counted
            twice, no averaging).
        presence: Which samples of the batch hold which modality; None when all hold all.

    Returns:
        A scalar loss.

    Raises:
        ValueError: With fewer than two modalities.
    """
    if len(shared) < 2:
        msg = f'the contrastive loss needs at least two modalities, got {list(shared)}'
        raise ValueError(msg)
    pairs = list(itertools.combinations(shared, 2))
    if presence is None or presence.complete:
        views = {m: _Views.of(z) for m, z in shared.items()}
        return _reduce(
            [_nt_xent(views[a], views[b], temperature) for a, b in pairs], reduction
        )
    losses, unheld = [], []
    for a, b in pairs:
        view_a, view_b = (
            _Views.of(presence.restrict(shared[m], m, (a, b))) for m in (a, b)
        )
        if view_a.local.shape[0]:
            losses.append(_nt_xent(view_a, view_b, temperature))
        else:
            # 0, kept in the graph: the backward of a gather is a collective every process joins
            unheld.append((view_a.every.sum() + view_b.every.sum()) * 0.0)
    held = [_reduce(losses, reduction)] if losses else []
    return torch.stack(held + unheld).sum()


def _reduce(losses: Sequence[Tensor], reduction: ContrastiveReduction) -> Tensor:
    """Combine the losses of the modality pairs.

    Args:
        losses: One scalar per unordered pair.
        reduction: 'mean' over the pairs, or 'sum_ordered' (twice their sum).

    Returns:
        A scalar.
    """
    stacked = torch.stack(list(losses))
    match reduction:
        case 'mean':
            return stacked.mean()
        case 'sum_ordered':
            return 2 * stacked.sum()


def modality_mean(
    loss: Callable[[Tensor, Tensor], Tensor],
    outputs: Tensor,
    targets: Tensor,
    sizes: Sequence[int] | None,
) -> Tensor:
    """Mean over modalities of a loss computed on each modality's samples.

    Args:
        loss: A mean loss of (outputs, targets), e.g. a :class:`TaskLoss`.
        outputs: The outputs of the modalities stacked along the first axis: (sum of N_m, ...), the
            N_m samples that hold modality m (a modality may take several consecutive blocks of
            equal size, e.g. one per head, which then count as blocks of their own).
        targets: The targets of the same rows.
        sizes: The N_m of each block, or None when every block holds the same samples (no sample
            lacks a modality): the loss is then computed once on all rows, which is the mean of
            the per-block means, also for class-weighted losses (their normaliser depends on the
            targets only, the same in every block).

    Returns:
        The mean of the losses of the blocks that hold a sample (0 if none does).
    """
    if sizes is None:
        return loss(outputs, targets)
    values = [
        loss(o, t)
        for o, t in zip(
            torch.split(outputs, list(sizes)), torch.split(targets, list(sizes))
        )
        if o.shape[0]
    ]
    if not values:
        return outputs.sum() * 0.0
    return torch.stack(values).mean()


class TaskLoss(nn.Module):
    """The supervised loss of a task type, on raw model outputs.

    * binary: binary cross-entropy on one logit; with class weights, each sample weighs
      ``class_weights[y]`` and the loss is the weighted mean (as ``nn.CrossEntropyLoss`` does);
    * multiclass: cross-entropy with optional class weights;
    * multilabel: binary cross-entropy with logits, optional per-label positive weights;
    * regression: mean squared error on the standardised target ``(y - mean) / std``.
    """

    class_weights: Tensor | None
    target_mean: Tensor
    target_std: Tensor

    def __init__(
        self,
        task: TaskType,
        class_weights: Tensor | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        """Initialize a new TaskLoss instance.

        Args:
            task: The task type.
            class_weights: Per-class (binary, multiclass) or per-label positive (multilabel) weights.
            target_mean: Regression target mean, in target units.
            target_std: Regression target standard deviation, in target units.
        """
        super().__init__()
        self.task = task
        self.register_buffer('class_weights', class_weights)
        self.register_buffer('target_mean', torch.tensor(float(target_mean)))
        self.register_buffer('target_std', torch.tensor(float(target_std)))

    @classmethod
    def from_options(
        cls,
        task: TaskType,
        size: int,
        class_weights: Sequence[float] | str | None,
        target_mean: float | None,
        target_std: float | None,
    ) -> 'TaskLoss':
        """Build the loss from a task's options.

        ``class_weights='balanced'`` and target statistics left at None are placeholders (ones, 0 and
        1), filled from the datamodule when fitting starts (:meth:`fill_from`); as buffers, they are
        saved in checkpoints.

        Args:
            task: The task type.
            size: Number of class weights: 2 (binary), K classes or L labels.
            class_weights: A list of *size* weights, 'balanced', or None (ignored for regression).
            target_mean: Regression target mean, or None.
            target_std: Regression target standard deviation, or None.

        Returns:
            The loss.

        Raises:
            ValueError: If *class_weights* is another string or has the wrong length.
        """
        weights: Tensor | None = None
        if isinstance(class_weights, str):
            if class_weights != 'balanced':
                msg = f"class_weights must be 'balanced', a list or None, got {class_weights!r}"
                raise ValueError(msg)
            weights = torch.ones(size)
        elif class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if weights.shape != (size,):
                msg = f'class_weights must have {size} values for task={task!r}, got {class_weights}'
                raise ValueError(msg)
        return cls(
            task,
            weights if task != 'regression' else None,
            target_mean or 0.0,
            target_std or 1.0,
        )

    def standardize(self, target: Tensor) -> Tensor:
        """Standardise a regression target.

        Args:
            target: Target in target units, shape (B,).

        Returns:
            ``(target - mean) / std``.
        """
        return (target.float() - self.target_mean) / self.target_std

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            output: Raw outputs: (B,) logits (binary), (B, K) logits (multiclass), (B, L) logits
                (multilabel), (B,) standardised values (regression).
            target: (B,) int64 class indices, (B, L) multi-hot labels or (B,) values in target units.

        Returns:
            A scalar loss.
        """
        weights: Tensor | None = self.class_weights
        match self.task:
            case 'binary':
                losses = F.binary_cross_entropy_with_logits(
                    output.float(), target.float(), reduction='none'
                )
                if weights is None:
                    return losses.mean()
                sample_weights = weights[target.long()]
                return (losses * sample_weights).sum() / sample_weights.sum()
            case 'multiclass':
                return F.cross_entropy(output.float(), target.long(), weight=weights)
            case 'multilabel':
                return F.binary_cross_entropy_with_logits(
                    output.float(), target.float(), pos_weight=weights
                )
            case 'regression':
                return F.mse_loss(output.float(), self.standardize(target))

    def fill_from(
        self, datamodule: Any, balanced: bool, target_mean: bool, target_std: bool
    ) -> None:
        """Fill placeholders from the datamodule's training split, when it offers them.

        Args:
            datamodule: The datamodule; its ``class_weights(num_classes)`` and ``target_stats()`` are
                used when present.
            balanced: Fill the class weights ('balanced').
            target_mean: Fill the regression target mean.
            target_std: Fill the regression target standard deviation.

        Raises:
            ValueError: If the datamodule's class weights have another shape than the task's.
        """
        if (
            balanced
            and self.class_weights is not None
            and hasattr(datamodule, 'class_weights')
        ):
            expected = self.class_weights.shape
            weights = datamodule.class_weights(expected[0]).to(self.target_mean.device)
            if weights.shape != expected:
                msg = (
                    f'datamodule.class_weights() returned {tuple(weights.shape)} weights, the task '
                    f'expects {tuple(expected)} (task={self.task!r})'
                )
                raise ValueError(msg)
            self.class_weights.copy_(weights)
        if self.task == 'regression' and hasattr(datamodule, 'target_stats'):
            mean, std = datamodule.target_stats()
            if target_mean:
                self.target_mean.fill_(mean)
            if target_std:
                self.target_std.fill_(std)
