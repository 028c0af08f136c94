"""Turn images into the float NCHW arrays the estimators take.

:class:`ImageToTensor` is a scikit-learn transformer, meant as the first step of a
:class:`~sklearn.pipeline.Pipeline`: the loaders of :mod:`metaprune.data.loaders` give ``uint8``
NHWC images, the pruners take ``float32`` arrays of shape (n, C, H, W).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

__all__ = ["ImageToTensor", "CIFAR100_MEAN", "CIFAR100_STD"]

CIFAR100_MEAN = (0.507, 0.487, 0.441)
"""Per-channel (RGB) mean of the CIFAR-100 training images, pixel values scaled to [0, 1]."""

CIFAR100_STD = (0.267, 0.256, 0.276)
"""Per-channel (RGB) standard deviation of the CIFAR-100 training images, scaled to [0, 1]."""

_CHUNK = 4096  # images per chunk when converting or computing statistics, to bound temporary memory
_TINY_STD = 10 * np.finfo(np.float32).eps  # a computed std below this is a constant channel


class ImageToTensor(TransformerMixin, BaseEstimator):
    """Convert images to float32 NCHW arrays scaled to [0, 1] and normalised per channel.

    Accepted inputs (``X``):

    - ``uint8`` array (n, H, W, C), NHWC, pixel values 0..255 (what the loaders return);
    - float array or torch tensor (n, C, H, W), NCHW, values already in [0, 1];
    - 2-D array (n, C*H*W) of flattened images in (C, H, W) order (``uint8`` 0..255 or
      float in [0, 1]), together with ``input_shape=(C, H, W)``.

    The output is ``(x / 255 - mean) / std`` (``uint8`` input) or ``(x - mean) / std`` (float
    input), as a C-contiguous ``float32`` array (n, C, H, W).

    Parameters
    ----------
    mean : "auto", None, float or sequence of float, default="auto"
        Per-channel mean subtracted after scaling. ``"auto"``: computed on the data passed to
        :meth:`fit`; None: nothing is subtracted; a scalar or a sequence of length C is used
        as given (e.g. :data:`CIFAR100_MEAN`).
    std : "auto", None, float or sequence of float, default="auto"
        Per-channel standard deviation divided by, with the same options. A channel whose
        computed standard deviation is 0 is divided by 1.
    input_shape : tuple of int (C, H, W), optional
        Shape of one image; one entry may be -1 (inferred). Required for flattened 2-D input;
        for 4-D input it is checked.

    Attributes
    ----------
    mean_ : ndarray of float32, shape (C,)
        The mean subtracted from every channel (zeros when ``mean=None``).
    std_ : ndarray of float32, shape (C,)
        The standard deviation every channel is divided by (ones when ``std=None``).
    n_channels_ : int
        Number of channels seen in :meth:`fit`; :meth:`transform` requires the same.
    image_shape_ : tuple of int
        ``(C, H, W)`` of the images seen in :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> from metaprune.data.preprocessing import ImageToTensor, CIFAR100_MEAN, CIFAR100_STD
    >>> images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    >>> X = ImageToTensor(mean=CIFAR100_MEAN, std=CIFAR100_STD).fit_transform(images)
    >>> X.shape, X.dtype.name
    ((2, 3, 32, 32), 'float32')
    """

    def __init__(self, mean="auto", std="auto", input_shape=None):
        self.mean = mean
        self.std = std
        self.input_shape = input_shape

    def fit(self, X, y=None):
        """Record the number of channels and compute ``"auto"`` statistics.

        Parameters
        ----------
        X : array-like
            Images, in one of the layouts of the class docstring.
        y : ignored
            Present for :class:`~sklearn.pipeline.Pipeline` compatibility.

        Returns
        -------
        self : ImageToTensor
            The fitted transformer.
        """
        images = self._as_nchw(X)
        n_channels = images.shape[1]
        auto_mean, auto_std = (None, None)
        if _is_auto(self.mean) or _is_auto(self.std):
            auto_mean, auto_std = _channel_stats(images)
        self.mean_ = _resolve_stat(self.mean, auto_mean, 0.0, n_channels, "mean")
        std = _resolve_stat(self.std, auto_std, 1.0, n_channels, "std")
        if _is_auto(self.std):
            std[std < _TINY_STD] = 1.0
        elif np.any(std <= 0):
            raise ValueError(f"std must be positive in every channel, got {std.tolist()}")
        self.std_ = std
        self.n_channels_ = n_channels
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        return self

    def transform(self, X):
        """Convert images to normalised float32 NCHW.

        Parameters
        ----------
        X : array-like
            Images, in one of the layouts of the class docstring, with the channel count
            seen in :meth:`fit`.

        Returns
        -------
        ndarray of float32, shape (n, C, H, W)
            The scaled and normalised images.
        """
        check_is_fitted(self, ("mean_", "std_"))
        images = self._as_nchw(X)
        if images.shape[1] != self.n_channels_:
            raise ValueError(f"X has {images.shape[1]} channels, but ImageToTensor was fitted "
                             f"with {self.n_channels_}")
        out = np.empty(images.shape, dtype=np.float32)
        scale = np.float32(1 / 255) if images.dtype == np.uint8 else np.float32(1)
        mean = self.mean_[:, None, None]
        inv_std = (1 / self.std_)[:, None, None]
        for start in range(0, len(images), _CHUNK):
            block = images[start:start + _CHUNK].astype(np.float32) * scale
            out[start:start + _CHUNK] = (block - mean) * inv_std
        return out

    def _as_nchw(self, X):
        """Validate ``X`` and return a view of it in NCHW layout (uint8 or float, unscaled)."""
        if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch.Tensor
            X = X.detach().cpu().numpy()
        X = np.asarray(X)
        shape = _check_input_shape(self.input_shape)
        if X.dtype != np.uint8 and not np.issubdtype(X.dtype, np.floating):
            raise ValueError(f"X must be uint8 pixels (0..255) or floats in [0, 1], got dtype {X.dtype}")
        if X.ndim == 2:
            if shape is None:
                raise ValueError("X is 2-D (flattened images): pass input_shape=(C, H, W)")
            try:
                X = X.reshape(len(X), *shape)
            except ValueError:
                raise ValueError(f"X has {X.shape[1]} features per row, which cannot be reshaped to "
                                 f"input_shape={shape}") from None
        elif X.ndim == 4:
            if X.dtype == np.uint8:
                X = X.transpose(0, 3, 1, 2)
            if shape is not None and any(s not in (-1, x) for s, x in zip(shape, X.shape[1:])):
                raise ValueError(f"images have shape {X.shape[1:]} (C, H, W), but input_shape={shape}")
        else:
            hint = "; for one-channel images add a channel axis (X[..., None])" if X.ndim == 3 else ""
            raise ValueError(
                "X must be uint8 images (n, H, W, C), float images (n, C, H, W), or flattened "
                f"rows (n, C*H*W) with input_shape; got an array of rank {X.ndim}, shape {X.shape}{hint}"
            )
        if len(X) == 0:
            raise ValueError("X holds no images")
        if X.dtype != np.uint8 and not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        return X


def _is_auto(value):
    """True when a statistic parameter is the string ``"auto"``."""
    return isinstance(value, str) and value == "auto"


def _check_input_shape(input_shape):
    """Return ``input_shape`` as a (C, H, W) tuple of positive ints, or None."""
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    valid = all(isinstance(s, (int, np.integer)) and (s > 0 or s == -1) for s in shape)
    if len(shape) != 3 or not valid or shape.count(-1) > 1:
        raise ValueError(f"input_shape must be three positive ints (C, H, W), one of which may be -1, "
                         f"got {input_shape!r}")
    return tuple(int(s) for s in shape)


def _resolve_stat(param, auto_value, neutral, n_channels, name):
    """Return the per-channel float32 statistic that ``param`` asks for."""
    if _is_auto(param):
        return auto_value.astype(np.float32)
    if param is None:
        return np.full(n_channels, neutral, dtype=np.float32)
    if isinstance(param, str):
        raise ValueError(f"{name} must be 'auto', None, a number or a sequence of numbers, got {param!r}")
    value = np.asarray(param, dtype=np.float64).ravel()
    if value.size == 1:
        value = np.repeat(value, n_channels)
    if value.size != n_channels:
        raise ValueError(f"{name} has {value.size} values, but the images have {n_channels} channels")
    if not np.isfinite(value).all():
        raise ValueError(f"{name} must be finite, got {value.tolist()}")
    return value.astype(np.float32)


def _channel_stats(images):
    """Per-channel mean and standard deviation of NCHW images, scaled to [0, 1], in float64.

    Accumulates shifted sums over chunks of images, so that no float copy of the whole array
    is made and a constant channel gets a standard deviation of exactly 0.
    """
    scale = 1 / 255 if images.dtype == np.uint8 else 1.0
    shift = None
    total = total_sq = 0.0
    for start in range(0, len(images), _CHUNK):
        block = images[start:start + _CHUNK].astype(np.float64) * scale
        if shift is None:
            shift = block.mean(axis=(0, 2, 3), keepdims=True)
        block -= shift
        total = total + block.sum(axis=(0, 2, 3))
        total_sq = total_sq + np.square(block).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    centred_mean = total / count
    var = np.maximum(total_sq / count - centred_mean ** 2, 0.0)
    return shift.ravel() + centred_mean, np.sqrt(var)
