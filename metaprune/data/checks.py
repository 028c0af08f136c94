"""Input checks shared by the estimators: clear errors for bad images and labels."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

from .batches import image_array, tensor_to_numpy

__all__ = ["as_array", "check_images", "check_labels", "check_input_shape", "check_device"]

# Largest image side accepted in a stored input shape (a sanity bound for damaged files).
MAX_IMAGE_SIDE = 2**16


def as_array(X):
    """NumPy view of array-likes and tensors; sparse matrices pass through (check_array rejects them)."""
    if isinstance(X, torch.Tensor):
        return tensor_to_numpy(X)
    if sp.issparse(X):
        return X
    return np.asarray(X)


def check_images(X, in_channels: int | None = None, input_shape=None, min_samples: int = 1) -> np.ndarray:
    """Return ``X`` as a float32 C-contiguous array of shape (n, C, H, W), or raise a clear error.

    This is the input boundary of every estimator: whatever the layout of ``X`` (C or
    Fortran order, a channels-last view such as ``images_nhwc.transpose(0, 3, 1, 2)``,
    negative strides, a read-only array or memmap, float16/float64, a tensor), the result
    is a plain, writable, C-ordered float32 array, so no kernel sees other strides
    (see :mod:`metaprune.data.batches`).

    Parameters
    ----------
    X : array-like or torch.Tensor
        Images (n, C, H, W), or flattened rows (n, C*H*W) together with ``input_shape``.
    in_channels : int, optional
        Channels the network expects.
    input_shape : tuple of 3 int, optional
        Shape (C, H, W) that flattened rows are reshaped to; one entry may be -1.
    min_samples : int
        Fewest images accepted.

    Raises
    ------
    ValueError
        Wrong rank or channels, NaN or infinity, complex or non-numeric values, too few
        samples. Sparse input raises ``TypeError``.
    """
    X = as_array(X)
    if X.ndim == 1:
        raise ValueError(f"X must have shape (n_samples, C, H, W) or (n_samples, n_features), got a 1-D array "
                         f"of shape {np.shape(X)}. Reshape your data, e.g. X.reshape(1, -1) for a single sample.")
    X = check_array(X, accept_sparse=False, dtype=np.float32, allow_nd=True, ensure_all_finite=True,
                    ensure_min_samples=min_samples, ensure_min_features=1, input_name="X")
    if X.ndim == 2:
        if input_shape is None:
            raise ValueError(f"X is 2-D with shape {X.shape}; pass input_shape=(C, H, W) to reshape flattened images")
        try:
            X = X.reshape((X.shape[0], *input_shape))
        except ValueError:
            raise ValueError(f"cannot reshape rows of {X.shape[1]} features to input_shape={tuple(input_shape)}") from None
    if X.ndim != 4:
        raise ValueError(f"X must have shape (n_samples, C, H, W), got an array of shape {X.shape}")
    if in_channels is not None and X.shape[1] != in_channels:
        hint = " (uint8 NHWC images? use metaprune.data.preprocessing.ImageToTensor first)" if X.shape[-1] == in_channels else ""
        raise ValueError(f"X has {X.shape[1]} channels but the network expects {in_channels}{hint}")
    return image_array(X)


def check_labels(y, n_samples: int, min_classes: int = 2):
    """Validate class labels; return ``(classes, encoded)`` with ``encoded`` int64 in [0, n_classes)."""
    if y is None:
        raise ValueError("this estimator requires y to be passed, but the target y is None")
    y = column_or_1d(y, warn=True)
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} samples but y has {len(y)} labels")
    check_classification_targets(y)
    classes, encoded = np.unique(y, return_inverse=True)
    if len(classes) < min_classes:
        raise ValueError(f"a task needs at least {min_classes} classes; y has {len(classes)}: {classes.tolist()}")
    return classes, encoded.astype(np.int64)


def check_input_shape(shape, in_channels: int | None = None) -> tuple:
    """``shape`` as a tuple of 3 positive ints (C, H, W), or raise a clear ValueError.

    Parameters
    ----------
    shape : sequence of int
        Image shape (C, H, W), e.g. read from a file.
    in_channels : int, optional
        Channels the network expects; ``C`` must equal it.

    Returns
    -------
    tuple of 3 int

    Raises
    ------
    ValueError
        If ``shape`` is not 3 ints (bools and floats are not ints), an entry is not positive
        or a side exceeds 65536 pixels, or ``C`` differs from ``in_channels``.

    Examples
    --------
    >>> check_input_shape([1, 8, 8], in_channels=1)
    (1, 8, 8)
    """
    try:
        values = tuple(shape)
    except TypeError:
        values = None
    if (isinstance(shape, (str, bytes)) or values is None or len(values) != 3
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)) and 0 < s
                       for s in values)):
        text = repr(shape)
        raise ValueError(f"input_shape must be 3 positive ints (C, H, W), got {text[:60]}")
    values = tuple(int(s) for s in values)
    if max(values) > MAX_IMAGE_SIDE:
        raise ValueError(f"input_shape {values}: at most {MAX_IMAGE_SIDE} channels or pixels a side")
    if in_channels is not None and values[0] != in_channels:
        raise ValueError(f"input_shape {values} has {values[0]} channels but the network expects "
                         f"{in_channels}")
    return values


def check_device(device) -> torch.device:
    """``device`` as a :class:`torch.device` that exists on this machine, or raise a clear ValueError.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` ...

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        For a string that names no torch device, a device type metaprune does not run on
        (``meta`` ...), or a device this machine does not have (CUDA without a GPU, an index
        beyond the GPUs present).

    Examples
    --------
    >>> check_device("cpu")
    device(type='cpu')
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}: expected cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return parsed
    backend = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None),
               "xpu": getattr(torch, "xpu", None)}.get(parsed.type)
    if backend is None:
        raise ValueError(f"device {device!r}: metaprune runs on cpu, cuda or mps, not {parsed.type}")
    if not backend.is_available():
        raise ValueError(f"device {device!r}: no {parsed.type} device is available on this machine "
                         f"(use cpu)")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if parsed.index is not None and parsed.index >= count:
        raise ValueError(f"device {device!r}: this machine has {count} {parsed.type} device(s)")
    return parsed
