"""Image data sets as plain arrays: CIFAR-100, Fashion-MNIST, scikit-learn digits (and image folders).

Every loader returns an :class:`~metaprune.data.image_dataset.ImageDataset`: ``uint8`` images
in NHWC layout, ``int64`` labels whose values are *global* class ids (index into
``class_names``), and optionally the coarse labels of a two-level label set (CIFAR-100's
superclasses). Tasks (:mod:`metaprune.data.tasks`) index into these arrays;
:class:`metaprune.data.preprocessing.ImageToTensor` turns them into the float NCHW tensors the
estimators take.

Nothing is unpickled freely: the official CIFAR-100 files are Python pickles, and they are
read with :class:`~metaprune.data.unpickler.RestrictedUnpickler`, which resolves only inert
stand-ins for the few numpy globals an array needs, builds plain numeric arrays itself, and
refuses every other global (a pickle from an untrusted source can neither run code nor forge
objects). Corrupted or truncated files raise a :class:`ValueError` that names the file and the
problem.

The container (:mod:`metaprune.data.image_dataset`), the unpickler
(:mod:`metaprune.data.unpickler`) and the image-folder reader (:mod:`metaprune.data.image_folders`)
live in their own modules; every name of ``__all__`` also imports from here.
"""

from __future__ import annotations

import gzip
import math
import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .image_dataset import ImageDataset
from .image_folders import IMAGE_EXTENSIONS, load_image_folder
from .unpickler import RestrictedUnpickler, load_pickle_dict

