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


class TestMissing:
    def absent(self, dataset: SyntheticMultiSensor, modality: str) -> torch.Tensor:
        x = dataset.tensors[f'image_{modality}']
        return ~torch.isfinite(x.flatten(1)).any(1)

    def test_rate_and_nan_only(self) -> None:
        dataset = SyntheticMultiSensor(
            400,
            modalities=FIVE,  # type: ignore[arg-type]
            image_size=4,
            missing={'s2': 0.3, 'aerial': 0.55},
        )
        assert int(self.absent(dataset, 's2').sum()) == 120
        assert int(self.absent(dataset, 'aerial').sum()) == 220
        for modality in ('s1', 'dem', 'era5'):
            assert not self.absent(dataset, modality).any()
        for modality in FIVE:
            x = dataset.tensors[f'image_{modality}'].flatten(1)
            # a sample is either whole or all NaN
            assert (
                torch.isfinite(x)
                .all(1)
                .logical_xor(self.absent(dataset, modality))
                .all()
            )

    def test_reproducible_and_data_unchanged(self) -> None:
        complete = SyntheticMultiSensor(200, seed=5)
        a = SyntheticMultiSensor(200, seed=5, missing={'s1': 0.4})
        b = SyntheticMultiSensor(200, seed=5, missing={'s1': 0.4, 'dem': 0.2})
        assert torch.equal(self.absent(a, 's1'), self.absent(b, 's1'))
        kept = ~self.absent(a, 's1')
        assert torch.equal(
            a.tensors['image_s1'][kept], complete.tensors['image_s1'][kept]
        )
        for key in ('image_s2', 'image_dem', 'label'):
            assert torch.equal(a.tensors[key], complete.tensors[key])
        other_seed = SyntheticMultiSensor(200, seed=6, missing={'s1': 0.4})
        assert not torch.equal(self.absent(a, 's1'), self.absent(other_seed, 's1'))

    def test_higher_rate_removes_more_of_the_same(self) -> None:
        low = self.absent(SyntheticMultiSensor(300, missing={'s2': 0.3}), 's2')
        high = self.absent(SyntheticMultiSensor(300, missing={'s2': 0.6}), 's2')
        assert (high | ~low).all() and int(high.sum()) == 180

    def test_independent_between_modalities(self) -> None:
        dataset = SyntheticMultiSensor(2000, missing={'s1': 0.5, 's2': 0.5})
        both = self.absent(dataset, 's1') & self.absent(dataset, 's2')
        assert abs(int(both.sum()) / 2000 - 0.25) < 0.04

    def test_no_rate_is_complete(self) -> None:
        dataset = SyntheticMultiSensor(50, missing={'s1': 0.0})
        assert torch.isfinite(dataset.tensors['image_s1']).all()

    @pytest.mark.parametrize(
        'missing,match',
        [
            ({'radar': 0.1}, r"modalities \['radar'\] that are not generated"),
            ({'s1': 1.0}, r'missing rates must be in \[0, 1\)'),
            ({'s1': -0.1}, r'missing rates must be in \[0, 1\)'),
        ],
    )
    def test_invalid(self, missing: dict[str, float], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            SyntheticMultiSensor(20, missing=missing)
