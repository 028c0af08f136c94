"""Reproducible n-way classification tasks over one labelled image set.

A :class:`Task` is a set of global class ids plus the positions of its training and test
images in the data set. A :class:`TaskSampler` fixes, once and with a seed, a disjoint test
pool and training pool for every class; all tasks it samples draw their training images from
the training pools and their test images from the test pools, so that

- no image is ever in both the training and the test part of a task, and
- no test image of any task is used for training by any other task (the bank's tasks and the
  new tasks share the pools).

It samples random tasks (:meth:`TaskSampler.sample`), tasks sharing exactly ``c`` classes with
a given task (:meth:`TaskSampler.sharing`, the paper's Group-I/II designs), and splits the
classes into two disjoint sets (:meth:`TaskSampler.disjoint_split`, the Group-III design:
test tasks whose classes never occur in a training task).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = ["Task", "TaskSampler", "check_tasks", "shared_classes"]


def _as_generator(random_state):
    """Return a :class:`numpy.random.Generator` for ``random_state``.

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        None: fresh entropy; int: a seed; a Generator is used as is; a RandomState seeds a new
        Generator from its stream (so it is advanced, reproducibly).
    """
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(None if random_state is None else int(random_state))
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    raise ValueError(f"random_state must be None, an int, a numpy Generator or RandomState, "
                     f"got {random_state!r}")


def _check_int(value, name, minimum):
    """Return ``value`` as an int ``>= minimum``, or raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


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


