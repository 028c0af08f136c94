"""A restricted unpickler for data pickles (the official CIFAR-100 files) that runs no code.

Nothing is unpickled freely: :class:`RestrictedUnpickler` resolves only inert stand-ins for
the few numpy globals an array needs, builds plain numeric arrays itself, and refuses every
other global, so a pickle from an untrusted source can neither run code nor forge objects.
:func:`load_pickle_dict` reads a whole pickled dict with it, turning every failure into a
:class:`ValueError` that names the file.
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np

__all__ = ["RestrictedUnpickler", "load_pickle_dict"]


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


def load_pickle_dict(path, required=()):
    """Load a pickled dict with :class:`RestrictedUnpickler`; byte-string keys are returned as str.

    Parameters
    ----------
    path : str or path-like
        The pickle file (read with ``encoding="bytes"``, as Python 2 pickles need).
    required : iterable of str, default=()
        Keys the dict must hold.

    Returns
    -------
    dict
        The unpickled dict, its ``bytes`` keys decoded as latin-1.

    Raises
    ------
    ValueError
        Naming the file, if it cannot be read or unpickled (a forbidden global, a non-numeric
        numpy object, a truncated or damaged stream), is not a dict, or misses a required key.
    """
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
