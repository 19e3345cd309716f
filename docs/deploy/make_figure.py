#!/usr/bin/env python3

# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""The worked example of docs/deploy.md: a crop map of the real Togo export from one sensor.

Trains MDiCo (the model of experiments/cropharvest_binary.yaml: Sentinel-1 and Sentinel-2 + NDVI, TempCNN
encoders) on the 40 fake CropHarvest arrays of the tests, saves the checkpoint, maps the real Earth Engine
export ../shared/data/cropharvest_export/98-togo_2019-02-06_2020-02-01.tif with `colearn map` from Sentinel-2
alone and from Sentinel-1 alone, and draws docs/deploy/togo_map.png: an RGB composite of the input next to the
two maps of the crop probability. The model has seen 40 fake samples: the figure shows the pipeline, not a
useful crop map.

    OMP_NUM_THREADS=1 python docs/deploy/make_figure.py [--output-dir DIR] [--epochs 20]
"""

import argparse
import os
import shutil
import tempfile
import time
import warnings

import matplotlib

matplotlib.use('agg')
import matplotlib.pyplot as plt
import numpy as np
import rasterio
import torch
import yaml
from lightning.pytorch import Trainer, seed_everything

from torchgeo_colearn import CoLearnTask
from torchgeo_colearn.datamodules import CropHarvestDataModule
from torchgeo_colearn.datasets.cropharvest_export import CropHarvestExport
from torchgeo_colearn.main import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(REPO, 'tests', 'data', 'cropharvest')
CONFIG = os.path.join(REPO, 'experiments', 'cropharvest_binary.yaml')
TOGO = os.path.join(
    REPO,
    '..',
    'shared',
    'data',
    'cropharvest_export',
    '98-togo_2019-02-06_2020-02-01.tif',
)
FIGURE = os.path.join(REPO, 'docs', 'deploy', 'togo_map.png')


def train(output_dir: str, epochs: int) -> str:
    """Fit the experiment's model on the fake arrays; return the checkpoint."""
    with open(CONFIG) as f:
        config = yaml.safe_load(f)
    root = os.path.join(output_dir, 'cropharvest')
    shutil.copytree(FAKE, root, ignore=shutil.ignore_patterns('data.py', '*.pt'))
    data_args = config['data']['init_args']
    datamodule = CropHarvestDataModule(
        root,
        task='binary',
        modality_groups=data_args['modality_groups'],
        num_folds=5,
        batch_size=8,
    )
    seed_everything(0)
    task = CoLearnTask(**config['model']['init_args'])
    trainer = Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
        default_root_dir=output_dir,
    )
    trainer.fit(task, datamodule)
    path = os.path.join(output_dir, 'cropharvest_binary.ckpt')
    trainer.save_checkpoint(path)
    return path


def rgb_composite(path: str) -> np.ndarray:
    """Median over the 12 months of B4, B3, B2, each stretched between its 2nd and 98th percentiles."""
    export = CropHarvestExport(path)
    raw = export.read_raw()  # (H, W, T, 19)
    bands = [5, 4, 3]  # B4, B3, B2 in the raw band order (VV, VH, B1, B2, ...)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        rgb = np.nanmedian(raw[..., bands], axis=2)
    # the edge rows and columns of the export hold outliers: stretch on the inner pixels
    inner = rgb[1:-1, 1:-1]
    low = np.nanpercentile(inner, 2, axis=(0, 1))
    high = np.nanpercentile(inner, 98, axis=(0, 1))
    return np.clip((rgb - low) / (high - low), 0, 1)


def main_figure() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--output-dir',
        help='where the checkpoint and the maps go (default: a temporary folder)',
    )
    parser.add_argument('--epochs', type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    output_dir = args.output_dir or tempfile.mkdtemp(prefix='colearn_deploy_')
    os.makedirs(output_dir, exist_ok=True)
    checkpoint = train(output_dir, args.epochs)
    maps = {}
    for modality in ('s2', 's1'):
        path = os.path.join(output_dir, f'togo_{modality}.tif')
        start = time.perf_counter()
        main(
            [
                'map',
                '--ckpt_path',
                checkpoint,
                '--modality',
                modality,
                '--raster',
                TOGO,
                '--output',
                path,
            ]
        )
        print(
            f'{modality}: colearn map of the Togo export took {time.perf_counter() - start:.2f} s end to end'
        )
        with rasterio.open(path) as src:
            maps[modality] = src.read(3)  # probability_crop
    export = CropHarvestExport(TOGO)
    row, column = export.index(
        7.719570, 1.422795
    )  # the labelled field (labels.geojson)
    figure, axes = plt.subplots(1, 3, figsize=(12, 4), constrained_layout=True)
    axes[0].imshow(rgb_composite(TOGO))
    axes[0].set_title('Sentinel-2 RGB (median of 12 months)')
    for ax, modality, title in (
        (axes[1], 's2', 'Sentinel-2 alone'),
        (axes[2], 's1', 'Sentinel-1 alone'),
    ):
        image = ax.imshow(maps[modality], vmin=0, vmax=1, cmap='YlGn')
        ax.set_title(f'P(crop) from {title}')
    figure.colorbar(image, ax=axes[1:], shrink=0.8, label='probability of crop')
    for ax in axes:
        ax.plot(column, row, 'r+', markersize=12, markeredgewidth=2)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(
        'colearn map on the real CropHarvest export 98-togo (17 x 17 pixels, 10 m); + = labelled crop field. '
        'Model trained on 40 fake samples: the pipeline, not a crop map',
        fontsize=9,
    )
    figure.savefig(FIGURE, dpi=120)
    print(f'Figure written to {FIGURE}; checkpoint and maps in {output_dir}')


if __name__ == '__main__':
    main_figure()
