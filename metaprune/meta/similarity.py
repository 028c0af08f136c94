"""Task similarity: how close a new task is to every task of a bank (``DESIGN.md`` section 5).

Pure functions on arrays do the work:

* :func:`shared_class_counts`: ``|C_new ∩ C_i|`` for all bank tasks at once (a task-by-class
  incidence matrix times the new task's class indicator);
* :func:`prototype_similarity` / :func:`prototype_similarities`: mean cosine similarity of
  class prototypes over the optimal one-to-one matching of the two tasks' classes (Hungarian
  algorithm, ``scipy.optimize.linear_sum_assignment``).

:class:`TaskSimilarity` wraps them as small scikit-learn-style objects that are fitted on a
bank and then score a new task ``(X, y)`` against all of its tasks.
"""

from __future__ import annotations

import numbers
from abc import ABCMeta, abstractmethod

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ..channels.filter_space import input_channels
from ..data.checks import check_images
from ..data.labels import LABEL_KINDS, kind_of_labels
from ..backbone.penultimate import class_prototypes

__all__ = ["shared_class_counts", "prototype_similarity", "prototype_similarities",
           "TaskSimilarity", "SharedClassSimilarity", "PrototypeSimilarity"]


# -- pure functions -------------------------------------------------------------------------------

def shared_class_counts(incidence, query) -> np.ndarray:
    """Number of classes each task shares with a query task.

    Parameters
    ----------
    incidence : array-like of shape (n_tasks, n_classes), bool or int
        ``incidence[i, c]`` is true when task ``i`` has class ``c``.
    query : array-like of shape (n_classes,), bool or int
        Indicator of the query task's classes over the same class axis.

    Returns
    -------
    numpy.ndarray of shape (n_tasks,), int64

    Examples
    --------
    >>> shared_class_counts([[1, 1, 0], [0, 1, 1]], [0, 1, 1])
    array([1, 2])
    """
    incidence, query = np.asarray(incidence), np.asarray(query)
    if incidence.ndim != 2 or query.ndim != 1 or incidence.shape[1] != query.shape[0]:
        raise ValueError(f"incidence must be (n_tasks, n_classes) and query (n_classes,); "
                         f"got shapes {incidence.shape} and {query.shape}")
    for name, arr in (("incidence", incidence), ("query", query)):
        if arr.dtype.kind not in "biu" or (arr.size and not np.isin(arr, (0, 1)).all()):
            raise ValueError(f"{name} must hold 0/1 or booleans")
    return incidence.astype(np.int64) @ query.astype(np.int64)


def prototype_similarity(protos_a, protos_b) -> float:
    """Mean cosine similarity of class prototypes over their optimal one-to-one matching.

    Parameters
    ----------
    protos_a : array-like of shape (n_classes_a, n_features)
    protos_b : array-like of shape (n_classes_b, n_features)
        One prototype per class (rows). The class counts may differ; then
        ``min(n_classes_a, n_classes_b)`` pairs are matched.

    Returns
    -------
    float
        In [-1, 1]; symmetric in its arguments; 1 for a task compared with itself (or with
        its prototypes in any order). A zero prototype has cosine 0 with everything.

    Examples
    --------
    >>> a = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> prototype_similarity(a, a[::-1])
    1.0
    """
    return float(prototype_similarities(protos_a, [protos_b])[0])


def prototype_similarities(query_protos, task_protos) -> np.ndarray:
    """:func:`prototype_similarity` of a query task with each of many tasks.

    All cosine similarities come from one matrix product between the query's normalised
    prototypes and the stacked prototypes of every task; only the matching runs per task.

    Parameters
    ----------
    query_protos : array-like of shape (n_classes, n_features)
    task_protos : sequence of array-like of shape (n_classes_i, n_features)

    Returns
    -------
    numpy.ndarray of shape (len(task_protos),), float64
    """
    query = _unit_rows(query_protos, "query prototypes")
    tasks = [_unit_rows(p, f"prototypes of task {i}") for i, p in enumerate(task_protos)]
    if not tasks:
        return np.zeros(0)
    widths = {p.shape[1] for p in tasks}
    if widths != {query.shape[1]}:
        raise ValueError(f"prototypes must share one feature dimension; the query has {query.shape[1]}, "
                         f"the tasks {sorted(widths)}")
    # clip: norms of tiny rows lose precision (squares underflow), cosines are bounded by definition
    cosine = np.clip(query @ np.concatenate(tasks).T, -1.0, 1.0)
    blocks = np.split(cosine, np.cumsum([len(p) for p in tasks])[:-1], axis=1)
    return np.array([_matched_mean(block) for block in blocks])


