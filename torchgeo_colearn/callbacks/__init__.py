# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Lightning callbacks: missing-modality evaluation and prediction writing."""

__all__: tuple[str, ...] = ()
