"""Image data sets as plain arrays: CIFAR-100, Fashion-MNIST, image folders, scikit-learn digits.

Every loader returns an :class:`ImageDataset`: ``uint8`` images in NHWC layout, ``int64``
labels whose values are *global* class ids (index into ``class_names``), and optionally the
coarse labels of a two-level label set (CIFAR-100's superclasses). Tasks
(:mod:`metaprune.data.tasks`) index into these arrays; :class:`metaprune.data.preprocessing.ImageToTensor`
turns them into the float NCHW tensors the estimators take.

Nothing is unpickled freely: the official CIFAR-100 files are Python pickles, and they are
read with :class:`RestrictedUnpickler`, which resolves only inert stand-ins for the few numpy
globals an array needs, builds plain numeric arrays itself, and refuses every other global (a
pickle from an untrusted source can neither run code nor forge objects).
Corrupted or truncated files raise a :class:`ValueError` that names the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""File extensions :func:`load_image_folder` reads (case-insensitive)."""

CIFAR100_ENV_VAR = "METAPRUNE_CIFAR100"
_SPLITS = ("train", "test")


# --------------------------------------------------------------------------------------
# The container
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """Images with global class labels, as plain numpy arrays.

    Parameters
    ----------
    images : ndarray of uint8, shape (n_images, height, width, channels)
        Pixel values 0..255, NHWC layout.
    labels : array-like of int, shape (n_images,)
        Class id of every image, ``0 <= label < len(class_names)``; stored as ``int64``.
    class_names : sequence of str
        Name of every class, index = label.
    coarse_labels : array-like of int, shape (n_images,), optional
        Superclass id of every image (CIFAR-100's 20 superclasses), stored as ``int64``.
    coarse_names : sequence of str, optional
        Name of every superclass; given if and only if ``coarse_labels`` is.

    Attributes
    ----------
    n_classes : int
        ``len(class_names)``.
    image_shape : tuple of int
        ``(height, width, channels)``.

    Examples
    --------
    >>> from metaprune.data.loaders import load_digits_images
    >>> data = load_digits_images()
    >>> data.images.shape, data.labels.dtype.name, data.class_names[:3]
    ((1797, 8, 8, 1), 'int64', ('0', '1', '2'))
    >>> len(data.subset(data.labels == 3))
    183
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple
    coarse_labels: np.ndarray | None = None
    coarse_names: tuple | None = None

    def __post_init__(self):
        images = self.images
        if not isinstance(images, np.ndarray):
            raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                "images must be a uint8 array of shape (n_images, height, width, channels) (NHWC), "
                f"got dtype {images.dtype} and shape {images.shape}"
            )
        class_names = _as_names(self.class_names, "class_names")
        labels = _as_labels(self.labels, len(images), len(class_names), "labels")
        object.__setattr__(self, "class_names", class_names)
        object.__setattr__(self, "labels", labels)
        if (self.coarse_labels is None) != (self.coarse_names is None):
            raise ValueError("coarse_labels and coarse_names must be given together (or both be None)")
        if self.coarse_labels is not None:
            coarse_names = _as_names(self.coarse_names, "coarse_names")
            coarse = _as_labels(self.coarse_labels, len(images), len(coarse_names), "coarse_labels")
            object.__setattr__(self, "coarse_names", coarse_names)
            object.__setattr__(self, "coarse_labels", coarse)

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        coarse = "" if self.coarse_names is None else f", n_coarse={len(self.coarse_names)}"
        return (f"ImageDataset(n_images={len(self)}, image_shape={self.image_shape}, "
                f"n_classes={self.n_classes}{coarse})")

    @property
    def n_classes(self):
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def image_shape(self):
        """Shape ``(height, width, channels)`` of one image."""
        return tuple(int(s) for s in self.images.shape[1:])

    def subset(self, index):
        """Return the images selected by ``index``, with the same (global) class names.

        Parameters
        ----------
        index : array-like of int or bool, or slice
            Positions (or a boolean mask of length ``len(self)``) of the images to keep.

        Returns
        -------
        ImageDataset
            A new data set; labels keep their global values, so a subset of a few classes
            still uses the full ``class_names``.
        """
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool:
                if index.shape != (len(self),):
                    raise ValueError(f"a boolean index must have shape ({len(self)},), got {index.shape}")
            elif index.size and not np.issubdtype(index.dtype, np.integer):
                raise ValueError(f"index must hold integers or booleans, got dtype {index.dtype}")
            elif index.ndim != 1:
                raise ValueError(f"index must be 1-D, got shape {index.shape}")
            else:
                index = index.astype(np.int64)
        coarse = None if self.coarse_labels is None else self.coarse_labels[index]
        return ImageDataset(self.images[index], self.labels[index], self.class_names,
                            coarse, self.coarse_names)


def _as_names(names, what):
    """Return ``names`` as a tuple of str, or raise a ValueError."""
    if isinstance(names, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of names, not a single string")
    names = tuple(names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{what} must be a non-empty sequence of str")
    return names


def _as_labels(labels, n_images, n_classes, what):
    """Return ``labels`` as a 1-D int64 array of valid class ids, or raise a ValueError."""
    labels = np.asarray(labels)
    if labels.shape != (n_images,):
        raise ValueError(f"{what} must have shape ({n_images},) to match the images, got {labels.shape}")
    if n_images and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    if n_images and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{what} must lie in 0..{n_classes - 1} (one per name), got {labels.min()}..{labels.max()}"
        )
    return labels


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
    repo_root = Path(__file__).resolve().parent.parent
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
    arrays = _read_npz(path, required=("x", "y", "classes"), optional=("coarse", "coarse_classes"))
    if ("coarse" in arrays) != ("coarse_classes" in arrays):
        raise ValueError(f"{path}: arrays 'coarse' and 'coarse_classes' must be stored together")
    return _make_dataset(
        path, arrays["x"], arrays["y"], _names(arrays["classes"], path, "classes"),
        arrays.get("coarse"),
        None if "coarse_classes" not in arrays else _names(arrays["coarse_classes"], path, "coarse_classes"),
    )


def _read_npz(path, required, optional=()):
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
    meta = _load_pickle_dict(folder / "meta", ("fine_label_names", "coarse_label_names"))
    data_path = folder / split
    batch = _load_pickle_dict(data_path, ("data", "fine_labels", "coarse_labels"))
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


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for data pickles that can neither run code nor forge numpy objects.

    Plain containers (dict, list, tuple, str, bytes, int, float...) need no globals, or (for
    old protocols) only the builtin types ``set``, ``frozenset``, ``bytes``, ``bytearray``
    and ``complex``, which are resolved. The only other globals resolved are the names
    numpy's own pickles of plain numeric arrays and scalars use (``numpy.core.multiarray._reconstruct``,
    ``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray.scalar``,
    ``numpy.core.numeric._frombuffer``, under ``numpy._core`` as well, and ``_codecs.encode``
    for Python 3 pickles of bytes); any other global (``os.system``, ``builtins.exec``...)
    makes :meth:`find_class` raise :class:`pickle.UnpicklingError` before anything is called.

    Even the numpy names do not resolve to numpy itself: ``numpy.ndarray(shape, "O", buffer)``
    would build an object array from raw bytes, i.e. forged pointers. They resolve to inert
    stand-ins that only record what the stream describes; :meth:`load` then builds each array
    with :func:`numpy.frombuffer`, after checking that its dtype is a plain boolean, integer,
    float or complex type (no objects, no structured types) and that the byte count matches
    its shape.

    Parameters
    ----------
    file : binary file object
        The pickle stream.
    **kwargs
        Passed to :class:`pickle.Unpickler` (e.g. ``encoding="bytes"`` for Python 2 pickles
        such as the official CIFAR-100 files).

    Examples
    --------
    >>> import io, pickle, numpy as np
    >>> data = pickle.dumps({"x": np.arange(3, dtype=np.uint8)})
    >>> RestrictedUnpickler(io.BytesIO(data)).load()["x"]
    array([0, 1, 2], dtype=uint8)
    """

    def find_class(self, module, name):
        """Return the stand-in of the allowed global ``module.name``; refuse every other one."""
        obj = _PICKLE_GLOBALS.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name}: only numeric numpy array data may be unpickled"
            )
        return obj

    def persistent_load(self, pid):
        """Refuse persistent ids: a data pickle has none."""
        raise pickle.UnpicklingError("forbidden persistent id in a data pickle")

    def load(self):
        """Read the stream and return its data, with numpy arrays and scalars built safely."""
        return _materialise(super().load(), {})


