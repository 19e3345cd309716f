# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Command-line entry point: ``python -m torchgeo_colearn``."""

from .main import run

if __name__ == '__main__':
    run()
