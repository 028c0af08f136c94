"""Sample reproducible n-way tasks with fixed, disjoint per-class training and test pools.

:class:`TaskSampler` fixes, once and with a seed, a disjoint test pool and training pool for
every class of a data set, then samples :class:`~metaprune.data.task.Task` objects from them:
random tasks, tasks sharing exactly ``c`` classes with a given task, and disjoint class splits
(see :mod:`metaprune.data.tasks` for the designs).
"""

from __future__ import annotations

import numbers
from types import MappingProxyType

import numpy as np

from .random_state import as_generator
from .task import Task

__all__ = ["TaskSampler"]


def _check_int(value, name, minimum):
    """Return ``value`` as an int ``>= minimum``, or raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


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
        self._rng = as_generator(random_state)
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
        rng = self._rng if random_state is None else as_generator(random_state)
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
        rng = self._rng if random_state is None else as_generator(random_state)
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
        rng = self._rng if random_state is None else as_generator(random_state)
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