def _unit_rows(protos, name: str) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero), float64; validated 2-D, non-empty, finite."""
    protos = np.asarray(protos, dtype=np.float64)
    if protos.ndim != 2 or protos.shape[0] == 0 or protos.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (n_classes, n_features) array, "
                         f"got shape {protos.shape}")
    if not np.all(np.isfinite(protos)):
        raise ValueError(f"{name} contain NaN or infinity")
    norms = np.linalg.norm(protos, axis=1, keepdims=True)
    return protos / np.where(norms > 0, norms, 1.0)


def _matched_mean(cosine: np.ndarray) -> float:
    """Mean entry over the assignment of rows to columns that maximises their sum."""
    rows, cols = linear_sum_assignment(cosine, maximize=True)
    return float(cosine[rows, cols].mean())


# -- estimators -----------------------------------------------------------------------------------

class TaskSimilarity(BaseEstimator, metaclass=ABCMeta):
    """Similarity of a new task to every task of a bank (base class).

    ``fit(bank)`` remembers the bank (and whatever a subclass precomputes from it);
    ``similarities(X, y)`` returns one score per bank task, higher meaning more similar,
    aligned with ``bank.task_ids``. To write a new similarity, subclass and implement
    :meth:`_similarities`; override :meth:`fit` (calling ``super().fit(bank)``) to
    precompute from the bank.

    The bank is any object with this protocol (``PrunedModelBank`` implements it):

    ``bank.task_ids``
        list of str, the tasks in a fixed order;
    ``len(bank)``
        number of tasks;
    ``bank.class_incidence()``
        ``(classes, incidence)``: the distinct class labels across the bank (ndarray) and a
        bool array of shape ``(len(bank), len(classes))``, rows in ``task_ids`` order;
    ``bank.prototypes(task_ids=None)``
        list of ``(classes, prototypes)`` per task (all tasks in ``task_ids`` order for
        None); ``prototypes`` has shape ``(n_classes, n_features)``; a task stored without
        prototypes gives None;
    ``bank.backbone``
        the pre-trained ``torch.nn.Module``;
    ``bank.label_kind``
        ``"int"`` or ``"str"``, the type of class labels the bank uses.

    Attributes
    ----------
    bank_ : object
        The fitted bank.
    task_ids_ : list of str
        ``bank.task_ids`` at fit time: the order of :meth:`similarities`' output.
    """

    def fit(self, bank, y=None):
        """Remember ``bank``; return self.

        Raises
        ------
        ValueError
            If the bank has no tasks.
        """
        task_ids = list(bank.task_ids)
        if len(bank) == 0 or not task_ids:
            raise ValueError("the bank has no tasks; a task similarity needs at least one bank task")
        if len(task_ids) != len(bank):
            raise ValueError(f"bank.task_ids lists {len(task_ids)} tasks but len(bank) is {len(bank)}")
        if bank.label_kind not in LABEL_KINDS:
            raise ValueError(f"bank.label_kind must be 'int' or 'str', got {bank.label_kind!r}")
        self.bank_ = bank
        self.task_ids_ = task_ids
        return self

    def similarities(self, X, y) -> np.ndarray:
        """Similarity of the task ``(X, y)`` to every bank task.

        Parameters
        ----------
        X : array-like of shape (n, C, H, W) or None
            The new task's images (not every similarity needs them).
        y : array-like of shape (n,)
            Its class labels, of the bank's label kind.

        Returns
        -------
        numpy.ndarray of shape (len(bank),), float64
            Aligned with ``task_ids_``.
        """
        check_is_fitted(self, "bank_")
        y = _check_task_labels(y, self.bank_.label_kind)
        scores = np.asarray(self._similarities(X, y), dtype=np.float64)
        if scores.shape != (len(self.task_ids_),):
            raise ValueError(f"{type(self).__name__}._similarities returned shape {scores.shape}, "
                             f"expected ({len(self.task_ids_)},)")
        return scores

    @abstractmethod
    def _similarities(self, X, y) -> np.ndarray:
        """Scores of the validated task ``(X, y)`` for every bank task, in ``task_ids_`` order."""


class SharedClassSimilarity(TaskSimilarity):
    """Number of classes a new task shares with each bank task, ``|C_new ∩ C_i|``.

    Uses only the labels: ``X`` may be None.

    Attributes
    ----------
    classes_ : numpy.ndarray
        Distinct class labels across the bank.
    incidence_ : numpy.ndarray of bool, shape (n_tasks, n_classes)
        ``incidence_[i, c]`` is True when bank task ``i`` has class ``classes_[c]``.

    Examples
    --------
    >>> class Bank:  # the minimal protocol this similarity reads
    ...     task_ids, label_kind = ["a", "b"], "int"
    ...     def __len__(self): return 2
    ...     def class_incidence(self): return np.array([0, 1, 2]), np.array([[1, 1, 0], [0, 1, 1]], bool)
    >>> SharedClassSimilarity().fit(Bank()).similarities(None, [1, 2, 2, 7])
    array([1., 2.])
    """

    def fit(self, bank, y=None):
        super().fit(bank)
        classes, incidence = bank.class_incidence()
        classes, incidence = np.asarray(classes), np.asarray(incidence, dtype=bool)
        if incidence.shape != (len(bank), len(classes)):
            raise ValueError(f"bank.class_incidence() gave an incidence of shape {incidence.shape} for "
                             f"{len(bank)} tasks and {len(classes)} classes")
        self.classes_, self.incidence_ = classes, incidence
        return self

    def _similarities(self, X, y) -> np.ndarray:
        return shared_class_counts(self.incidence_, np.isin(self.classes_, y))


class PrototypeSimilarity(TaskSimilarity):
    """Mean cosine similarity of class prototypes over the optimal class matching.

    The new task's prototypes are the per-class mean penultimate features of the bank's
    pre-trained backbone; each bank task's prototypes are read from the bank.

    Parameters
    ----------
    batch_size : int
        Images per forward pass when computing the new task's prototypes.
    device : str or torch.device, optional
        Where to run the backbone (default: where it is).

    Attributes
    ----------
    task_prototypes_ : list of numpy.ndarray
        Each bank task's prototypes, in ``task_ids_`` order.
    """

    def __init__(self, batch_size=256, device=None):
        self.batch_size = batch_size
        self.device = device

    def fit(self, bank, y=None):
        super().fit(bank)
        stored = bank.prototypes()
        if len(stored) != len(bank):
            raise ValueError(f"bank.prototypes() gave {len(stored)} entries for {len(bank)} tasks")
        missing = [tid for tid, entry in zip(self.task_ids_, stored) if entry is None]
        if missing:
            raise ValueError(f"PrototypeSimilarity needs the prototypes of every bank task; "
                             f"{len(missing)} task(s) have none, e.g. {missing[:5]}")
        self.task_prototypes_ = [np.asarray(protos) for _classes, protos in stored]
        return self

    def _similarities(self, X, y) -> np.ndarray:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, numbers.Integral) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if X is None:
            raise ValueError("PrototypeSimilarity needs the task's images X, got None")
        X = check_images(X, in_channels=input_channels(self.bank_.backbone))
        _classes, protos = class_prototypes(self.bank_.backbone, X, y, batch_size=self.batch_size,
                                            device=self.device)
        return prototype_similarities(protos, self.task_prototypes_)


def _check_task_labels(y, label_kind: str) -> np.ndarray:
    """``y`` as a non-empty 1-D int64 or str array matching the bank's ``label_kind``."""
    if y is None:
        raise ValueError("a task similarity needs the task's labels y, got None")
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array of class labels, got shape {y.shape}")
    kind = kind_of_labels(y)
    if kind != label_kind:
        raise ValueError(f"the bank's class labels are {label_kind}s but y holds {kind} labels "
                         f"(e.g. {y[0]!r}); labels must be the bank's global class identities")
    return y.astype(np.int64) if kind == "int" else y.astype(str)
