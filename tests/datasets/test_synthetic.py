# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import pytest
import torch

from torchgeo_colearn.datasets import SyntheticMultiSensor
from torchgeo_colearn.metrics import TaskType

FIVE = {
    's1': 'timeseries',
    's2': 'timeseries',
    'dem': 'vector',
    'aerial': 'image',
    'era5': 'vector',
}


def test_deterministic() -> None:
    a, b = SyntheticMultiSensor(50, seed=3), SyntheticMultiSensor(50, seed=3)
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key])
    c = SyntheticMultiSensor(50, seed=4)
    assert not torch.equal(a.tensors['image_s1'], c.tensors['image_s1'])


def test_five_mixed_modalities() -> None:
    dataset = SyntheticMultiSensor(20, modalities=FIVE, image_size=8)  # type: ignore[arg-type]
    assert dataset.sample_shapes() == {
        's1': (12, 3),
        's2': (12, 3),
        'dem': (16,),
        'aerial': (4, 8, 8),
        'era5': (16,),
    }
    sample = dataset[3]
    assert sample['id'] == 'synthetic_3'
    assert sample['image_aerial'].dtype == torch.float32


@pytest.mark.parametrize(
    'task,shape,dtype',
    [
        ('binary', (100,), torch.int64),
        ('multiclass', (100,), torch.int64),
        ('multilabel', (100, 5), torch.float32),
        ('regression', (100,), torch.float32),
    ],
)
def test_labels(task: TaskType, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    label = SyntheticMultiSensor(100, task=task).tensors['label']
    assert label.shape == shape and label.dtype == dtype
    if task == 'binary':
        assert label.float().mean() == pytest.approx(0.5, abs=0.02)
    if task == 'multiclass':
        assert len(label.unique()) == 4


def distance_correlation(specific_scale: float) -> float:
    """Correlation of pairwise sample distances in s1 and in s2 (noise-free)."""
    dataset = SyntheticMultiSensor(400, noise=0.0, specific_scale=specific_scale)
    s1 = dataset.tensors['image_s1'].flatten(1)
    s2 = dataset.tensors['image_s2'].flatten(1)
    distances = torch.stack(
        [torch.cdist(s1, s1).flatten(), torch.cdist(s2, s2).flatten()]
    )
    return float(torch.corrcoef(distances)[0, 1])


def test_shared_factor_links_modalities() -> None:
    # Samples close in one modality are close in the other through the shared factor; the
    # modality-specific factors weaken that link as they grow.
    assert distance_correlation(0.1) > 0.6
    assert (
        distance_correlation(0.1)
        > distance_correlation(1.0)
        > distance_correlation(3.0)
    )


@pytest.mark.parametrize(
    'modalities', [{'a': 'vector'}, {f'm{i}': 'vector' for i in range(6)}]
)
def test_modality_count(modalities: dict[str, str]) -> None:
    with pytest.raises(ValueError, match='2 to 5 modalities'):
        SyntheticMultiSensor(10, modalities=modalities)  # type: ignore[arg-type]


def test_bad_kind() -> None:
    with pytest.raises(ValueError, match=r"got \['cube'\]"):
        SyntheticMultiSensor(10, modalities={'a': 'vector', 'b': 'cube'})  # type: ignore[dict-item]


def test_bad_task() -> None:
    with pytest.raises(ValueError, match="got 'segmentation'"):
        SyntheticMultiSensor(10, task='segmentation')  # type: ignore[arg-type]
