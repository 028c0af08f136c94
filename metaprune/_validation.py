"""Input checks shared by the estimators: clear errors for bad images and labels."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

from .batches import image_array, tensor_to_numpy

__all__ = ["as_array", "check_images", "check_labels"]


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
    (see :mod:`metaprune.batches`).

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
        hint = " (uint8 NHWC images? use metaprune.preprocessing.ImageToTensor first)" if X.shape[-1] == in_channels else ""
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
