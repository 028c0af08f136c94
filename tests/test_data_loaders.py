"""Tests of metaprune.data.loaders on small fixture files written into tmp_path.

The container, the unpickler and the image-folder reader have their own test files
(test_data_image_dataset.py, test_data_unpickler.py, test_data_image_folders.py); the
loaders also re-export their names, checked here."""

import builtins
import gzip
import io
import os
import pickle
import struct

import numpy as np
import pytest

from metaprune.data.loaders import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    default_cifar100_path,
    load_cifar100,
    load_digits_images,
    load_fashion_mnist,
    read_idx,
)

FINE = ("apple", "bee", "cloud", "dolphin")
COARSE = ("fruit", "insects", "outdoor", "mammals")


# --------------------------------------------------------------------------- re-exports


def test_every_name_imports_from_loaders_and_the_0_1_path():
    import metaprune.data.loaders as loaders
    import metaprune.datasets as datasets  # the 0.1 module path
    from metaprune.data import image_dataset, image_folders, unpickler

    assert datasets is loaders
    for name in loaders.__all__:
        assert getattr(datasets, name) is getattr(loaders, name)
    assert loaders.ImageDataset is image_dataset.ImageDataset
    assert loaders.RestrictedUnpickler is unpickler.RestrictedUnpickler
    assert loaders.load_image_folder is image_folders.load_image_folder
    assert loaders.IMAGE_EXTENSIONS is image_folders.IMAGE_EXTENSIONS
    assert loaders.CIFAR100_ENV_VAR == "METAPRUNE_CIFAR100"


# --------------------------------------------------------------------------- CIFAR-100 npz


def _write_npz(path, n=8, **overrides):
    rng = np.random.default_rng(1)
    arrays = {
        "x": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        "y": np.arange(n, dtype=np.int64) % len(FINE),
        "coarse": (np.arange(n, dtype=np.int64) % len(FINE)) % len(COARSE),
        "classes": np.array(FINE),
        "coarse_classes": np.array(COARSE),
        "description": np.array("fixture"),
    }
    arrays.update(overrides)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_load_cifar100_npz(tmp_path):
    arrays = _write_npz(tmp_path / "train.npz")
    data = load_cifar100(tmp_path / "train.npz")
    assert data.images.shape == (8, 32, 32, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, arrays["x"])
    np.testing.assert_array_equal(data.labels, arrays["y"])
    assert data.labels.dtype == np.int64 and data.coarse_labels.dtype == np.int64
    np.testing.assert_array_equal(data.coarse_labels, arrays["coarse"])
    assert data.class_names == FINE and data.coarse_names == COARSE
    assert all(type(name) is str for name in data.class_names)


def test_load_cifar100_npz_folder_and_split(tmp_path):
    _write_npz(tmp_path / "train.npz")
    assert len(load_cifar100(tmp_path, split="train")) == 8
    with pytest.raises(ValueError, match="'train' split"):
        load_cifar100(tmp_path / "train.npz", split="test")
    with pytest.raises(ValueError, match="no CIFAR-100 'test' split"):
        load_cifar100(tmp_path, split="test")
    with pytest.raises(ValueError, match="split must be"):
        load_cifar100(tmp_path, split="validation")
    with pytest.raises(ValueError, match="does not exist"):
        load_cifar100(tmp_path / "nowhere")


def test_load_cifar100_npz_without_coarse(tmp_path):
    _write_npz(tmp_path / "fine.npz", coarse=None, coarse_classes=None)
    data = load_cifar100(tmp_path / "fine.npz")
    assert data.coarse_labels is None and data.coarse_names is None


@pytest.mark.parametrize("overrides, message", [
    ({"y": None}, r"missing array\(s\) \['y'\]"),
    ({"classes": None, "x": None}, r"missing array\(s\) \['x', 'classes'\]"),
    ({"coarse_classes": None}, "stored together"),
    ({"x": np.zeros((8, 32, 32), np.uint8)}, "NHWC"),
    ({"y": np.full(8, 7)}, "labels must lie in 0..3"),
])
def test_load_cifar100_npz_bad_content(tmp_path, overrides, message):
    path = tmp_path / "bad.npz"
    _write_npz(path, **overrides)
    with pytest.raises(ValueError, match=message) as info:
        load_cifar100(path)
    assert str(path) in str(info.value)


