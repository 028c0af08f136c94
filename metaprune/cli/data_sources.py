"""The ``--data`` argument: data set specifications read as an ImageDataset, and its ``--classes``.

A *data set specification* is the text a user gives to ``--data``:

- ``digits``: scikit-learn's 8x8 digits (embedded, no file; one channel);
- ``cifar100`` or ``cifar100:PATH``: CIFAR-100 from an ``.npz`` file or a ``cifar-100-python``
  folder (default: :func:`metaprune.data.loaders.default_cifar100_path`);
- ``fashion-mnist`` or ``fashion-mnist:DIR``: Fashion-MNIST's IDX files (default
  :data:`metaprune.data.loaders.FASHION_MNIST_DIR`);
- a folder: an ImageFolder tree ``root/class_name/*.png`` (RGB; ``image_size`` resizes);
- a file ``*.npz`` with the arrays ``images`` (N, H, W) or (N, H, W, C), ``uint8`` 0..255,
  integers 0..255 or floats in [0, 1], and ``labels`` (N,) (non-negative integer class ids,
  or strings), optionally ``class_names``.

:func:`load_data` reads a specification; :func:`select_classes` keeps the images of a
``--classes`` choice (:func:`parse_classes`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.loaders import (CIFAR100_ENV_VAR, ImageDataset, default_cifar100_path, load_cifar100,
                            load_digits_images, load_fashion_mnist, load_image_folder, read_npz)

__all__ = ["DATA_HELP", "load_data", "load_npz_images", "parse_classes", "select_classes", "MAX_CLASS_ID"]


DATA_HELP = ("data set: 'digits', 'cifar100[:PATH]', 'fashion-mnist[:DIR]', an image folder "
             "(root/class/*.png) or an .npz file with arrays 'images' (N,H,W[,C]) and 'labels' (N,)")
"""Help text of a ``--data`` option."""


MAX_CLASS_ID = 2**16
"""Integer labels of an ``.npz`` file without ``class_names`` must be below this (their class
names ``"0"``, ``"1"``, ... are made up to the largest label)."""


def load_data(spec, split="train", image_size=None) -> ImageDataset:
    """Load the data set named by a ``--data`` specification (see the module docstring).

    Parameters
    ----------
    spec : str
        ``digits``, ``cifar100[:PATH]``, ``fashion-mnist[:DIR]``, an image folder or an
        ``.npz`` file.
    split : {"train", "test"}, default="train"
        Split of CIFAR-100 and Fashion-MNIST; the other sources have one split only, and
        asking them for ``"test"`` is an error.
    image_size : int, optional
        Resize the images of an image folder to ``image_size`` x ``image_size`` (needed when
        they differ in size). Not available for the other sources.

    Returns
    -------
    ImageDataset

    Raises
    ------
    FileNotFoundError
        If ``spec`` names neither a known data set nor an existing file or folder, or
        ``cifar100`` is asked for while the environment variable ``METAPRUNE_CIFAR100``
        names a path that does not exist (the library warns and falls back to the default
        places; a command line run does not silently read another copy).
    ValueError
        If the source is unreadable or the options do not apply to it.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError("the data set specification is empty")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    name, _, location = spec.partition(":")
    if name in ("cifar100", "fashion-mnist", "digits"):
        if image_size is not None:
            raise ValueError(f"--image-size applies to image folders only, not to {name}")
        if name == "digits":
            if location:
                raise ValueError("'digits' takes no path (scikit-learn embeds the data)")
            _single_split(split, "digits")
            return load_digits_images()
        if name == "fashion-mnist":
            return load_fashion_mnist(Path(location) if location else None, split=split)
        env = os.environ.get(CIFAR100_ENV_VAR)
        if not location and env and not Path(env).expanduser().exists():
            raise FileNotFoundError(f"{CIFAR100_ENV_VAR}={env!r} does not exist: point it at a CIFAR-100 "
                                    f".npz file or cifar-100-python folder, unset it, or give cifar100:PATH")
        path = Path(location).expanduser() if location else default_cifar100_path()
        if path is None:
            raise FileNotFoundError("no CIFAR-100 copy found: give cifar100:PATH (an .npz file or a "
                                    "cifar-100-python folder) or set METAPRUNE_CIFAR100")
        if path.is_file() and split == "test" and path.name == "train.npz":
            path = path.parent  # the shared layout keeps test.npz next to train.npz
        return load_cifar100(path, split=split)
    path = Path(spec).expanduser()
    if path.is_dir():
        _single_split(split, "an image folder")
        return load_image_folder(path, image_size=image_size)
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise ValueError(f"{path} is neither a folder nor an .npz file; {DATA_HELP}")
        if image_size is not None:
            raise ValueError("--image-size applies to image folders only, not to .npz files")
        _single_split(split, "an .npz file")
        return load_npz_images(path)
    raise FileNotFoundError(f"no such data set, file or folder: {spec!r} ({DATA_HELP})")


def _single_split(split, what):
    if split != "train":
        raise ValueError(f"{what} has a single split; --split test applies to cifar100 and fashion-mnist")