def _text(value):
    """A str from a pickled str or (Python 2, ``encoding="bytes"``) byte string."""
    return value.decode("latin1") if isinstance(value, (bytes, bytearray)) else value


def _raw_bytes(value):
    """The raw data of an array or scalar: bytes, or a latin-1 str (``encoding="latin1"``)."""
    if isinstance(value, str):
        return value.encode("latin1")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise pickle.UnpicklingError(f"array data must be bytes, got {type(value).__name__}")


class _NdarrayMarker:
    """Stands for ``numpy.ndarray``: only passed to ``_reconstruct``, never callable."""

    __slots__ = ()


class _DtypeStub:
    """What ``numpy.dtype(spec, align, copy)`` plus its ``__setstate__`` describe."""

    __slots__ = ("spec", "byteorder")

    def __init__(self, spec, align=False, copy=False):
        self.spec, self.byteorder = _text(spec), "="

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 5 or any(v is not None for v in state[2:5]):
            raise pickle.UnpicklingError("only plain numeric numpy dtypes may be unpickled "
                                         "(no sub-arrays or structured types)")
        self.byteorder = _text(state[1])

    def resolve(self):
        """The numpy dtype, if it is a plain numeric one."""
        spec, order = self.spec, self.byteorder
        if not isinstance(spec, str) or not re.fullmatch(r"[biufc]\d{1,2}", spec) or order not in ("<", ">", "=", "|"):
            raise pickle.UnpicklingError(f"only plain numeric numpy dtypes may be unpickled, got {spec!r}")
        dtype = np.dtype(spec)
        return dtype.newbyteorder(order) if order in "<>" else dtype


