# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import numpy as np
import pytest
import torch

from torchgeo_colearn.datasets.tensor import TensorMultiModalDataset


def dataset() -> TensorMultiModalDataset:
    return TensorMultiModalDataset(
        {
            'image_s1': torch.arange(12.0).reshape(6, 2),
            'label': torch.arange(6),
            'lat': torch.linspace(0, 1, 6),
        },
        ids=[f'id{i}' for i in range(6)],
        metadata={'site': ['a', 'a', 'b', 'c', 'c', 'c']},
    )


class TestMetadata:
    def test_subset_carries_metadata(self) -> None:
        subset = dataset().subset([5, 2])
        assert subset.attribute('site').tolist() == ['c', 'b']
        assert subset.ids == ['id5', 'id2']
        assert subset.subset([1]).attribute('site').tolist() == ['b']

    def test_not_in_samples_or_batches(self) -> None:
        data = dataset()
        assert 'site' not in data[0]
        assert set(data.batch([0, 1])) == {'image_s1', 'label', 'lat', 'id'}

    def test_attribute_reads_tensors_and_ids(self) -> None:
        data = dataset()
        assert np.allclose(data.attribute('lat'), np.linspace(0, 1, 6))
        assert data.attribute('id')[3] == 'id3'

    def test_unknown_attribute_lists_the_known_ones(self) -> None:
        with pytest.raises(
            KeyError, match=r"no per-sample attribute 'region'.*'lat'.*'site'"
        ):
            dataset().attribute('region')

    @pytest.mark.parametrize(
        'metadata,match',
        [
            ({'site': ['a', 'b']}, 'same number of samples'),
            ({'lat': [0] * 6}, "metadata 'lat' repeats a tensor key"),
            ({'site': np.zeros((6, 2))}, 'one value per sample'),
        ],
    )
    def test_bad_metadata(self, metadata: dict[str, object], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            TensorMultiModalDataset(
                {'image_s1': torch.zeros(6, 2), 'lat': torch.zeros(6)},
                metadata=metadata,  # type: ignore[arg-type]
            )