def load_npz_images(path) -> ImageDataset:
    """Read images and labels from an ``.npz`` file (no pickle).

    Parameters
    ----------
    path : str or path-like
        File with the arrays ``images`` -- shape (N, H, W) or (N, H, W, C), dtype ``uint8``
        (0..255), another integer type with values 0..255, or float with values in [0, 1]
        (quantised to ``uint8``) -- and ``labels`` (N,): non-negative integer class ids, or
        strings (class ids then follow the sorted distinct strings). An optional array
        ``class_names`` names the integer ids.

    Returns
    -------
    ImageDataset
        With integer labels kept as they are (so class 7 stays class 7) and class names
        ``class_names`` or ``"0"``, ``"1"``, ... up to the largest label.

    Raises
    ------
    ValueError
        If an array is missing, of the wrong shape or type, or out of range: images without
        pixels, or integer labels of :data:`MAX_CLASS_ID` or more without ``class_names``.
    """
    arrays = read_npz(path, required=("images", "labels"), optional=("class_names",))
    images, labels = np.asarray(arrays["images"]), np.asarray(arrays["labels"])
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{path}: 'images' must have shape (N, H, W) or (N, H, W, C), got {images.shape}")
    if 0 in images.shape[1:]:
        raise ValueError(f"{path}: 'images' of shape {images.shape} hold no pixels; height, width and "
                         f"channels must be positive")
    if images.shape[-1] not in (1, 3, 4) and images.shape[1] in (1, 3):
        raise ValueError(f"{path}: 'images' of shape {images.shape} look channels-first; store them as "
                         f"(N, H, W, C)")
    if len(labels) != len(images) or labels.ndim != 1:
        raise ValueError(f"{path}: 'labels' must have shape ({len(images)},), got {labels.shape}")
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise ValueError(f"{path}: float 'images' must hold values in [0, 1]")
        images = np.rint(images * 255.0).astype(np.uint8)
    elif np.issubdtype(images.dtype, np.integer) and images.dtype != np.uint8:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError(f"{path}: integer 'images' must hold values in 0..255")
        images = images.astype(np.uint8)
    elif images.dtype != np.uint8:
        raise ValueError(f"{path}: 'images' must be uint8, integers 0..255 or floats in [0, 1], "
                         f"got dtype {images.dtype}")
    if labels.dtype.kind in "US":
        names, labels = np.unique(labels.astype(str), return_inverse=True)
        class_names = tuple(str(n) for n in names)
    elif np.issubdtype(labels.dtype, np.integer):
        if labels.size and labels.min() < 0:
            raise ValueError(f"{path}: integer 'labels' must be non-negative, got {labels.min()}")
        if "class_names" in arrays:
            class_names = tuple(str(n) for n in np.asarray(arrays["class_names"]).ravel())
        elif labels.size and labels.max() >= MAX_CLASS_ID:
            raise ValueError(f"{path}: integer 'labels' go up to {labels.max()}, but without 'class_names' "
                             f"class ids must be below {MAX_CLASS_ID}; renumber the classes, store "
                             f"'class_names', or store the labels as strings")
        else:
            class_names = tuple(str(c) for c in range(int(labels.max()) + 1 if labels.size else 1))
    else:
        raise ValueError(f"{path}: 'labels' must be integers or strings, got dtype {labels.dtype}")
    try:
        return ImageDataset(np.ascontiguousarray(images), labels, class_names)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def parse_classes(text, class_names) -> list:
    """Turn a ``--classes`` argument into sorted class ids.

    Parameters
    ----------
    text : str
        Comma-separated class names or ids, e.g. ``"3,7,9"`` or ``"cat,dog"``. A token
        equal to a class name means that class; otherwise an integer token is a class id.
    class_names : sequence of str
        The data set's class names (index = class id).

    Returns
    -------
    list of int
        Distinct class ids, sorted.

    Raises
    ------
    ValueError
        If a token is neither a class name nor a valid id, or no class is given.
    """
    index = {name: i for i, name in enumerate(class_names)}
    ids = set()
    for token in (t.strip() for t in str(text).split(",")):
        if not token:
            continue
        if token in index:
            ids.add(index[token])
        elif token.lstrip("-").isdigit() and 0 <= int(token) < len(class_names):
            ids.add(int(token))
        else:
            preview = ", ".join(list(class_names)[:5]) + (", ..." if len(class_names) > 5 else "")
            raise ValueError(f"unknown class {token!r}: the data has class ids 0..{len(class_names) - 1} "
                             f"named {preview}")
    if not ids:
        raise ValueError(f"no class given in {text!r}")
    return sorted(ids)


def select_classes(data, classes) -> ImageDataset:
    """The images of some classes (all of them when ``classes`` is None).

    Parameters
    ----------
    data : ImageDataset
    classes : str, sequence of int, or None
        A ``--classes`` text (see :func:`parse_classes`) or class ids.

    Returns
    -------
    ImageDataset
        The selected images, in data set order, with global labels.

    Raises
    ------
    ValueError
        If a class has no image in ``data``.
    """
    if classes is None:
        return data
    if isinstance(classes, str):
        ids = parse_classes(classes, data.class_names)
    else:
        ids = sorted(int(c) for c in classes)
    present = set(np.unique(data.labels).tolist())
    empty = [c for c in ids if c not in present]
    if empty:
        raise ValueError(f"the data has no images of class(es) {empty}")
    return data.subset(np.isin(data.labels, ids))
