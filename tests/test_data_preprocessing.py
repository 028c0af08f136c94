"""Tests of metaprune.data.preprocessing.ImageToTensor."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import metaprune.data.preprocessing as preprocessing
from metaprune.data.loaders import load_digits_images
from metaprune.data.preprocessing import CIFAR100_MEAN, CIFAR100_STD, ImageToTensor


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (7, 5, 4, 3), dtype=np.uint8)


def _manual(images, mean, std):
    x = images.transpose(0, 3, 1, 2).astype(np.float64) / 255
    return (x - np.asarray(mean)[:, None, None]) / np.asarray(std)[:, None, None]


def test_explicit_statistics(images):
    out = ImageToTensor(mean=CIFAR100_MEAN, std=CIFAR100_STD).fit_transform(images)
    assert out.shape == (7, 3, 5, 4) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, _manual(images, CIFAR100_MEAN, CIFAR100_STD), rtol=1e-5, atol=1e-5)


def test_no_normalisation_scales_to_unit_interval(images):
    transformer = ImageToTensor(mean=None, std=None).fit(images)
    np.testing.assert_array_equal(transformer.mean_, np.zeros(3))
    np.testing.assert_array_equal(transformer.std_, np.ones(3))
    out = transformer.transform(images)
    np.testing.assert_allclose(out, images.transpose(0, 3, 1, 2) / 255, atol=1e-7)
    assert out.min() >= 0 and out.max() <= 1


def test_auto_statistics(images):
    transformer = ImageToTensor().fit(images)
    pixels = images.reshape(-1, 3) / 255
    np.testing.assert_allclose(transformer.mean_, pixels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(transformer.std_, pixels.std(axis=0), rtol=1e-5)
    out = transformer.transform(images)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert transformer.n_channels_ == 3 and transformer.image_shape_ == (3, 5, 4)


def test_auto_statistics_in_chunks(images, monkeypatch):
    reference = ImageToTensor().fit(images)
    monkeypatch.setattr(preprocessing, "_CHUNK", 2)
    chunked = ImageToTensor().fit(images)
    np.testing.assert_allclose(chunked.mean_, reference.mean_, rtol=1e-6)
    np.testing.assert_allclose(chunked.std_, reference.std_, rtol=1e-6)
    np.testing.assert_allclose(chunked.transform(images), reference.transform(images), atol=1e-6)


def test_constant_channel_gets_unit_std():
    images = np.full((4, 3, 3, 2), 128, dtype=np.uint8)
    images[..., 1] = np.arange(36).reshape(4, 3, 3)
    transformer = ImageToTensor().fit(images)
    assert transformer.std_[0] == 1.0
    out = transformer.transform(images)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 0], 0, atol=1e-6)


def test_mean_only_and_scalar_broadcast(images):
    out = ImageToTensor(mean=0.5, std=None).fit_transform(images)
    np.testing.assert_allclose(out, _manual(images, [0.5] * 3, [1] * 3), atol=1e-6)
    transformer = ImageToTensor(mean="auto", std=[0.5]).fit(images)
    np.testing.assert_allclose(transformer.std_, [0.5] * 3)


def test_float_nchw_input_is_not_rescaled(images):
    floats = images.transpose(0, 3, 1, 2) / 255.0
    out = ImageToTensor(mean=CIFAR100_MEAN, std=CIFAR100_STD).fit_transform(floats)
    np.testing.assert_allclose(out, _manual(images, CIFAR100_MEAN, CIFAR100_STD), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("as_float", [False, True])
def test_flattened_rows_in_chw_order(images, as_float):
    nchw = images.transpose(0, 3, 1, 2)
    flat = nchw.reshape(len(images), -1)
    if as_float:
        flat = flat / 255.0
    transformer = ImageToTensor(mean=None, std=None, input_shape=(3, 5, 4))
    np.testing.assert_allclose(transformer.fit_transform(flat), nchw / 255, atol=1e-7)


def test_input_shape_is_checked_for_4d(images):
    with pytest.raises(ValueError, match=r"input_shape=\(3, 4, 5\)"):
        ImageToTensor(input_shape=(3, 4, 5)).fit(images)
    assert ImageToTensor(input_shape=(3, 5, 4)).fit_transform(images).shape == (7, 3, 5, 4)
    assert ImageToTensor(input_shape=(3, -1, 4)).fit_transform(images).shape == (7, 3, 5, 4)


def test_inferred_input_shape_entry_and_torch_tensor(images):
    import torch

    flat = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    out = ImageToTensor(mean=None, std=None, input_shape=(3, -1, 4)).fit_transform(flat)
    assert out.shape == (7, 3, 5, 4)
    tensor = torch.tensor(images.transpose(0, 3, 1, 2) / 255.0, requires_grad=True)
    np.testing.assert_allclose(ImageToTensor(mean=None, std=None).fit_transform(tensor), out, atol=1e-6)


@pytest.mark.parametrize("X, kwargs, message", [
    (np.zeros((2, 4, 4), np.uint8), {}, r"rank 3.*X\[\.\.\., None\]"),
    (np.zeros((2, 3, 4, 4, 1), np.float32), {}, "rank 5"),
    (np.zeros((2, 48), np.float32), {}, "pass input_shape"),
    (np.zeros((2, 47), np.float32), {"input_shape": (3, 4, 4)}, "47 features per row"),
    (np.zeros((2, 47), np.float32), {"input_shape": (3, -1, 4)}, "47 features per row"),
    (np.zeros((2, 48), np.float32), {"input_shape": (-1, -1, 4)}, "one of which may be -1"),
    (np.zeros((2, 4, 4, 3), np.int64), {}, "dtype int64"),
    (np.full((2, 3, 4, 4), np.nan, np.float32), {}, "NaN"),
    (np.zeros((0, 4, 4, 3), np.uint8), {}, "no images"),
    (np.zeros((2, 4, 4, 3), np.uint8), {"mean": (0.1, 0.2)}, "mean has 2 values.*3 channels"),
    (np.zeros((2, 4, 4, 3), np.uint8), {"std": (0.1, 0.0, 0.3)}, "std must be positive"),
    (np.zeros((2, 4, 4, 3), np.uint8), {"mean": "mean"}, "must be 'auto', None"),
    (np.zeros((2, 4, 4, 3), np.uint8), {"input_shape": (3, 4)}, "three positive ints"),
])
def test_invalid_input(X, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageToTensor(**kwargs).fit(X)


def test_channel_mismatch_and_nan_in_transform(images):
    transformer = ImageToTensor().fit(images)
    with pytest.raises(ValueError, match="1 channels, but ImageToTensor was fitted with 3"):
        transformer.transform(images[..., :1])
    bad = images.transpose(0, 3, 1, 2) / 255.0
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        transformer.transform(bad)


def test_not_fitted(images):
    with pytest.raises(NotFittedError):
        ImageToTensor().transform(images)


def test_sklearn_conventions():
    transformer = ImageToTensor(mean=CIFAR100_MEAN, std=None, input_shape=(3, 32, 32))
    assert transformer.get_params() == {"mean": CIFAR100_MEAN, "std": None, "input_shape": (3, 32, 32)}
    copy = clone(transformer)
    assert copy.get_params() == transformer.get_params() and not hasattr(copy, "mean_")


def test_first_step_of_a_pipeline():
    """uint8 NHWC images in, float (n, C, H, W) into the next step, cross-validated."""
    data = load_digits_images().subset(slice(0, 600))
    seen_shapes = []

    def flatten(X):
        assert X.dtype == np.float32 and X.ndim == 4 and X.shape[1] == 1
        seen_shapes.append(X.shape[1:])
        return X.reshape(len(X), -1)

    pipe = Pipeline([
        ("to_tensor", ImageToTensor()),
        ("flatten", FunctionTransformer(flatten)),
        ("clf", LogisticRegression(max_iter=100)),
    ])
    scores = cross_val_score(pipe, data.images, data.labels, cv=3)
    assert scores.mean() > 0.85
    assert set(seen_shapes) == {(1, 8, 8)}


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4))))
def test_property_scaling_is_exact_and_auto_is_finite(X):
    out = ImageToTensor(mean=None, std=None).fit_transform(X)
    np.testing.assert_allclose(out, X.transpose(0, 3, 1, 2) / 255, atol=1e-7)
    auto = ImageToTensor().fit_transform(X)
    assert auto.shape == out.shape and np.isfinite(auto).all()
    assert np.abs(auto.mean(axis=(0, 2, 3))).max() < 1e-4
