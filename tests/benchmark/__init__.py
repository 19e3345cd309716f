# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.