class _ArrayStub:
    """An array as ``_reconstruct`` + ``__setstate__`` (or ``_frombuffer``) describe it."""

    __slots__ = ("shape", "dtype", "fortran", "raw")

    def __init__(self, shape=None, dtype=None, fortran=False, raw=None):
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, fortran, raw

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        self.shape, self.dtype, self.fortran, self.raw = state[-4:]

    def build(self):
        """A new writable array from the recorded raw bytes."""
        if not isinstance(self.dtype, _DtypeStub):
            raise pickle.UnpicklingError("numpy array without a dtype in the pickle")
        dtype = self.dtype.resolve()
        shape = self.shape
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise pickle.UnpicklingError(f"malformed numpy array shape {shape!r}")
        raw = _raw_bytes(self.raw)
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise pickle.UnpicklingError(f"numpy array data of {len(raw)} bytes does not fit shape {shape} "
                                         f"of {dtype}")
        order = "F" if self.fortran in (True, 1, "F", b"F") else "C"
        return np.frombuffer(raw, dtype).reshape(shape, order=order).copy(order="K")


class _ScalarStub:
    """A numpy scalar as ``numpy.core.multiarray.scalar(dtype, raw)`` describes it."""

    __slots__ = ("dtype", "raw")

    def __init__(self, dtype, raw):
        self.dtype, self.raw = dtype, raw

    def build(self):
        """The numpy scalar."""
        return _ArrayStub((), self.dtype, False, self.raw).build()[()]


class _ReconstructCall:
    """Stands for ``numpy.core.multiarray._reconstruct(numpy.ndarray, shape, typecode)``."""

    __slots__ = ()

    def __call__(self, subtype, shape, typecode):
        if not isinstance(subtype, _NdarrayMarker):
            raise pickle.UnpicklingError("_reconstruct may only rebuild a plain numpy.ndarray")
        return _ArrayStub()


class _DtypeCall:
    """Stands for ``numpy.dtype``."""

    __slots__ = ()

    def __call__(self, spec, align=False, copy=False):
        return _DtypeStub(spec)


class _ScalarCall:
    """Stands for ``numpy.core.multiarray.scalar``."""

    __slots__ = ()

    def __call__(self, dtype, raw=None):
        return _ScalarStub(dtype, raw)


class _FrombufferCall:
    """Stands for ``numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`` (protocol 5)."""

    __slots__ = ()

    def __call__(self, buffer, dtype, shape, order="C"):
        return _ArrayStub(shape, dtype, _text(order) == "F", buffer)