class TaskSampler:
    """Sample n-way tasks with fixed, disjoint per-class train and test pools.

    At construction, the images of every class are shuffled with ``random_state`` and split
    into a test pool of ``n_test_per_class`` images and a training pool of the rest. Every task
    takes its test images from the test pools of its classes (all of them) and its training
    images from the training pools (all, or a seeded subset), so no test-pool image is ever
    used for training by any task.

    Parameters
    ----------
    labels : array-like of int, shape (n_images,)
        Global class id of every image of the data set.
    n_test_per_class : int, default=100
        Size of each class's test pool; every class must keep at least one training image.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState, default=0
        Seeds the pools, and the tasks of every call to a sampling method that gets no
        ``random_state`` of its own (then successive calls give different tasks, and the whole
        sequence is reproducible).

    Attributes
    ----------
    classes : tuple of int
        The sorted distinct labels.
    train_pools, test_pools : mapping of int to ndarray
        Per class, the sorted positions of its training and test pool (read-only).

    Notes
    -----
    Task ids are ``f"{prefix}-{k:04d}"`` with a counter per prefix kept by the sampler, so ids
    stay unique across calls with the same prefix.

    Examples
    --------
    >>> import numpy as np
    >>> from metaprune.data.tasks import TaskSampler, shared_classes
    >>> labels = np.repeat(np.arange(20), 30)
    >>> sampler = TaskSampler(labels, n_test_per_class=10, random_state=0)
    >>> target = sampler.sample(1, n_way=5, prefix="new")[0]
    >>> bank = sampler.sharing(target, n_shared=2, n_tasks=3)
    >>> [shared_classes(target, t) for t in bank]
    [2, 2, 2]
    """

    def __init__(self, labels, n_test_per_class=100, random_state=0):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be a non-empty 1-D array of integer class ids, "
                             f"got {labels.dtype} {labels.shape}")
        self.n_test_per_class = _check_int(n_test_per_class, "n_test_per_class", 0)
        self.labels = np.array(labels, dtype=np.int64)
        self.labels.setflags(write=False)
        self._rng = _as_generator(random_state)
        self._counters = {}
        classes, counts = np.unique(self.labels, return_counts=True)
        too_small = {int(c): int(n) for c, n in zip(classes, counts) if n <= self.n_test_per_class}
        if too_small:
            raise ValueError(
                f"n_test_per_class={self.n_test_per_class} leaves no training image for class(es) "
                f"{dict(list(too_small.items())[:10])} (class: number of images); lower n_test_per_class"
            )
        self.classes = tuple(int(c) for c in classes)
        by_class = np.split(np.argsort(self.labels, kind="stable"), np.cumsum(counts)[:-1])
        train, test = {}, {}
        for c, positions in zip(self.classes, by_class):
            shuffled = self._rng.permutation(positions)
            test[c] = _frozen_sorted(shuffled[: self.n_test_per_class])
            train[c] = _frozen_sorted(shuffled[self.n_test_per_class:])
        self.train_pools = MappingProxyType(train)
        self.test_pools = MappingProxyType(test)

    def __repr__(self):
        return (f"TaskSampler(n_images={len(self.labels)}, n_classes={len(self.classes)}, "
                f"n_test_per_class={self.n_test_per_class})")

    # ---------------------------------------------------------------- public sampling API

    def sample(self, n_tasks, n_way=5, n_train_per_class=None, classes=None, prefix="task",
               random_state=None):
        """Sample tasks of ``n_way`` distinct classes each.

        Parameters
        ----------
        n_tasks : int
            Number of tasks.
        n_way : int, default=5
            Classes per task, drawn without replacement.
        n_train_per_class : int, optional
            Training images per class: all of the class's training pool when None, else a
            seeded random subset of that size (the limited-data setting).
        classes : iterable of int, optional
            Draw classes only from this set (e.g. one side of :meth:`disjoint_split`).
        prefix : str, default="task"
            Prefix of the task ids.
        random_state : None, int, Generator or RandomState, optional
            Seed for this call; None continues the sampler's own stream.

        Returns
        -------
        list of Task
        """
        n_tasks = _check_int(n_tasks, "n_tasks", 0)
        allowed = self._check_classes(classes)
        n_way = _check_int(n_way, "n_way", 2)  # a classification task has at least 2 classes
        if n_way > len(allowed):
            raise ValueError(f"n_way={n_way} exceeds the {len(allowed)} classes available")
        self._check_n_train(n_train_per_class, allowed)
        rng = self._rng if random_state is None else _as_generator(random_state)
        return [self._make_task(prefix, rng.choice(allowed, n_way, replace=False), n_train_per_class, rng)
                for _ in range(n_tasks)]

    def sharing(self, target, n_shared, n_tasks, n_way=None, n_train_per_class=None, classes=None,
                prefix="share", random_state=None):
        """Sample tasks that share exactly ``n_shared`` classes with ``target``.

        Parameters
        ----------
        target : Task
            The reference task (its classes must be classes of this sampler).
        n_shared : int
            Number of the target's classes in every new task, ``0 <= n_shared <= n_way``;
            the other ``n_way - n_shared`` classes are drawn from outside the target's classes.
        n_tasks : int
            Number of tasks.
        n_way : int, optional
            Classes per task; defaults to ``target.n_way``.
        n_train_per_class : int, optional
            As in :meth:`sample`.
        classes : iterable of int, optional
            Draw the non-shared classes only from this set.
        prefix : str, default="share"
            Prefix of the task ids.
        random_state : None, int, Generator or RandomState, optional
            Seed for this call; None continues the sampler's own stream.

        Returns
        -------
        list of Task
            Tasks with ``shared_classes(target, task) == n_shared``.
        """
        if not isinstance(target, Task):
            raise ValueError(f"target must be a Task, got {type(target).__name__}")
        self._check_classes(target.classes)
        n_tasks = _check_int(n_tasks, "n_tasks", 0)
        n_way = target.n_way if n_way is None else _check_int(n_way, "n_way", 1)
        n_shared = _check_int(n_shared, "n_shared", 0)
        if n_shared > min(n_way, target.n_way):
            raise ValueError(f"n_shared={n_shared} exceeds n_way={n_way} or the target's {target.n_way} classes")
        outside = np.setdiff1d(self._check_classes(classes), target.classes)
        if n_way - n_shared > len(outside):
            raise ValueError(f"{n_way - n_shared} classes are needed outside the target's classes, "
                             f"but only {len(outside)} are available")
        self._check_n_train(n_train_per_class, np.union1d(outside, target.classes))
        rng = self._rng if random_state is None else _as_generator(random_state)
        tasks = []
        for _ in range(n_tasks):
            chosen = np.concatenate([rng.choice(np.asarray(target.classes), n_shared, replace=False),
                                     rng.choice(outside, n_way - n_shared, replace=False)])
            tasks.append(self._make_task(prefix, chosen, n_train_per_class, rng))
        return tasks

    def disjoint_split(self, n_test_classes, random_state=None):
        """Split the classes into two disjoint sets (the paper's Group-III design).

        Sample the training (bank) tasks with ``classes=train_classes`` and the test tasks
        with ``classes=test_classes``: no test task's class then occurs in any training task.

        Parameters
        ----------
        n_test_classes : int
            Size of the test set of classes, ``1 <= n_test_classes < len(self.classes)``.
        random_state : None, int, Generator or RandomState, optional
            Seed for this call; None continues the sampler's own stream.

        Returns
        -------
        train_classes, test_classes : tuple of int
            Sorted, disjoint, together all classes.
        """
        n_test_classes = _check_int(n_test_classes, "n_test_classes", 1)
        if n_test_classes >= len(self.classes):
            raise ValueError(f"n_test_classes={n_test_classes} must leave training classes out of "
                             f"{len(self.classes)}")
        rng = self._rng if random_state is None else _as_generator(random_state)
        test = set(rng.choice(np.asarray(self.classes), n_test_classes, replace=False).tolist())
        return tuple(c for c in self.classes if c not in test), tuple(sorted(test))

    # ---------------------------------------------------------------- helpers

    def _check_classes(self, classes):
        """Return ``classes`` (default: all) as a sorted int64 array, checking they are known."""
        if classes is None:
            return np.asarray(self.classes, dtype=np.int64)
        wanted = np.unique(np.asarray(list(classes), dtype=np.int64))
        unknown = np.setdiff1d(wanted, self.classes)
        if unknown.size:
            raise ValueError(f"classes {unknown[:10].tolist()} do not occur in the labels")
        if wanted.size == 0:
            raise ValueError("classes must not be empty")
        return wanted

    def _check_n_train(self, n_train_per_class, classes):
        """Check that every class in ``classes`` has ``n_train_per_class`` training images."""
        if n_train_per_class is None:
            return
        n = _check_int(n_train_per_class, "n_train_per_class", 1)
        short = {int(c): len(self.train_pools[int(c)]) for c in classes if len(self.train_pools[int(c)]) < n}
        if short:
            raise ValueError(f"n_train_per_class={n} exceeds the training pool of class(es) "
                             f"{dict(list(short.items())[:10])} (class: pool size)")

    def _next_id(self, prefix):
        """Return the next task id for ``prefix``."""
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        k = self._counters.get(prefix, 0)
        self._counters[prefix] = k + 1
        return f"{prefix}-{k:04d}"

    def _make_task(self, prefix, classes, n_train_per_class, rng):
        """Build the task of ``classes``: their test pools and (a subset of) their train pools."""
        classes = sorted(int(c) for c in classes)
        train = []
        for c in classes:
            pool = self.train_pools[c]
            if n_train_per_class is not None and n_train_per_class < len(pool):
                pool = np.sort(rng.choice(pool, n_train_per_class, replace=False))
            train.append(pool)
        test = [self.test_pools[c] for c in classes]
        return Task(self._next_id(prefix), tuple(classes), np.concatenate(train), np.concatenate(test))


def _frozen_sorted(positions):
    """Sorted read-only int64 copy of ``positions``."""
    array = np.sort(np.asarray(positions, dtype=np.int64))
    array.setflags(write=False)
    return array
