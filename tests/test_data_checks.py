"""Input checks: every accepted input comes out as float32 C-contiguous (n, C, H, W) images,
and every rejected one raises an error that says what is wrong."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from metaprune.data.checks import MAX_IMAGE_SIDE, as_array, check_device, check_images, check_input_shape, \
    check_labels

IMAGES = np.arange(3 * 2 * 4 * 5, dtype=np.float64).reshape(3, 2, 4, 5) / 7.0
EXPECTED = IMAGES.astype(np.float32)


def assert_standard(result, expected=EXPECTED):
    assert type(result) is np.ndarray and result.dtype == np.float32
    assert result.flags.c_contiguous and result.flags.writeable and result.flags.aligned
    assert result.strides == tuple(4 * int(np.prod(expected.shape[i + 1:])) for i in range(expected.ndim))
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("make", [
    pytest.param(lambda: IMAGES.tolist(), id="nested-lists"),
    pytest.param(lambda: IMAGES, id="float64"),
    pytest.param(lambda: IMAGES.astype(np.float32), id="float32"),
    pytest.param(lambda: np.asfortranarray(IMAGES), id="fortran-order"),
    pytest.param(lambda: np.ascontiguousarray(IMAGES[::-1, :, ::-1])[::-1, :, ::-1], id="negative-strides"),
    pytest.param(lambda: np.ascontiguousarray(IMAGES.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
                 id="nhwc-view"),
    pytest.param(lambda: torch.from_numpy(IMAGES), id="torch-float64"),
    pytest.param(lambda: torch.from_numpy(IMAGES).float().contiguous(memory_format=torch.channels_last),
                 id="torch-channels-last"),
])
def test_accepted_layouts_give_float32_c_contiguous_images(make):
    X = make()
    assert_standard(check_images(X, in_channels=2))


def test_float16_is_widened():
    X16 = IMAGES.astype(np.float16)
    assert_standard(check_images(X16), X16.astype(np.float32))
    assert_standard(check_images(torch.from_numpy(X16)), X16.astype(np.float32))


def test_read_only_arrays_and_memmaps_come_back_writable_plain_arrays(tmp_path):
    read_only = EXPECTED.copy()
    read_only.flags.writeable = False
    assert_standard(check_images(read_only))
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=EXPECTED.shape)
    mapped[:] = EXPECTED
    assert_standard(check_images(mapped))


@pytest.mark.parametrize("input_shape", [(2, 4, 5), [2, 4, 5], (2, -1, 5), (-1, 4, 5)])
def test_flattened_rows_are_reshaped_with_input_shape(input_shape):
    rows = IMAGES.reshape(3, -1)
    assert_standard(check_images(rows, in_channels=2, input_shape=input_shape))
    assert_standard(check_images(np.asfortranarray(rows), input_shape=input_shape))


def test_one_dimensional_input_is_refused_with_a_reshape_hint():
    with pytest.raises(ValueError, match=r"got a 1-D array of shape \(40,\).*X.reshape\(1, -1\)"):
        check_images(np.zeros(40))


def test_rows_without_input_shape_and_rows_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"X is 2-D with shape \(3, 40\); pass input_shape=\(C, H, W\)"):
        check_images(IMAGES.reshape(3, -1))
    with pytest.raises(ValueError, match=r"cannot reshape rows of 40 features to input_shape=\(2, 4, 4\)"):
        check_images(IMAGES.reshape(3, -1), input_shape=(2, 4, 4))


@pytest.mark.parametrize("shape", [(3, 2, 4), (3, 2, 4, 5, 1)])
def test_other_ranks_are_refused(shape):
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, C, H, W\), got an array of shape"):
        check_images(np.zeros(shape))


def test_wrong_channels_hint_at_uint8_nhwc_images_when_the_last_axis_fits():
    nhwc = np.zeros((3, 8, 8, 1), np.uint8)
    with pytest.raises(ValueError, match=r"X has 8 channels but the network expects 1 \(uint8 NHWC images\? "
                                         r"use metaprune.data.preprocessing.ImageToTensor first\)"):
        check_images(nhwc, in_channels=1)
    with pytest.raises(ValueError, match=r"X has 2 channels but the network expects 3$"):  # no hint
        check_images(IMAGES, in_channels=3)


@pytest.mark.parametrize("value, phrase", [(np.nan, "contains NaN"), (np.inf, "contains infinity"),
                                           (-np.inf, "contains infinity")])
def test_non_finite_values_are_refused(value, phrase):
    X = IMAGES.copy()
    X[1, 0, 2, 3] = value
    with pytest.raises(ValueError, match=phrase):
        check_images(X)
    with pytest.raises(ValueError, match=phrase):
        check_images(torch.from_numpy(X))


def test_too_few_samples():
    with pytest.raises(ValueError, match=r"Found array with 1 sample\(s\).*a minimum of 2 is required"):
        check_images(IMAGES[:1], min_samples=2)
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
        check_images(IMAGES[:0])
    assert check_images(IMAGES[:2], min_samples=2).shape == (2, 2, 4, 5)


def test_complex_non_numeric_and_sparse_input():
    with pytest.raises(ValueError, match="Complex data not supported"):
        check_images(IMAGES.astype(np.complex64))
    with pytest.raises(ValueError, match="could not convert string to float"):
        check_images(np.full((3, 1, 2, 2), "a", dtype=object))
    with pytest.raises(TypeError, match="Sparse data was passed"):
        check_images(sp.csr_matrix(IMAGES.reshape(3, -1)), input_shape=(2, 4, 5))


@pytest.mark.xfail(strict=True, reason="BUG (minor): scikit-learn's ensure_min_features applies to 2-D "
                   "arrays only, so 4-D images with zero channels or zero pixels pass check_images when "
                   "in_channels is not given and fail later inside torch")
@pytest.mark.parametrize("shape", [(3, 0, 4, 5), (3, 2, 0, 5)])
def test_empty_images_are_refused(shape):
    with pytest.raises(ValueError):
        check_images(np.zeros(shape))


def test_labels_are_encoded_in_sorted_class_order():
    classes, encoded = check_labels(["dog", "cat", "dog", "emu"], 4)
    assert classes.tolist() == ["cat", "dog", "emu"]
    assert encoded.dtype == np.int64 and encoded.tolist() == [1, 0, 1, 2]
    classes, encoded = check_labels(torch.tensor([7, 3, 3]).numpy(), 3)
    assert classes.tolist() == [3, 7] and encoded.tolist() == [1, 0, 0]


def test_a_label_column_is_raveled_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classes, encoded = check_labels(np.array([[1], [0], [1]]), 3)
    assert classes.tolist() == [0, 1] and encoded.tolist() == [1, 0, 1]
    assert any("1d array was expected" in str(w.message) for w in caught)


@pytest.mark.parametrize("y, n_samples, min_classes, phrase", [
    (None, 3, 2, "requires y to be passed"),
    ([0, 1], 3, 2, "X has 3 samples but y has 2 labels"),
    ([0, 0, 0], 3, 2, r"a task needs at least 2 classes; y has 1: \[0\]"),
    ([0, 1, 0], 3, 3, r"a task needs at least 3 classes; y has 2: \[0, 1\]"),
    ([0.5, 1.5, 2.5], 3, 2, "Unknown label type: continuous"),
    (np.zeros((3, 2)), 3, 2, r"y should be a 1d array, got an array of shape \(3, 2\)"),
])
def test_bad_labels(y, n_samples, min_classes, phrase):
    with pytest.raises(ValueError, match=phrase):
        check_labels(y, n_samples, min_classes=min_classes)


@pytest.mark.parametrize("shape", [(1, 8, 8), [1, 8, 8], np.array([1, 8, 8]), (np.int64(1), 8, 8),
                                   (1, MAX_IMAGE_SIDE, 1)])
def test_input_shape_as_a_tuple_of_python_ints(shape):
    result = check_input_shape(shape, in_channels=1)
    assert result == (1, int(shape[1]), int(shape[2])) and all(type(s) is int for s in result)


@pytest.mark.parametrize("shape", [(1, 8), (1, 8, 8, 1), (1, 0, 8), (1, -1, 8), (True, 8, 8), (1.0, 8, 8),
                                   (1, 8, np.float64(8)), "abc", b"abc", None, 5])
def test_bad_input_shapes(shape):
    with pytest.raises(ValueError, match=r"input_shape must be 3 positive ints \(C, H, W\), got "):
        check_input_shape(shape)


def test_input_shape_message_is_short_for_long_values_and_sides_are_bounded():
    with pytest.raises(ValueError) as info:
        check_input_shape(list(range(1000)))
    prefix = "input_shape must be 3 positive ints (C, H, W), got "
    assert str(info.value) == prefix + repr(list(range(1000)))[:60]
    with pytest.raises(ValueError, match=rf"at most {MAX_IMAGE_SIDE} channels or pixels a side"):
        check_input_shape((1, MAX_IMAGE_SIDE + 1, 8))
    with pytest.raises(ValueError, match=r"input_shape \(3, 8, 8\) has 3 channels but the network expects 1"):
        check_input_shape((3, 8, 8), in_channels=1)


def test_cpu_devices():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    assert isinstance(check_device("cpu"), torch.device)


@pytest.mark.parametrize("device, phrase", [
    ("bogus", r"unknown device 'bogus': expected cpu, cuda, cuda:N or mps"),
    (None, "unknown device None"),
    ("meta", "device 'meta': metaprune runs on cpu, cuda or mps, not meta"),
])
def test_unknown_devices(device, phrase):
    with pytest.raises(ValueError, match=phrase):
        check_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda:0")])
def test_cuda_without_a_gpu(device):
    with pytest.raises(ValueError, match=r"no cuda device is available on this machine \(use cpu\)"):
        check_device(device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_beyond_the_gpus_present():
    count = torch.cuda.device_count()
    assert check_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=rf"this machine has {count} cuda device\(s\)"):
        check_device(f"cuda:{count}")


def test_as_array():
    assert as_array([1, 2]).tolist() == [1, 2]
    assert as_array(IMAGES) is IMAGES
    widened = as_array(torch.ones(2, dtype=torch.bfloat16))  # NumPy has no bfloat16
    assert widened.dtype == np.float32 and widened.tolist() == [1.0, 1.0]
    tensor = torch.arange(4.0, requires_grad=True)
    assert as_array(tensor).tolist() == [0.0, 1.0, 2.0, 3.0]
    sparse = sp.csr_matrix(np.eye(2))
    assert as_array(sparse) is sparse
