"""Data arguments of the command line: data set specifications, class choices, normalisation, task files.

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

Normalisation: a network is trained on images normalised with per-channel statistics
``(mean, std)`` (pixel values scaled to [0, 1]). ``metaprune pretrain`` computes them on its
training images and stores them in the backbone's metadata; ``metaprune prune`` stores those it
used in the pruned network's metadata, and ``metaprune evaluate`` reuses them.
:func:`stored_normalisation` reads them back; :func:`preprocess` applies them, or computes them
on the given images when there are none.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

import numpy as np

from ..data.loaders import (CIFAR100_ENV_VAR, ImageDataset, default_cifar100_path, load_cifar100,
                       load_digits_images, load_fashion_mnist, load_image_folder, _read_npz)
from ..data.preprocessing import ImageToTensor
from ..data.tasks import Task

__all__ = ["DATA_HELP", "load_data", "load_npz_images", "parse_classes", "select_classes",
           "stored_normalisation", "preprocess", "holdout_split", "read_tasks", "write_tasks",
           "accuracy_report", "check_input_file", "check_output_path", "check_not_input", "stored_holdout",
           "MAX_CLASS_ID"]

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
    arrays = _read_npz(path, required=("images", "labels"), optional=("class_names",))
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


def stored_normalisation(metadata, source=None):
    """The normalisation statistics recorded in a backbone's or pruned network's metadata.

    Parameters
    ----------
    metadata : dict
        Metadata of a backbone (:func:`metaprune.backbone.resnet.backbone_metadata`) or of a pruned
        network (:attr:`metaprune.channels.pruned_model.PrunedModel.metadata`). ``mean`` and ``std`` are read at
        the top level, then under ``params`` (the pre-trainer's parameters, as in the shipped
        checkpoints).
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


def stored_holdout(metadata, source):
    """The held-out split ``metaprune prune --test-fraction`` recorded in a pruned network's metadata.

    Parameters
    ----------
    metadata : dict
        :attr:`metaprune.channels.pruned_model.PrunedModel.metadata`, with ``test_fraction`` and ``seed``.
    source : str or path-like
        The network's file, named in the messages.

    Returns
    -------
    test_fraction : float
        In (0, 1).
    seed : int
        The ``random_state`` of :func:`holdout_split`.

    Raises
    ------
    ValueError
        If the network was pruned without a held-out part, or the entries are damaged.
    """
    fraction = metadata.get("test_fraction")
    if fraction is None or fraction is False or (isinstance(fraction, (int, float)) and fraction == 0):
        raise ValueError(f"{source} was pruned without a held-out part (metaprune prune --test-fraction)")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"{source}: the stored test_fraction {str(fraction)[:40]} is not a number in (0, 1) "
                         f"(damaged metadata?)")
    seed = metadata.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"{source}: the stored seed {str(seed)[:40]} is not an integer in 0..{2**32 - 1} "
                         f"(damaged metadata?)")
    return float(fraction), seed


def holdout_split(labels, test_fraction, random_state=0):
    """Stratified split of a task's images into training and held-out positions.

    Parameters
    ----------
    labels : array-like of shape (n,)
    test_fraction : float
        Fraction of every class held out, in [0, 1); 0 holds nothing out.
    random_state : int, default=0

    Returns
    -------
    train_index, test_index : ndarray of int
        Sorted positions; the same arguments give the same split.

    Raises
    ------
    ValueError
        If ``test_fraction`` is out of range or leaves a class without a training or a
        held-out image.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    positions = np.arange(len(labels))
    if not 0 <= test_fraction < 1:
        raise ValueError(f"the test fraction must be in [0, 1), got {test_fraction}")
    if test_fraction == 0:
        return positions, positions[:0]
    _, counts = np.unique(labels, return_counts=True)
    if counts.min() * test_fraction < 1 or counts.min() * (1 - test_fraction) < 1:
        raise ValueError(f"a test fraction of {test_fraction} leaves a class of {counts.min()} images "
                         f"without a training or held-out image")
    train, test = train_test_split(positions, test_size=test_fraction, stratify=labels,
                                   random_state=random_state)
    return np.sort(train), np.sort(test)


def read_tasks(path) -> list:
    """Read a task list written by :func:`write_tasks` (or a bare JSON list of task dicts).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    list of metaprune.data.tasks.Task

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not JSON, holds no task, or a task is malformed (its ``classes``,
        ``train_index`` and ``test_index`` must be lists of integers).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no task file at {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"{path} is not a JSON task list ({reason})") from None
    items = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise ValueError(f"{path} must hold a list of tasks (objects with task_id, classes, train_index, "
                         f"test_index), or an object with such a list under 'tasks'")
    if not items:
        raise ValueError(f"{path} holds no tasks")
    for number, item in enumerate(items):
        for key in ("classes", "train_index", "test_index"):
            if key in item and not _is_int_list(item[key]):
                task = str(item.get("task_id"))[:40]
                raise ValueError(f"{path}: task {number} ({task!r}): {key!r} must be a list of integers, "
                                 f"got {json.dumps(item[key])[:60]}")
    try:
        return [Task.from_dict(t) for t in items]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _is_int_list(value) -> bool:
    """Whether ``value`` is a list of ints that fit in int64 (bools are not ints here)."""
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63 for v in value)


