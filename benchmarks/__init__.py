# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Benchmark scripts (run from the repository root; see README.md here)."""
