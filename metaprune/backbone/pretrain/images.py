"""Images into pre-training: uint8 NHWC or normalised float NCHW arrays as torch tensors.

Pre-training takes CIFAR-style ``uint8`` images of shape ``(N, H, W, C)`` (kept as compact
uint8 tensors and converted one batch at a time) or float ``(N, C, H, W)`` images already
normalised with the run's ``(mean, std)``. Every tensor made here has canonical strides
(see :mod:`metaprune.data.batches`).
"""

from __future__ import annotations

import numpy as np
import torch

from ...data.batches import canonical_strides, image_tensor

__all__ = ["to_float_images", "nchw_from_nhwc", "channel_statistic", "compact_images"]

_SHAPES = "X must be 4-dimensional (N, C, H, W) float or (N, H, W, C) uint8, got {}"
_DTYPES = "X must be uint8 (NHWC) or float (NCHW), got dtype {}"


def to_float_images(X, mean=None, std=None):
    """Convert images to a float32 NCHW tensor in ``[0, 1]``.

    ``uint8`` arrays are read as NHWC (the CIFAR layout) and divided by 255. Float
    arrays are read as NCHW images already normalised with ``(mean, std)`` and are
    mapped back to ``[0, 1]`` (if ``mean``/``std`` are None they are returned as is).

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (N, H, W, C) uint8 or (N, C, H, W) float
    mean, std : float or sequence of float, optional
        Per-channel statistics the float images were normalised with.

    Returns
    -------
    torch.Tensor of shape (N, C, H, W), float32
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(_SHAPES.format(X.shape))
    if X.dtype == np.uint8:
        return nchw_from_nhwc(X).float().div_(255)
    if not np.issubdtype(X.dtype, np.floating):
        raise ValueError(_DTYPES.format(X.dtype))
    t = image_tensor(X)
    if mean is not None:
        m, s = channel_statistic(mean, t.shape[1]), channel_statistic(std, t.shape[1])
        t = t * s + m
    return t


def nchw_from_nhwc(X: np.ndarray) -> torch.Tensor:
    """NHWC images as a C-contiguous NCHW tensor of the same dtype, with canonical strides.

    Parameters
    ----------
    X : numpy.ndarray of shape (N, H, W, C)

    Returns
    -------
    torch.Tensor of shape (N, C, H, W)
    """
    return canonical_strides(torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))))


def channel_statistic(value, channels: int) -> torch.Tensor:
    """A per-channel statistic (mean or std) as a float32 tensor ``(1, channels, 1, 1)``.

    Parameters
    ----------
    value : float or sequence of float
        One value for every channel, or one per channel.
    channels : int

    Returns
    -------
    torch.Tensor of shape (1, channels, 1, 1), float32

    Raises
    ------
    ValueError
        If ``value`` has neither one entry nor ``channels`` entries.
    """
    t = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(f"normalisation statistics have {t.numel()} entries for {channels} channels")
    return t.view(1, channels, 1, 1)


def compact_images(X) -> torch.Tensor:
    """A training set stored compactly: a uint8 NCHW tensor for uint8 input, float32 otherwise.

    Parameters
    ----------
    X : array-like of shape (N, H, W, C) uint8 or (N, C, H, W) float

    Returns
    -------
    torch.Tensor of shape (N, C, H, W), uint8 or float32
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(_SHAPES.format(X.shape))
    if X.dtype == np.uint8:
        return nchw_from_nhwc(X)
    if not np.issubdtype(X.dtype, np.floating):
        raise ValueError(_DTYPES.format(X.dtype))
    return image_tensor(X)
