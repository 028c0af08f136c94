"""The container every loader returns: :class:`ImageDataset`, images with global class labels.

``uint8`` images in NHWC layout, ``int64`` labels whose values are *global* class ids (index
into ``class_names``), and optionally the coarse labels of a two-level label set (CIFAR-100's
superclasses), all checked when the data set is built. Tasks (:mod:`metaprune.data.tasks`)
index into these arrays; :class:`metaprune.data.preprocessing.ImageToTensor` turns the images
into the float NCHW tensors the estimators take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImageDataset"]


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
