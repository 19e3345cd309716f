# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The encoder interface and the registry that builds encoders by name from YAML."""

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, cast

from torch import Tensor, nn

from ..modality_info import shape_fits


class Encoder(nn.Module, ABC):
    """A modality encoder: one sample batch in, one embedding per sample out.

    Subclasses set :attr:`input_shape`, the shape of one sample (no batch axis) with ``None`` for a
    free axis (e.g. the time axis of a masked time-series encoder, or the spatial size of a CNN). The
    tasks check batches against it, so that a wrong shape fails with a message naming the key.
    """

    #: Shape of one input sample, ``None`` where any size is accepted.
    input_shape: tuple[int | None, ...]

    #: Size of the output embedding.
    out_dim: int

    #: Whether the constructor takes ``copies``: that many independent encoders of the architecture run
    #: as one module on the same input, returning their embeddings concatenated, (B, copies * out_dim),
    #: with every parameter and buffer stacking the copies along its first axis.
    supports_copies: ClassVar[bool] = False

    @abstractmethod
    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Encode a batch.

        Args:
            x: Input batch, shape (B, *input_shape).
            valid: Optional (B, T) bool mask of valid time steps (time-series encoders).

        Returns:
            Embeddings, shape (B, out_dim).
        """

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """Tell whether a sample shape fits :attr:`input_shape`.

        Args:
            shape: Shape of one sample (no batch axis).

        Returns:
            True if the number of axes and every fixed size match.
        """
        return shape_fits(self.input_shape, shape)


EncoderT = TypeVar('EncoderT', bound=type[Encoder])

#: Encoder families by name, as used under ``encoders.<modality>.name`` in the task config.
ENCODERS: dict[str, type[Encoder]] = {}


def register_encoder(name: str) -> Callable[[EncoderT], EncoderT]:
    """Register an encoder class under a name usable from YAML.

    Args:
        name: The registry name.

    Returns:
        A class decorator.
    """

    def decorator(cls: EncoderT) -> EncoderT:
        ENCODERS[name] = cls
        return cls

    return decorator


def encoder_class(config: Mapping[str, Any]) -> type[Encoder]:
    """Return the encoder class a config names.

    Args:
        config: ``name`` (a key of :data:`ENCODERS`) plus the keyword arguments of that class.

    Returns:
        The registered class.

    Raises:
        ValueError: If the name is missing or unknown.
    """
    name = config.get('name')
    if name not in ENCODERS:
        msg = f'encoder name {name!r} is not one of {sorted(ENCODERS)} (config: {dict(config)})'
        raise ValueError(msg)
    return ENCODERS[name]


def build_encoder(config: Mapping[str, Any], out_dim: int, copies: int = 1) -> Encoder:
    """Build an encoder from its config.

    Args:
        config: ``name`` (a key of :data:`ENCODERS`) plus the keyword arguments of that class, except
            ``out_dim`` and ``copies``.
        out_dim: Size of the output embedding.
        copies: Number of independent encoders run as one module (see
            :attr:`Encoder.supports_copies`); 1 builds a plain encoder.

    Returns:
        The encoder.

    Raises:
        ValueError: If the name is missing or unknown, or *copies* > 1 for a class without support.
        TypeError: If the arguments do not fit the encoder class.
    """
    cls = encoder_class(config)
    kwargs = dict(config)
    name = kwargs.pop('name')
    if copies != 1:
        if not cls.supports_copies:
            msg = f'encoder {name!r} cannot run {copies} copies as one module'
            raise ValueError(msg)
        kwargs['copies'] = copies
    try:
        return cls(out_dim=out_dim, **kwargs)
    except TypeError as error:
        msg = f'bad arguments for encoder {name!r} ({kwargs}): {error}'
        raise TypeError(msg) from error


class ModalityEncoders(nn.Module):
    """One encoder per modality, all of one output size: the base of models with one (B, D) feature per modality."""

    def __init__(self, encoders: Mapping[str, Mapping[str, Any]], width: int) -> None:
        """Initialize a new ModalityEncoders instance.

        Args:
            encoders: Modality mapped to its encoder config (see :func:`build_encoder`).
            width: Output size D of every encoder.
        """
        super().__init__()
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(
            {m: build_encoder(config, width) for m, config in encoders.items()}
        )

    def encoder(self, modality: str) -> Encoder:
        """Return the encoder of a modality.

        Args:
            modality: A modality name.

        Returns:
            The encoder.
        """
        return cast(Encoder, self.encoders[modality])

    def encode(
        self, inputs: Mapping[str, tuple[Tensor, Tensor | None]]
    ) -> dict[str, Tensor]:
        """Encode each available modality with its own encoder.

        Args:
            inputs: Modality mapped to (input (B, *input_shape), validity mask (B, T) or None).

        Returns:
            Modality mapped to (B, D) features.
        """
        return {m: self.encoders[m](x, valid) for m, (x, valid) in inputs.items()}
