"""Images as a network's input: the normalisation that travels with the networks, images that fit them.

Normalisation: a network is trained on images normalised with per-channel statistics
``(mean, std)`` (pixel values scaled to [0, 1]). ``metaprune pretrain`` computes them on its
training images and stores them in the backbone's metadata; ``metaprune prune`` stores those it
used in the pruned network's metadata, and ``metaprune evaluate`` reuses them.
:func:`stored_normalisation` reads them back; :func:`preprocess` applies them, or computes them
on the given images when there are none. :func:`check_channels` refuses images whose channels
(or, for a bank, whose shape) the network does not take.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..data.preprocessing import ImageToTensor

__all__ = ["stored_normalisation", "preprocess", "check_channels"]


def stored_normalisation(metadata, source=None):
    """The normalisation statistics recorded in a backbone's or pruned network's metadata.

    Parameters
    ----------
    metadata : dict
        Metadata of a backbone (:func:`metaprune.backbone.resnet.backbone_metadata`) or of a pruned
        network (:attr:`metaprune.channels.pruned_model.PrunedModel.metadata`). ``mean`` and
        ``std`` are read at the top level, then under ``params`` (the pre-trainer's parameters,
        as in the shipped checkpoints).
    source : str or path-like, optional
        The file the metadata was read from, named in error messages.

    Returns
    -------
    tuple of (list of float, list of float) or None
        ``(mean, std)``, or None when the metadata has none.

    Raises
    ------
    ValueError
        If ``mean`` or ``std`` is not a number or a flat list of numbers (damaged metadata).
    """
    for entry in (metadata, (metadata or {}).get("params")):
        if isinstance(entry, dict) and entry.get("mean") is not None and entry.get("std") is not None:
            return _stat_values(entry["mean"], "mean", source), _stat_values(entry["std"], "std", source)
    return None


def _stat_values(value, name, source):
    """A stored ``mean`` or ``std`` as a list of float, or a ValueError naming the file."""
    if isinstance(value, np.ndarray):
        value = value.ravel().tolist()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        where = f"{source}: " if source is not None else ""
        raise ValueError(f"{where}the stored normalisation {name!r} must be a number or a list of numbers, "
                         f"got {str(value)[:60]} (damaged metadata?)")
    return [float(v) for v in values]


def preprocess(images, normalisation=None, source=None):
    """Scale and normalise ``uint8`` NHWC images to float32 NCHW.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, H, W, C)
    normalisation : (mean, std), optional
        Per-channel statistics (values scaled to [0, 1]); None computes them on ``images``.
    source : str or path-like, optional
        The file ``normalisation`` was stored in, named when it does not fit the images.

    Returns
    -------
    X : ndarray of float32, shape (N, C, H, W)
    normalisation : (list of float, list of float)
        The statistics used.

    Raises
    ------
    ValueError
        If the statistics do not fit the images (another channel count, a zero std ...).
    """
    mean, std = ("auto", "auto") if normalisation is None else normalisation
    try:
        transformer = ImageToTensor(mean=mean, std=std).fit(images[:1] if normalisation else images)
    except ValueError as exc:
        if normalisation is None or source is None:
            raise
        raise ValueError(f"the normalisation stored in {source} does not fit the images: {exc}") from None
    return transformer.transform(images), (transformer.mean_.tolist(), transformer.std_.tolist())


def check_channels(network_channels, data, what, input_shape=None, hint=""):
    """Raise a ValueError when the images of ``data`` do not fit a network.

    Parameters
    ----------
    network_channels : int
        Input channels of the network.
    data : ImageDataset
        The images (N, H, W, C).
    what : str
        The network in the message, after "the": ``"backbone"``, ``"backbone PATH"``,
        ``"bank PATH"`` ...
    input_shape : tuple of 3 int, optional
        ``(C, H, W)`` the network was fitted on (a bank's image shape); None checks the
        channels only (a backbone takes any image size).
    hint : str, default=""
        What to do, appended to the message.
    """
    height, width, channels = data.image_shape
    shape = (channels, height, width)
    if input_shape is not None and tuple(input_shape) != shape:
        raise ValueError(f"the images have shape {shape} (C, H, W) but the {what} expects images of shape "
                         f"{tuple(input_shape)}{hint}")
    if channels != network_channels:
        raise ValueError(f"the images have {channels} channel(s) but the {what} expects "
                         f"{network_channels}{hint}")