__all__ = [
    "ImageDataset",
    "RestrictedUnpickler",
    "load_cifar100",
    "load_fashion_mnist",
    "load_image_folder",
    "load_digits_images",
    "default_cifar100_path",
    "read_idx",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "IMAGE_EXTENSIONS",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
"""The 10 Fashion-MNIST class names, index = label."""

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the four gzipped IDX files."""

CIFAR100_ENV_VAR = "METAPRUNE_CIFAR100"
_SPLITS = ("train", "test")


# --------------------------------------------------------------------------------------
# CIFAR-100
# --------------------------------------------------------------------------------------


def default_cifar100_path():
    """Find the project's offline CIFAR-100 copy.

    Looks, in order, at the path in the environment variable ``METAPRUNE_CIFAR100`` (an
    ``.npz`` file or a folder :func:`load_cifar100` reads), then at
    ``../shared/data/cifar100/train.npz`` relative to the current directory and relative to
    the repository root.

    Returns
    -------
    pathlib.Path or None
        The first candidate that exists, or None when there is none.
    """
    env = os.environ.get(CIFAR100_ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if path.exists():
            return path.resolve()
        warnings.warn(f"{CIFAR100_ENV_VAR}={env!r} does not exist; looking in the default places",
                      UserWarning, stacklevel=2)
    relative = Path("..", "shared", "data", "cifar100", "train.npz")
    repo_root = Path(__file__).resolve().parents[2]  # metaprune/data/loaders.py
    for base in (Path.cwd(), repo_root):
        if (base / relative).is_file():
            return (base / relative).resolve()
    return None


def load_cifar100(path, split="train"):
    """Load CIFAR-100 from an ``.npz`` file or the official ``cifar-100-python`` folder.

    Parameters
    ----------
    path : str or path-like
        One of

        - an ``.npz`` file with arrays ``x`` (uint8, NHWC), ``y`` (fine labels), ``classes``
          (fine names) and optionally ``coarse`` and ``coarse_classes`` (the layout of the
          project's ``shared/data/cifar100/train.npz``); read with ``allow_pickle=False``;
        - a folder holding ``train.npz`` / ``test.npz`` in that layout;
        - the official torchvision folder ``cifar-100-python/`` (pickles ``train``, ``test``,
          ``meta``), or the folder containing it. The pickles are read with
          :class:`RestrictedUnpickler`.
    split : {"train", "test"}
        Which split to read from a folder. For an ``.npz`` file it is only checked against
        the file name when that is ``train.npz`` or ``test.npz``.

    Returns
    -------
    ImageDataset
        Images (N, 32, 32, 3) uint8, the 100 fine labels and names, and the 20 coarse labels
        and names when the source has them.

    Raises
    ------
    ValueError
        If nothing readable is found at ``path``, or a file is corrupted, truncated, misses
        an array or entry, or (for the pickles) holds a forbidden global or a non-numeric
        numpy object.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    path = Path(path).expanduser()
    if path.is_file():
        stem = path.name[: -len(".npz")] if path.name.endswith(".npz") else None
        if stem in _SPLITS and stem != split:
            raise ValueError(f"{path} is the {stem!r} split, but split={split!r} was requested")
        return _load_cifar100_npz(path)
    if not path.is_dir():
        raise ValueError(f"CIFAR-100 path {path} does not exist")
    for folder in (path / "cifar-100-python", path):
        if (folder / "meta").is_file() and (folder / split).is_file():
            return _load_cifar100_pickles(folder, split)
    if (path / f"{split}.npz").is_file():
        return _load_cifar100_npz(path / f"{split}.npz")
    raise ValueError(
        f"no CIFAR-100 {split!r} split found in {path}: expected {split}.npz, or the official "
        f"files 'meta' and {split!r} in {path} or in {path / 'cifar-100-python'}"
    )


def _load_cifar100_npz(path):
    """Read the shared ``.npz`` layout (arrays x, y, classes, optional coarse, coarse_classes)."""
    arrays = read_npz(path, required=("x", "y", "classes"), optional=("coarse", "coarse_classes"))
    if ("coarse" in arrays) != ("coarse_classes" in arrays):
        raise ValueError(f"{path}: arrays 'coarse' and 'coarse_classes' must be stored together")
    return _make_dataset(
        path, arrays["x"], arrays["y"], _names(arrays["classes"], path, "classes"),
        arrays.get("coarse"),
        None if "coarse_classes" not in arrays else _names(arrays["coarse_classes"], path, "coarse_classes"),
    )


def read_npz(path, required, optional=()):
    """Return a dict of the named arrays of an ``.npz`` file, read without pickle."""
    try:
        with open(path, "rb") as f:  # our own handle, closed even when numpy fails half-way
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            files = sorted(npz.files)
            missing = [name for name in required if name not in files]
            arrays = {} if missing else {name: npz[name] for name in (*required, *optional) if name in files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise ValueError(f"{path}: corrupted or unreadable .npz file ({type(exc).__name__}: {exc})") from exc
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; the file holds {files}")
    return arrays


def _names(values, path, what):
    """Decode an array or list of class names (str or bytes) to a tuple of str."""
    try:
        values = list(values.ravel()) if isinstance(values, np.ndarray) else list(values)
        return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values)
    except (TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {what} must be a list of text names ({exc})") from exc


def _make_dataset(path, images, labels, class_names, coarse=None, coarse_names=None):
    """Build an :class:`ImageDataset`, prefixing any validation error with the file name."""
    try:
        return ImageDataset(images, labels, class_names, coarse, coarse_names)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _load_cifar100_pickles(folder, split):
    """Read the official ``cifar-100-python`` pickles of one split."""
    meta = load_pickle_dict(folder / "meta", ("fine_label_names", "coarse_label_names"))
    data_path = folder / split
    batch = load_pickle_dict(data_path, ("data", "fine_labels", "coarse_labels"))
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"{data_path}: 'data' must be a uint8 array of shape (n, 3072), got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}".rstrip()
        )
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return _make_dataset(
        data_path, images, _int_list(batch["fine_labels"], data_path, "fine_labels"),
        _names(meta["fine_label_names"], folder / "meta", "fine_label_names"),
        _int_list(batch["coarse_labels"], data_path, "coarse_labels"),
        _names(meta["coarse_label_names"], folder / "meta", "coarse_label_names"),
    )


def _int_list(values, path, what):
    """Return a list of labels as an int64 array, or raise a ValueError naming the entry."""
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{path}: {what!r} must be a flat list of integers, got {array.dtype} {array.shape}")
    return array.astype(np.int64)


# --------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# --------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801


def read_idx(path, expected_magic=None):
    """Read an IDX file (the MNIST format), gzipped or plain.

    Parameters
    ----------
    path : str or path-like
        The file; gzip compression is recognised by its content, not its name.
    expected_magic : int, optional
        If given, the 4-byte magic number the file must start with (``0x803`` for a 3-D
        ``uint8`` image file, ``0x801`` for a 1-D ``uint8`` label file).

    Returns
    -------
    ndarray
        The array, with the dimensions of the header, in native byte order.

    Raises
    ------
    ValueError
        If the file is not valid gzip, has a wrong magic number or dtype code, or is
        truncated or too long for the dimensions of its header.
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file: {len(raw)} bytes, shorter than the 4-byte magic number")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path}: wrong IDX magic number 0x{magic:08X} (expected 0x{expected_magic:08X}); "
            "is this the right file, and an IDX file at all?"
        )
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file (magic number 0x{magic:08X})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header: {len(raw)} bytes, the header needs {header}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        problem = "truncated" if len(raw) - header < expected else "too long"
        raise ValueError(
            f"{path}: {problem} IDX data: header says shape {shape} ({expected} bytes), "
            f"file holds {len(raw) - header} bytes after the header"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _read_maybe_gzip(path):
    """Return the bytes of ``path``, decompressed when it is a gzip file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file ({exc})") from exc
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupted or truncated gzip file ({type(exc).__name__}: {exc})") from exc


def _find_idx_file(folders, stem):
    """Return the first existing IDX file named like ``stem`` in ``folders``."""
    names = [stem, stem.replace("-idx", ".idx")]
    candidates = [folder / f"{name}{gz}" for folder in folders for name in names for gz in (".gz", "")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError(f"no file {stem}[.gz] found in {', '.join(map(str, folders))}")


def load_fashion_mnist(path=None, split="train"):
    """Load Fashion-MNIST from its four IDX files.

    Parameters
    ----------
    path : str or path-like, optional
        Folder holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (gzipped or not;
        torchvision's ``FashionMNIST/raw`` sub-folder is also searched). Defaults to
        :data:`FASHION_MNIST_DIR`, where the Debian package ``dataset-fashion-mnist`` puts them.
    split : {"train", "test"}
        ``"train"`` (60,000 images) or ``"test"`` (the ``t10k`` files, 10,000 images).

    Returns
    -------
    ImageDataset
        Images (N, 28, 28, 1) uint8 and the 10 labels named in :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    ValueError
        If a file is missing, not gzip/IDX, has a wrong magic number, is truncated, or the
        image and label counts differ.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    root = FASHION_MNIST_DIR if path is None else Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"Fashion-MNIST folder {root} does not exist "
                         "(on Debian: apt-get install dataset-fashion-mnist)")
    folders = [root, root / "FashionMNIST" / "raw", root / "raw"]
    prefix = "train" if split == "train" else "t10k"
    images_path = _find_idx_file(folders, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx_file(folders, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, _IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, _IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    return _make_dataset(labels_path, images[..., None], labels, FASHION_MNIST_CLASSES)


# --------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------


def load_digits_images():
    """scikit-learn's 8x8 handwritten digits as an :class:`ImageDataset` (no files needed).

    Returns
    -------
    ImageDataset
        1797 images (1797, 8, 8, 1) uint8, the 0..16 grey levels scaled to 0..255, and the
        classes ``"0"`` .. ``"9"``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ImageDataset(images, digits.target, tuple(str(c) for c in range(10)))