def _pickle_globals():
    """The stand-ins :class:`RestrictedUnpickler` resolves, keyed by (module, name)."""
    allowed = {("numpy", "ndarray"): _NdarrayMarker(), ("numpy", "dtype"): _DtypeCall(),
               # Python 3 pickles of bytes with protocol < 3 call _codecs.encode(text, "latin1");
               # str.encode does that for text codecs only and has no state a stream could alter
               ("_codecs", "encode"): str.encode}
    for module in ("builtins", "__builtin__"):  # containers that protocols < 4 build by calling the type
        for kind in (set, frozenset, bytes, bytearray, complex):
            allowed[(module, kind.__name__)] = kind
    for package in ("numpy.core", "numpy._core"):  # pickles written by numpy 1 and numpy 2
        allowed[(f"{package}.multiarray", "_reconstruct")] = _ReconstructCall()
        allowed[(f"{package}.multiarray", "scalar")] = _ScalarCall()
        allowed[(f"{package}.numeric", "_frombuffer")] = _FrombufferCall()
    return allowed


_PICKLE_GLOBALS = _pickle_globals()


def _materialise(obj, memo):
    """Replace the stand-ins in unpickled data by real numpy arrays, scalars and dtypes."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, (_ArrayStub, _ScalarStub)):
        out = obj.build()
    elif isinstance(obj, _DtypeStub):
        out = obj.resolve()
    elif isinstance(obj, (_NdarrayMarker, _ReconstructCall, _DtypeCall, _ScalarCall, _FrombufferCall)):
        raise pickle.UnpicklingError("a bare numpy global is not data")
    elif isinstance(obj, dict):
        out = memo[key] = {}
        out.update((_materialise(k, memo), _materialise(v, memo)) for k, v in obj.items())
    elif isinstance(obj, list):
        out = memo[key] = []
        out.extend(_materialise(v, memo) for v in obj)
    elif isinstance(obj, (tuple, set, frozenset)):
        out = type(obj)(_materialise(v, memo) for v in obj)
    else:
        out = obj
    memo[key] = out
    return out


def _load_pickle_dict(path, required):
    """Load a dict pickle with :class:`RestrictedUnpickler`; keys are returned as str."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # any failure of a hostile or broken stream
        raise ValueError(f"{path}: cannot read the pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [key for key in required if key not in obj]
    if missing:
        raise ValueError(f"{path}: missing entries {missing}; the pickle holds {sorted(map(str, obj))}")
    return obj


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
# Image folders and scikit-learn digits
# --------------------------------------------------------------------------------------


def _as_size(image_size):
    """Return ``image_size`` (int or (h, w)) as a (h, w) tuple of positive ints, or None."""
    if image_size is None:
        return None
    size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(f"image_size must be a positive int or a (height, width) pair, got {image_size!r}")
    return int(size[0]), int(size[1])


def _list_image_folder(root):
    """Return the sorted class names and, per class, its sorted image files."""
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"image folder {root} has no class sub-folders (expected root/class_name/image.png)")
    files = {d.name: sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
             for d in class_dirs}
    empty = [name for name, found in files.items() if not found]
    if empty:
        raise ValueError(f"image folder {root}: class folder(s) {empty} hold no images "
                         f"with an extension in {IMAGE_EXTENSIONS}")
    return [d.name for d in class_dirs], files


def _read_image(path, size):
    """Read one image file as an RGB uint8 (H, W, 3) array, resized to ``size`` = (h, w) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from exc


def load_image_folder(root, image_size=None):
    """Load an image-folder tree ``root/class_name/*.png`` (torchvision's ImageFolder layout).

    Parameters
    ----------
    root : str or path-like
        Folder with one sub-folder per class; images may lie deeper inside a class folder.
        Class ids follow the sorted sub-folder names.
    image_size : int or (int, int), optional
        Resize every image to ``(image_size, image_size)`` or ``(height, width)``
        (bilinear). Without it, all images must already have the same size.

    Returns
    -------
    ImageDataset
        RGB images (N, H, W, 3) uint8, in class order then sorted file order.

    Raises
    ------
    ValueError
        If the folder has no class folders, a class folder holds no images, an image cannot
        be decoded, or images differ in size and ``image_size`` is not given.
    """
    root = Path(root).expanduser()
    size = _as_size(image_size)
    class_names, files = _list_image_folder(root)
    images, labels = [], []
    for label, name in enumerate(class_names):
        for path in files[name]:
            image = _read_image(path, size)
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"{path} is {image.shape[1]}x{image.shape[0]} (WxH) but earlier images are "
                    f"{images[0].shape[1]}x{images[0].shape[0]}; pass image_size to resize them all"
                )
            images.append(image)
            labels.append(label)
    return ImageDataset(np.stack(images), np.asarray(labels, dtype=np.int64), class_names)


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