def write_tasks(path, tasks, **info) -> None:
    """Write tasks as JSON: ``{**info, "tasks": [task.to_dict(), ...]}``.

    Parameters
    ----------
    path : str or path-like
    tasks : iterable of metaprune.data.tasks.Task
    **info
        JSON-serialisable context stored next to the tasks (e.g. the data set).
    """
    Path(path).write_text(json.dumps({**info, "tasks": [t.to_dict() for t in tasks]}))


def accuracy_report(y_true, y_pred, class_names=None) -> dict:
    """Overall and per-class accuracy.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        Global class ids.
    class_names : sequence of str, optional
        Names indexed by class id, used as the keys of ``per_class``.

    Returns
    -------
    dict
        ``accuracy`` (float), ``n_images`` (int) and ``per_class``: per true class (its name,
        or its id as text), ``{"accuracy": float, "n_images": int}``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class = {}
    for c in np.unique(y_true):
        hit = y_true == c
        name = class_names[int(c)] if class_names is not None else str(c)
        per_class[name] = {"accuracy": float(np.mean(y_pred[hit] == c)), "n_images": int(hit.sum())}
    accuracy = float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")
    return {"accuracy": accuracy, "n_images": int(len(y_true)), "per_class": per_class}


def check_input_file(path, what=None) -> Path:
    """Refuse a folder where a file is read.

    A missing file is left to the reader, whose message names the kind of file expected.

    Parameters
    ----------
    path : str or path-like
    what : str, optional
        The kind of file, for the message (e.g. ``"backbone"``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``path`` is empty or an existing folder.
    """
    if not str(path):
        raise ValueError("the path is empty")
    checked = Path(path).expanduser()
    if checked.is_dir():
        raise ValueError(f"{path} is a folder, not a {what + ' ' if what else ''}file")
    return checked


def check_output_path(path, kind="file") -> Path:
    """Check, before any work, that a file or folder can be written at ``path``.

    Missing parent folders are fine (the writers create them); a folder where a file is to
    be written, a file where a folder is to be made, or a file among the parents is not.

    Parameters
    ----------
    path : str or path-like
    kind : {"file", "folder"}, default="file"
        What is written at ``path``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``path`` is empty, or nothing of that kind can be written there.
    """
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    if not str(path):
        raise ValueError("the path is empty")
    checked = Path(path).expanduser()
    if kind == "file" and checked.is_dir():
        raise ValueError(f"{path} is a folder; give the path of the file to write")
    if kind == "folder" and checked.exists() and not checked.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    for parent in checked.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    return checked


def check_not_input(out, inputs) -> None:
    """Refuse an output path that is one of the input files (writing it would destroy that input).

    Parameters
    ----------
    out : str or path-like
        The file to write.
    inputs : iterable of (path or None, str)
        The input files and what they are, for the message (e.g. ``(path, "backbone")``).

    Raises
    ------
    ValueError
        If ``out`` is an existing file that is one of ``inputs``.
    """
    out = Path(out).expanduser()
    if not out.is_file():
        return
    for source, what in inputs:
        source = None if source is None else Path(source).expanduser()
        if source is not None and source.is_file() and os.path.samefile(out, source):
            raise ValueError(f"the output {out} is the {what} file given: writing it would overwrite the "
                             f"{what}; give another --out")
