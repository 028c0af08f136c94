"""Tests of metaprune.data.image_dataset: the ImageDataset container's checks and subsets."""

import numpy as np
import pytest

from metaprune.data.image_dataset import ImageDataset


def _dataset(n=6, coarse=True):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 4, 5, 3), dtype=np.uint8)
    labels = np.arange(n) % 3
    if not coarse:
        return ImageDataset(images, labels, ("a", "b", "c"))
    return ImageDataset(images, labels, ("a", "b", "c"), labels % 2, ("even", "odd"))


def test_image_dataset_normalises_fields():
    data = ImageDataset(np.zeros((3, 2, 2, 1), np.uint8), np.array([0, 1, 1], np.int32), ["x", "y"])
    assert data.labels.dtype == np.int64
    assert data.class_names == ("x", "y")
    assert data.coarse_labels is None and data.coarse_names is None
    assert len(data) == 3 and data.n_classes == 2 and data.image_shape == (2, 2, 1)
    assert "n_images=3" in repr(data)


@pytest.mark.parametrize("kwargs, message", [
    ({"images": np.zeros((3, 2, 2, 1), np.float32)}, "uint8"),
    ({"images": np.zeros((3, 2, 2), np.uint8)}, "NHWC"),
    ({"images": [[0]]}, "numpy array"),
    ({"labels": np.array([0, 1])}, "shape"),
    ({"labels": np.array([0, 1, 2])}, "0..1"),
    ({"labels": np.array([0.0, 1.0, 1.0])}, "integers"),
    ({"class_names": "xy"}, "single string"),
    ({"class_names": ()}, "non-empty"),
    ({"coarse_labels": np.zeros(3, int)}, "together"),
    ({"coarse_labels": np.array([0, 0, 5]), "coarse_names": ("c",)}, "coarse_labels must lie"),
])
def test_image_dataset_validation(kwargs, message):
    fields = {"images": np.zeros((3, 2, 2, 1), np.uint8), "labels": np.array([0, 1, 1]),
              "class_names": ("x", "y"), **kwargs}
    with pytest.raises(ValueError, match=message):
        ImageDataset(**fields)


def test_image_dataset_is_frozen():
    data = _dataset()
    with pytest.raises(AttributeError):
        data.labels = np.zeros(6, int)


@pytest.mark.parametrize("index, positions", [
    (np.array([4, 1]), [4, 1]),
    ([4, 1], [4, 1]),
    (np.arange(6) % 3 == 1, [1, 4]),
    (slice(1, 5, 3), [1, 4]),
])
def test_subset_keeps_global_class_names(index, positions):
    data = _dataset()
    sub = data.subset(index)
    np.testing.assert_array_equal(sub.images, data.images[positions])
    np.testing.assert_array_equal(sub.labels, [1, 1])
    np.testing.assert_array_equal(sub.coarse_labels, [1, 1])
    assert sub.class_names == data.class_names and sub.coarse_names == data.coarse_names


def test_subset_rejects_bad_index():
    data = _dataset(coarse=False)
    with pytest.raises(ValueError, match="boolean index"):
        data.subset(np.array([True, False]))
    with pytest.raises(ValueError, match="integers or booleans"):
        data.subset(np.array([0.5]))
    assert len(data.subset([])) == 0
