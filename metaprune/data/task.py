"""One n-way task: the :class:`Task` type (classes and image positions) and checks against a data set.

A :class:`Task` is a set of global class ids plus the positions of its training and test
images in the data set (disjoint, read-only). :func:`check_tasks` checks a list of tasks
against a data set's labels without touching any image, and :func:`shared_classes` counts the
classes two tasks share. Tasks are sampled by :class:`metaprune.data.task_sampler.TaskSampler`;
both are importable from :mod:`metaprune.data.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Task", "check_tasks", "shared_classes"]


def _as_index(values, name):
    """Return ``values`` as a read-only 1-D int64 array of unique non-negative positions."""
    array = np.asarray(values)
    if array.size == 0:
        array = array.astype(np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D array of integer positions, got {array.dtype} {array.shape}")
    array = np.array(array, dtype=np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must hold non-negative positions, got {array.min()}")
    if np.unique(array).size != array.size:
        raise ValueError(f"{name} holds repeated positions")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False, repr=False)
class Task:
    """An n-way classification task: global class ids and image positions.

    Parameters
    ----------
    task_id : str
        Unique name of the task (e.g. ``"task-0007"``).
    classes : sequence of int
        Global class ids of the task; stored sorted, as a tuple of int.
    train_index, test_index : array-like of int
        Positions, in the data set the task was sampled from, of its training and test
        images; stored as read-only int64 arrays. They must be disjoint.

    Attributes
    ----------
    n_way : int
        Number of classes.

    Examples
    --------
    >>> import numpy as np
    >>> from metaprune.data.tasks import TaskSampler
    >>> labels = np.repeat(np.arange(10), 20)
    >>> task = TaskSampler(labels, n_test_per_class=5, random_state=0).sample(1, n_way=3)[0]
    >>> task.n_way, len(task.train_index), len(task.test_index)
    (3, 45, 15)
    """

    task_id: str
    classes: tuple
    train_index: np.ndarray
    test_index: np.ndarray

    def __post_init__(self):
        if not isinstance(self.task_id, str) or not self.task_id:
            raise ValueError(f"task_id must be a non-empty str, got {self.task_id!r}")
        raw = np.asarray(self.classes)
        if raw.ndim != 1 or raw.size == 0 or not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"classes must be a non-empty sequence of int class ids, got {self.classes!r}")
        classes = tuple(sorted(int(c) for c in raw))
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct, got {self.classes!r}")
        train = _as_index(self.train_index, "train_index")
        test = _as_index(self.test_index, "test_index")
        overlap = np.intersect1d(train, test)
        if overlap.size:
            raise ValueError(f"task {self.task_id!r}: positions {overlap[:5].tolist()} are in both "
                             "train_index and test_index")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "train_index", train)
        object.__setattr__(self, "test_index", test)

    @property
    def n_way(self):
        """Number of classes of the task."""
        return len(self.classes)

    def __repr__(self):
        return (f"Task({self.task_id!r}, classes={self.classes}, n_train={len(self.train_index)}, "
                f"n_test={len(self.test_index)})")

    def __eq__(self, other):
        if not isinstance(other, Task):
            return NotImplemented
        return (self.task_id == other.task_id and self.classes == other.classes
                and np.array_equal(self.train_index, other.train_index)
                and np.array_equal(self.test_index, other.test_index))

    def __hash__(self):
        return hash((self.task_id, self.classes, self.train_index.tobytes(), self.test_index.tobytes()))

    def to_dict(self):
        """Return the task as plain JSON-serialisable data (str, lists of int).

        Returns
        -------
        dict
            Keys ``task_id``, ``classes``, ``train_index``, ``test_index``.
        """
        return {"task_id": self.task_id, "classes": list(self.classes),
                "train_index": self.train_index.tolist(), "test_index": self.test_index.tolist()}

    @classmethod
    def from_dict(cls, data):
        """Rebuild a task from the output of :meth:`to_dict`.

        Parameters
        ----------
        data : dict
            With keys ``task_id``, ``classes``, ``train_index``, ``test_index``.

        Returns
        -------
        Task
        """
        missing = [k for k in ("task_id", "classes", "train_index", "test_index") if k not in data]
        if missing:
            raise ValueError(f"task data misses the keys {missing}")
        return cls(data["task_id"], tuple(data["classes"]),
                   np.asarray(data["train_index"], dtype=np.int64),
                   np.asarray(data["test_index"], dtype=np.int64))

    def split(self, images, labels):
        """Select the task's training and test images and labels.

        Parameters
        ----------
        images : array-like, shape (n_images, ...)
            The data set the task was sampled from (any layout; indexed along axis 0).
        labels : array-like of int, shape (n_images,)
            Its global class ids.

        Returns
        -------
        X_train, y_train, X_test, y_test : ndarray
            Images and global labels of the training and test parts.

        Raises
        ------
        ValueError
            If a position is out of range or a selected label is not one of the task's
            classes (the task was sampled on another data set).
        """
        labels = np.asarray(labels)
        if not hasattr(images, "shape"):
            images = np.asarray(images)
        if labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"images ({len(images)}) and labels (shape {labels.shape}) must match in length")
        parts = []
        for name, index in (("train", self.train_index), ("test", self.test_index)):
            if index.size and index.max() >= len(labels):
                raise ValueError(f"task {self.task_id!r}: {name} position {index.max()} is out of range "
                                 f"for a data set of {len(labels)} images")
            y = labels[index]
            stray = np.setdiff1d(y, self.classes)
            if stray.size:
                raise ValueError(f"task {self.task_id!r}: its {name} images have labels {stray[:5].tolist()} "
                                 f"outside its classes {self.classes}; was it sampled on another data set?")
            parts += [images[index], y]
        return tuple(parts)


def check_tasks(tasks, labels) -> list:
    """Check that tasks index into a data set with these labels, without touching any image.

    Parameters
    ----------
    tasks : iterable of Task
    labels : array-like of int, shape (n_images,)
        The data set's global class ids.

    Returns
    -------
    list of Task

    Raises
    ------
    ValueError
        If an item is not a Task, ids repeat, a position is out of range, or a task's images
        have labels outside its classes (see :meth:`Task.split`).
    """
    tasks = list(tasks)
    wrong = [type(t).__name__ for t in tasks if not isinstance(t, Task)]
    if wrong:
        raise ValueError(f"tasks must be metaprune.data.tasks.Task objects, got {wrong[:3]}")
    ids = [t.task_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"task ids repeat: {sorted({t for t in ids if ids.count(t) > 1})[:5]}")
    labels = np.asarray(labels)
    for task in tasks:  # positions and labels: an image array of no columns copies nothing
        task.split(np.empty((len(labels), 0), dtype=np.uint8), labels)
    return tasks


def shared_classes(task_a, task_b):
    """Number of classes two tasks share, ``|C_a ∩ C_b|``.

    Parameters
    ----------
    task_a, task_b : Task or iterable of int
        Tasks, or their sets of global class ids.

    Returns
    -------
    int
    """
    def class_set(task):
        return set(task.classes) if isinstance(task, Task) else {int(c) for c in task}

    return len(class_set(task_a) & class_set(task_b))