def test_load_cifar100_npz_truncated_or_junk(tmp_path):
    good = tmp_path / "good.npz"
    _write_npz(good)
    raw = good.read_bytes()
    for name, content in [("truncated.npz", raw[: len(raw) // 2]), ("junk.npz", b"not a zip file at all"),
                          ("empty.npz", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match="corrupted or unreadable") as info:
            load_cifar100(path)
        assert str(path) in str(info.value)


def test_load_cifar100_single_npy_is_not_an_archive(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match="single.npz.*not an .npz archive"):
        load_cifar100(path)


def test_load_cifar100_npz_refuses_object_arrays(tmp_path):
    path = tmp_path / "objects.npz"
    _write_npz(path, classes=np.array(list(FINE), dtype=object))
    with pytest.raises(ValueError, match="objects.npz"):
        load_cifar100(path)


# --------------------------------------------------------------------------- CIFAR-100 official pickles


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2 did for the official CIFAR files: str as byte strings,
    numpy globals under ``numpy.core``; loaded with encoding="bytes", text comes back as bytes."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_byte_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_byte_string
    dispatch[bytes] = _save_byte_string

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[type] = save_global


def _dump(obj, path, protocol):
    if protocol == "py2":
        buf = io.BytesIO()
        Py2Pickler(buf, protocol=2).dump(obj)
        path.write_bytes(buf.getvalue())
    else:
        path.write_bytes(pickle.dumps(obj, protocol=protocol))


def _official_batch(n, seed):
    """A batch dict like the official files: rows are R (1024), G (1024), B (1024) planes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072).copy()
    fine = [int(v) for v in rng.integers(0, len(FINE), n)]
    batch = {b"filenames": [b"img_%d.png" % i for i in range(n)], b"batch_label": b"training batch 1 of 1",
             b"fine_labels": fine, b"coarse_labels": [f % len(COARSE) for f in fine], b"data": data}
    return batch, images


def _write_official(root, protocol="py2", n_train=6, n_test=4):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {b"fine_label_names": [n.encode() for n in FINE], b"coarse_label_names": [n.encode() for n in COARSE]}
    _dump(meta, folder / "meta", protocol)
    expected = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        batch, images = _official_batch(n, seed)
        _dump(batch, folder / split, protocol)
        expected[split] = (images, batch)
    return folder, expected


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_cifar100_official_layout(tmp_path, protocol, split):
    folder, expected = _write_official(tmp_path, protocol)
    images, batch = expected[split]
    for path in (tmp_path, folder):
        data = load_cifar100(path, split=split)
        assert data.images.shape == (len(images), 32, 32, 3) and data.images.dtype == np.uint8
        assert data.images.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.labels, batch[b"fine_labels"])
        np.testing.assert_array_equal(data.coarse_labels, batch[b"coarse_labels"])
        assert data.labels.dtype == np.int64
        assert data.class_names == FINE and data.coarse_names == COARSE


def test_official_pixel_layout_is_chw_rows(tmp_path):
    folder, _ = _write_official(tmp_path)
    data = np.zeros((1, 3072), np.uint8)
    data[0, 0] = 10        # red, row 0, col 0
    data[0, 1024 + 33] = 20  # green, row 1, col 1
    data[0, 2048 + 1023] = 30  # blue, row 31, col 31
    _dump({b"data": data, b"fine_labels": [1], b"coarse_labels": [2]}, folder / "train", "py2")
    image = load_cifar100(folder).images[0]
    assert image[0, 0, 0] == 10 and image[1, 1, 1] == 20 and image[31, 31, 2] == 30
    assert image.sum() == 60


def test_official_layout_corrupted(tmp_path):
    folder, _ = _write_official(tmp_path)
    raw = (folder / "train").read_bytes()
    (folder / "train").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cannot read the pickle") as info:
        load_cifar100(tmp_path)
    assert str(folder / "train") in str(info.value)

    _dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, folder / "train", "py2")
    with pytest.raises(ValueError, match=r"missing entries \['coarse_labels'\]"):
        load_cifar100(tmp_path)

    _dump({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1], b"coarse_labels": [0, 1]},
          folder / "train", "py2")
    with pytest.raises(ValueError, match=r"shape \(n, 3072\)"):
        load_cifar100(tmp_path)

    _dump([1, 2, 3], folder / "train", "py2")
    with pytest.raises(ValueError, match="expected a pickled dict"):
        load_cifar100(tmp_path)


class _Payload:
    """Unpickling this calls ``func(*args)`` (the classic pickle attack)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("name", ["os.system", "builtins.exec"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, name, protocol):
    folder, _ = _write_official(tmp_path)
    marker = tmp_path / "pwned"
    batch = {b"data": _payloads(marker)[name], b"fine_labels": [0], b"coarse_labels": [0]}
    (folder / "train").write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(ValueError, match=r"forbidden global (posix|nt|os|builtins|__builtin__)\.(system|exec)") as info:
        load_cifar100(tmp_path)
    assert str(folder / "train") in str(info.value)
    assert not marker.exists()


def test_the_malicious_payload_is_real(tmp_path):
    """Control: a plain unpickler does run the payload, so the refusal above is meaningful."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_payloads(marker)["builtins.exec"]))
    assert marker.exists()


# --------------------------------------------------------------------------- Fashion-MNIST (IDX)


def _idx_bytes(array, code=0x08):
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    return bytes([0, 0, code, array.ndim]) + dims + array.astype(dtype).tobytes()


def _write_fmnist(folder, n_train=5, n_test=3, gz=True, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    expected = {}
    for prefix, split, n in (("train", "train", n_train), ("t10k", "test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for kind, array, dim in (("images", images, 3), ("labels", labels, 1)):
            raw = _idx_bytes(array)
            name = f"{prefix}-{kind}-idx{dim}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        expected[split] = (images, labels)
    return expected


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_fashion_mnist(tmp_path, gz, split):
    expected = _write_fmnist(tmp_path, gz=gz)
    data = load_fashion_mnist(tmp_path, split=split)
    images, labels = expected[split]
    assert data.images.shape == (len(images), 28, 28, 1) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[..., 0], images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.labels.dtype == np.int64
    assert data.class_names == FASHION_MNIST_CLASSES and len(data.class_names) == 10
    assert data.coarse_labels is None


def test_load_fashion_mnist_torchvision_raw_layout(tmp_path):
    expected = _write_fmnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    np.testing.assert_array_equal(load_fashion_mnist(tmp_path).labels, expected["train"][1])


def test_fashion_mnist_wrong_magic(tmp_path):
    _write_fmnist(tmp_path)
    labels = (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(labels)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: wrong IDX magic number 0x00000801"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_truncated_idx(tmp_path):
    _write_fmnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: truncated IDX data"):
        load_fashion_mnist(tmp_path)
    path.write_bytes(raw[:10])
    with pytest.raises(ValueError, match="truncated IDX header"):
        load_fashion_mnist(tmp_path)
    path.write_bytes(raw + b"extra")
    with pytest.raises(ValueError, match="too long"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_truncated_gzip(tmp_path):
    _write_fmnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: corrupted or truncated gzip"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_count_mismatch_and_missing(tmp_path):
    _write_fmnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(ValueError, match="holds 5 images but .*train-labels-idx1-ubyte.gz holds 4 labels"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="no file t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path, split="test")
    with pytest.raises(ValueError, match="does not exist"):
        load_fashion_mnist(tmp_path / "missing")


def test_read_idx_other_dtypes(tmp_path):
    array = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    path = tmp_path / "ints.idx"
    path.write_bytes(_idx_bytes(array, code=0x0C))
    out = read_idx(path)
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.int32 and out.dtype.isnative
    path.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


# --------------------------------------------------------------------------- digits


def test_load_digits_images():
    from sklearn.datasets import load_digits

    data = load_digits_images()
    assert data.images.shape == (1797, 8, 8, 1) and data.images.dtype == np.uint8
    assert data.images.min() == 0 and data.images.max() == 255
    assert data.class_names == tuple("0123456789")
    np.testing.assert_array_equal(data.labels, load_digits().target)
    np.testing.assert_allclose(data.images[..., 0] / 255 * 16, load_digits().images, atol=16 / 255)


# --------------------------------------------------------------------------- real data (skipped when absent)


def test_default_cifar100_path_honours_env(tmp_path, monkeypatch):
    _write_npz(tmp_path / "mine.npz")
    monkeypatch.setenv("METAPRUNE_CIFAR100", str(tmp_path / "mine.npz"))
    assert default_cifar100_path() == (tmp_path / "mine.npz").resolve()
    monkeypatch.setenv("METAPRUNE_CIFAR100", str(tmp_path / "absent.npz"))
    with pytest.warns(UserWarning, match="does not exist"):
        path = default_cifar100_path()
    assert path is None or path.name == "train.npz"


def test_real_cifar100_train_npz(monkeypatch):
    monkeypatch.delenv("METAPRUNE_CIFAR100", raising=False)
    path = default_cifar100_path()
    if path is None:
        pytest.skip("the shared CIFAR-100 copy ../shared/data/cifar100/train.npz is absent")
    data = load_cifar100(path)
    assert data.images.shape == (50000, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.n_classes == 100 and len(data.coarse_names) == 20
    assert data.class_names[0] == "apple" and data.class_names[99] == "worm"
    np.testing.assert_array_equal(np.bincount(data.labels, minlength=100), np.full(100, 500))
    # the standard fine-to-coarse map is a function: every fine class has one superclass
    pairs = np.unique(np.stack([data.labels, data.coarse_labels]), axis=1)
    assert pairs.shape[1] == 100
    assert data.coarse_names[data.coarse_labels[data.labels == 0][0]] == "fruit_and_vegetables"
    mean = data.images[:5000].reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(mean, (0.507, 0.487, 0.441), atol=0.02)


def test_real_fashion_mnist_debian_package():
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    train = load_fashion_mnist()
    test = load_fashion_mnist(split="test")
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(train.labels), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(test.labels), np.full(10, 1000))
    np.testing.assert_array_equal(train.labels[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    assert train.class_names[9] == "Ankle boot"
