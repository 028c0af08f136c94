"""``PrunedModelBank``: one pre-trained backbone and the pruning results of many tasks."""

from __future__ import annotations

import threading
from pathlib import Path
from contextlib import contextmanager

import numpy as np
from sklearn.base import clone
from torch import nn

from ..channels.filter_space import FilterSpace
from ..channels.pruned_model import pruned_skeleton
from ..backbone.resnet import ResNetSpec, _materialise, fingerprint, spec_of
from ..data.tasks import check_tasks
from ..channels.transfer import expand_state
from ..meta.voting import vote_counts as _count_votes
from .._version import __version__
from ._build import fit_task, run_jobs
from ._builders import Builder, BuildSummary, heartbeat, is_alive
from ._codec import decode_tensors, dumps, encode_tensors, loads, sha256_hex
from ._records import RowDecoder, check_task_id, encode_fitted, pruner_fingerprint
from ._storage import BankStorage

__all__ = ["PrunedModelBank"]


class PrunedModelBank:
    """A store of pruned networks: one pre-trained backbone and, per task, its pruning result.

    The bank holds the backbone once (weights, fingerprint, filter space) and, for every
    training task, its class labels, selection of kept channels, pruned weights (BatchNorm
    statistics and head included), class prototypes of the pre-trained backbone, metrics and
    pruning configuration. It lives in one SQLite file (WAL journal, one transaction per
    task; tensors as safetensors bytes, everything else JSON, nothing pickled) or in memory.

    Meta-vote pruning only *reads* a bank: estimators keep a reference to it (cloning an
    estimator shares the bank, see :meth:`__sklearn_clone__`) and never write to it.

    Parameters
    ----------
    backbone : torchvision.models.ResNet
        The pre-trained network every task is pruned from.
    path : str or path-like, optional
        Bank file. None keeps the bank in memory. A missing or empty file is created; an
        existing bank file of the same backbone is opened (so a script that creates and
        builds a bank can simply be re-run to resume); a bank of another backbone, or a
        file that is not a bank, is an error and is left untouched.

    Attributes
    ----------
    path : str or None
        The bank file (None in memory).
    read_only : bool
        Whether writes are refused (see :meth:`open`).
    input_shape : tuple of 3 int or None
        ``(C, H, W)`` of the images its tasks were pruned on (fixed by the first task).
    last_build : BuildSummary or None
        What the last :meth:`build` call of this object added, found stored, and left to
        other running builds.

    Raises
    ------
    ValueError
        If ``path`` holds a bank of another backbone, or a file that is not a bank.

    See Also
    --------
    PrunedModelBank.open : Reopen a bank file.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from metaprune import IterativeFilterPruner
    >>> from metaprune.bank import PrunedModelBank
    >>> from metaprune.backbone.resnet import cifar_resnet18
    >>> _ = torch.manual_seed(0)
    >>> bank = PrunedModelBank(cifar_resnet18(width=2, in_channels=1, num_classes=10))
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 1, 8, 8)).astype("float32"); y = np.repeat([3, 7], 20)
    >>> ifp = IterativeFilterPruner(pruning_ratio=0.5, n_iterations=2, prune_every=1, head_epochs=1,
    ...                             batch_size=20, random_state=0)
    >>> bank.add("task-a", X, y, ifp).task_ids
    ['task-a']
    >>> classes, incidence = bank.class_incidence()
    >>> classes, incidence
    (array([3, 7]), array([[ True,  True]]))
    """

    def __init__(self, backbone, path=None):
        if not isinstance(backbone, nn.Module):
            raise ValueError(f"backbone must be a pre-trained torchvision-style ResNet, "
                             f"got {type(backbone).__name__}")
        spec, space = spec_of(backbone), FilterSpace.from_model(backbone)
        backbone_print = fingerprint(backbone)
        meta = {"fingerprint": backbone_print, "spec": dumps(spec.to_dict()),
                "filter_space": dumps(space.to_dict()), "metaprune_version": __version__}
        weights = encode_tensors(backbone.state_dict())
        storage = BankStorage.in_memory(meta, weights) if path is None \
            else BankStorage.create_or_open(path, meta, weights)
        try:
            self._attach(storage)
            if self.fingerprint != backbone_print:
                raise ValueError(f"{storage.name} is a bank of another backbone (fingerprint "
                                 f"{self.fingerprint[:12]}..., this backbone's is {backbone_print[:12]}...); "
                                 f"use PrunedModelBank.open to read it, or another path for a new bank")
        except BaseException:
            storage.close()
            raise

    @classmethod
    def open(cls, path, read_only=False) -> "PrunedModelBank":
        """Reopen a bank file.

        Parameters
        ----------
        path : str or path-like
            A file written by :class:`PrunedModelBank`.
        read_only : bool, default=False
            Refuse every write (readers next to a running build, untrusted files).

        Returns
        -------
        PrunedModelBank

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ValueError
            If the file is not a bank, is damaged, or has an unknown schema version.
        """
        storage = BankStorage.open(path, read_only=read_only)
        bank = cls.__new__(cls)
        try:
            bank._attach(storage)
        except BaseException:
            storage.close()
            raise
        return bank

    def _attach(self, storage: BankStorage) -> None:
        """Bind to a storage and check its architecture and filter space agree."""
        self._storage = storage
        meta = storage.meta
        try:
            self._spec = ResNetSpec.from_dict(loads(meta["spec"], "architecture (meta)"))
            self._space = FilterSpace.from_dict(loads(meta["filter_space"], "filter space (meta)"))
            # shapes only (no memory); every block has a group of its own, which bounds the spec's depth
            skeleton = self._spec.skeleton(max_blocks=len(self._space))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{storage.name}: the stored architecture or filter space is invalid "
                             f"({exc})") from None
        if FilterSpace.from_model(skeleton) != self._space:
            raise ValueError(f"{storage.name}: the stored filter space does not match the stored "
                             f"architecture; the bank file is damaged")
        self._decoder = RowDecoder(self._space, skeleton.state_dict(), storage.name)
        self._backbone = None
        self._lock = threading.Lock()
        self._cache = {}  # name -> (storage version, value): dropped as soon as any connection writes
        self.last_build = None

    # -- description ---------------------------------------------------------------------------
    @property
    def path(self):
        """The bank file, or None for an in-memory bank."""
        return None if self._storage.name == ":memory:" else self._storage.name

    @property
    def read_only(self) -> bool:
        """Whether this bank refuses writes."""
        return self._storage.read_only

    @property
    def fingerprint(self) -> str:
        """Fingerprint (:func:`metaprune.backbone.resnet.fingerprint`) of the pre-trained backbone."""
        return self._storage.meta["fingerprint"]

    @property
    def spec(self) -> ResNetSpec:
        """Architecture of the pre-trained backbone."""
        return self._spec

    @property
    def filter_space(self) -> FilterSpace:
        """Channel groups of the pre-trained backbone."""
        return self._space

    @property
    def label_kind(self):
        """``"int"`` or ``"str"``: the type of class labels, fixed by the first task (None while empty)."""
        return self._storage.label_kind()

    @property
    def input_shape(self):
        """``(C, H, W)`` of the images the bank's tasks were pruned on, fixed by the first task
        (None while empty, or for a bank written before metaprune recorded it)."""
        return self._storage.input_shape()

    @property
    def backbone(self) -> nn.Module:
        """The pre-trained network (loaded from the bank once, checked against its fingerprint).

        The same module is returned every time; do not modify it.
        """
        with self._lock:
            if self._backbone is None:
                blob, sha = self._storage.backbone_weights()
                what = f"backbone weights in {self._storage.name}"
                state = self._decoder.check_backbone_state(decode_tensors(blob, sha, what), what)
                model = _materialise(self._spec.skeleton(), state)  # allocates the checked weights only
                if fingerprint(model) != self.fingerprint:
                    raise ValueError(f"{self._storage.name}: the backbone weights do not match the stored "
                                     f"fingerprint; the bank file is damaged")
                self._backbone = model.eval()
            return self._backbone

    def _cached(self, name, compute):
        """``compute()``, reused until the bank changes (a write here or by any other connection)."""
        version = self._storage.version()  # read first: a write racing with compute() only causes a recompute
        hit = self._cache.get(name)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = compute()
        self._cache[name] = (version, value)
        return value

    @property
    def task_ids(self) -> list:
        """Ids of the stored tasks, in insertion order (a fresh list)."""
        return list(self._cached("task_ids", self._storage.task_ids))

    def __len__(self) -> int:
        return len(self._cached("task_ids", self._storage.task_ids))

    def __contains__(self, task_id) -> bool:
        return isinstance(task_id, str) and bool(self._storage.existing([task_id]))

    def __repr__(self) -> str:
        where = "in memory" if self.path is None else repr(self.path)
        return f"PrunedModelBank({where}, n_tasks={len(self)}, fingerprint={self.fingerprint[:12]}...)"

    def __sklearn_clone__(self):
        """Cloning an estimator that holds the bank shares the bank: return it unchanged."""
        return self

    def __reduce__(self):
        # sent to another process (joblib, Dask): a read-only handle on the same file, or an
        # in-memory copy. Only the path or SQLite's own image travels, never a connection.
        if self.path is not None:
            return _reopen, (str(Path(self.path).absolute()),)
        return _from_image, (self._storage.image(),)

    def close(self) -> None:
        """Close the database connection."""
        self._storage.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @contextmanager
    def snapshot(self):
        """Read one consistent state: inside the block, no task written elsewhere appears.

        Examples
        --------
        >>> with bank.snapshot():  # doctest: +SKIP
        ...     ids = bank.task_ids
        ...     classes, incidence = bank.class_incidence()  # rows match ids
        """
        with self._storage.snapshot():
            yield self

    # -- writing -------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            raise ValueError(f"{self._storage.name} was opened read-only; use PrunedModelBank.open(path) "
                             f"to add tasks")

    def _check_new(self, task_id: str, replace: bool) -> None:
        if not replace and task_id in self:
            raise ValueError(f"task {task_id!r} is already in the bank; pass replace=True to overwrite it")

    def _template(self, pruner):
        """A clone of ``pruner`` whose backbone is the bank's."""
        if not (hasattr(pruner, "fit") and hasattr(pruner, "get_params")) \
                or "backbone" not in pruner.get_params(deep=False):
            raise ValueError(f"pruner must be an estimator with a 'backbone' parameter (e.g. "
                             f"IterativeFilterPruner), got {type(pruner).__name__}")
        return clone(pruner).set_params(backbone=self.backbone)

    def _store(self, row, replace=False, skip_existing=False) -> list:
        """Check a computed task against the bank, then write it in one transaction; return the
        ids written (empty when ``skip_existing`` found it stored)."""
        if row.backbone_fingerprint != self.fingerprint:
            raise ValueError(f"task {row.task_id!r} was pruned from another backbone (fingerprint "
                             f"{row.backbone_fingerprint[:12]}..., the bank's is "
                             f"{self.fingerprint[:12]}...); nothing was stored")
        try:
            self._decoder.record(row.text(created=""), {"weights": row.weights, "prototypes": row.prototypes})
        except ValueError as exc:
            raise ValueError(f"task {row.task_id!r} cannot be stored: {exc}") from None
        return self._storage.write([row], replace=replace, skip_existing=skip_existing)

    def add(self, task_id, X, y, pruner, X_test=None, y_test=None, replace=False) -> "PrunedModelBank":
        """Prune the backbone for one task and store the result.

        A :func:`sklearn.base.clone` of ``pruner`` with the bank's backbone as its
        ``backbone`` is fitted on ``(X, y)``; ``pruner`` itself is not modified.

        Parameters
        ----------
        task_id : str
            Unique id of the task.
        X : array-like of shape (n_samples, C, H, W)
            The task's training images (also used for the class prototypes).
        y : array-like of shape (n_samples,)
            Their class labels (ints or strings, global class identities).
        pruner : estimator
            An unfitted pruner with a ``backbone`` parameter, e.g.
            :class:`~metaprune.IterativeFilterPruner`.
        X_test, y_test : array-like, optional
            Held-out data for the ``test_accuracy`` metric.
        replace : bool, default=False
            Overwrite a task stored under the same id (it keeps its position).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If ``task_id`` is stored already (and not ``replace``), the labels are of the
            other kind than the bank's, or the bank is read-only. Nothing stored is lost.
        """
        check_task_id(task_id)
        self._check_writable()
        self._check_new(task_id, replace)
        self._store(fit_task(self._template(pruner), task_id, X, y, X_test, y_test), replace=replace)
        return self

    def add_fitted(self, task_id, fitted_pruner, X, y, X_test=None, y_test=None,
                   replace=False) -> "PrunedModelBank":
        """Store a pruner that was already fitted on a task.

        Parameters
        ----------
        task_id : str
            Unique id of the task.
        fitted_pruner : estimator
            Fitted on this bank's backbone (checked by fingerprint), with ``selection_``,
            ``classes_`` and ``net_``.
        X, y : array-like or None
            The task's training images and labels, for the class prototypes; None stores the
            task without prototypes.
        X_test, y_test : array-like, optional
            Held-out data for the ``test_accuracy`` metric.
        replace : bool, default=False
            Overwrite a task stored under the same id (it keeps its position).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If the pruner was fitted on another backbone, ``task_id`` is stored already
            (and not ``replace``), the labels are of the other kind than the bank's, or the
            bank is read-only. Nothing stored is lost.
        """
        check_task_id(task_id)
        self._check_writable()
        theirs = pruner_fingerprint(fitted_pruner)
        if theirs != self.fingerprint:
            raise ValueError(f"task {task_id!r}: the pruner was fitted on another backbone (fingerprint "
                             f"{theirs[:12]}..., the bank's is {self.fingerprint[:12]}...); nothing was "
                             f"stored")
        self._check_new(task_id, replace)
        row = encode_fitted(task_id, fitted_pruner, self.backbone, X, y, X_test, y_test)
        self._store(row, replace=replace)
        return self

    def build(self, tasks, pruner, X, y, n_jobs=None, backend=None, n_threads=None,
              progress=True) -> "PrunedModelBank":
        """Prune many tasks in parallel and store each result as soon as it is computed.

        Tasks already in the bank are skipped, so re-running an interrupted build finishes
        it. Workers fit a clone of ``pruner`` (with the bank's backbone), compute the
        prototypes and metrics and send back plain strings and bytes; this process writes
        each task in its own transaction as it arrives.

        Several builds may run on one bank file at once (processes on this machine, or on
        machines sharing the file): the bank records the task design each id is built for
        (its classes and images), and a build whose design differs from the recorded one is
        refused before any work; a build claims each task before pruning it, so concurrent
        builds of one design share the tasks out and never do one twice. A build killed
        (even by ``kill -9``) frees its claims: on this machine at once, elsewhere after
        two minutes without its heartbeat. :attr:`last_build` says what this call did.

        Parameters
        ----------
        tasks : iterable of metaprune.data.tasks.Task
            Tasks indexing into ``X``/``y``: ``train_index`` for fitting and prototypes,
            ``test_index`` for the ``test_accuracy`` metric.
        pruner : estimator
            An unfitted pruner with a ``backbone`` parameter.
        X : array-like of shape (n_images, C, H, W)
            The data set the tasks were sampled from.
        y : array-like of int, shape (n_images,)
            Its global class labels.
        n_jobs : int, optional
            Parallel jobs (joblib); None uses the backend's default (one job for joblib's
            default backend, every worker of a Dask cluster).
        n_threads : "auto", int or None, optional
            Torch threads of each worker's fit. None: the pruner's own ``n_threads``,
            where with ``"auto"`` and several workers each gets ``cores // workers``
            threads; an int or ``"auto"`` replaces the pruner's setting.
        backend : str, optional
            joblib backend, e.g. ``"loky"``, ``"threading"``, or ``"dask"`` (runs on the
            cluster of the ``dask.distributed.Client`` you created). None keeps the active
            joblib configuration.
        progress : bool, default=True
            Show a progress bar.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If a task is not a Task, ids repeat, a task does not fit ``X``/``y``, ``X``
            holds images of another shape than the bank's tasks, an id is
            stored already with other classes, or the bank records another design for an id
            (stored, or being built by a live build). Tasks stored before an error stay
            stored.
        KeyboardInterrupt
            On Ctrl-C: the task being pruned is not stored; finished ones are.
        """
        self._check_writable()
        tasks = check_tasks(tasks, y)
        y = np.asarray(y)
        shape, theirs = self.input_shape, tuple(np.shape(X)[1:])
        if shape is not None and theirs != shape:
            raise ValueError(f"{self._storage.name}: the bank's tasks were pruned on images of shape {shape}, X "
                             f"has images of shape {theirs}; nothing was pruned (preprocess X as for the bank's "
                             f"tasks, or use another bank file)")
        done = self._stored_tasks(tasks)
        todo = [t for t in tasks if t.task_id not in done]
        self.last_build = BuildSummary(already_stored=tuple(t.task_id for t in tasks if t.task_id in done))
        if not todo:
            return self
        builder = str(Builder.this_process())
        conflicts = self._storage.begin_build(builder, {t.task_id: _design(t) for t in tasks}, is_alive)
        if conflicts:
            task_id, recorded, stored = conflicts[0]
            try:
                theirs = loads(recorded, "task design")
            except ValueError:
                theirs = None
            ours = loads(_design(next(t for t in tasks if t.task_id == task_id)), "task design")
            raise ValueError(_conflict_message(self._storage.name, task_id, theirs, ours, stored,
                                               len(conflicts) - 1))
        added, stored, others = [], list(self.last_build.already_stored), []

        def jobs():
            busy = []
            for task in todo:
                state = self._storage.claim(builder, task.task_id, is_alive)
                if state == "claimed":
                    yield (task.task_id, *task.split(X, y))
                elif state == "busy":
                    busy.append(task)
                else:
                    stored.append(task.task_id)
            for task in busy:  # once more: the build that held them may have stopped meanwhile
                state = self._storage.claim(builder, task.task_id, is_alive)
                if state == "claimed":
                    yield (task.task_id, *task.split(X, y))
                else:
                    (others if state == "busy" else stored).append(task.task_id)

        def keep(row):
            (added if self._store(row, skip_existing=True) else stored).append(row.task_id)

        try:
            with heartbeat(lambda: self._storage.beat(builder)):
                run_jobs(self._template(pruner), jobs(), len(todo), keep, n_jobs=n_jobs, backend=backend,
                         n_threads=n_threads, progress=progress)
        finally:
            self._storage.end_build(builder)
            self.last_build = BuildSummary(tuple(added), tuple(stored), tuple(others))
        return self

    def _stored_tasks(self, tasks) -> set:
        """Ids of ``tasks`` already stored; an id stored with other classes is an error (the check
        for banks whose designs were not recorded)."""
        done = self._storage.existing([t.task_id for t in tasks])
        if done:
            stored = {text.task_id: self._decoder.classes(text).tolist()
                      for text, _ in self._storage.read(sorted(done))}
            clashes = [t for t in tasks if t.task_id in done and stored[t.task_id] != list(t.classes)]
            if clashes:
                task = clashes[0]
                raise ValueError(_conflict_message(self._storage.name, task.task_id,
                                                   {"classes": stored[task.task_id]},
                                                   {"classes": list(task.classes)}, True, len(clashes) - 1))
        return done

    # -- queries -------------------------------------------------------------------------------
    def class_incidence(self):
        """Which classes every task has (for shared-class similarity), cached until the bank changes.

        Returns
        -------
        classes : numpy.ndarray
            The distinct class labels across the bank, sorted (int64 or str).
        incidence : numpy.ndarray of bool, shape (len(bank), len(classes))
            ``incidence[i, c]`` is True when task ``task_ids[i]`` has class ``classes[c]``.
            Both arrays are read-only.
        """
        return self._cached("class_incidence", self._compute_incidence)

    def _compute_incidence(self):
        labels = [self._decoder.classes(text) for text, _ in self._storage.read()]
        if labels:
            classes = np.unique(np.concatenate(labels))
            rows = np.repeat(np.arange(len(labels)), [len(c) for c in labels])
            incidence = np.zeros((len(labels), len(classes)), dtype=bool)
            incidence[rows, np.searchsorted(classes, np.concatenate(labels))] = True
        else:
            classes = np.zeros(0, dtype=str if self.label_kind == "str" else np.int64)
            incidence = np.zeros((0, 0), dtype=bool)
        classes.setflags(write=False)
        incidence.setflags(write=False)
        return classes, incidence

    def selections(self, task_ids) -> list:
        """The tasks' selections (kept channels per group, pre-trained numbering).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        list of Selection
            In the order of ``task_ids``.

        Raises
        ------
        KeyError
            If a task id is not in the bank.
        """
        return [self._decoder.selection(text) for text, _ in self._storage.read(_ids(task_ids))]

    def vote_counts(self, task_ids) -> dict:
        """How many of the tasks kept each channel (:func:`metaprune.meta.voting.vote_counts`).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        dict of str to numpy.ndarray
            Per group, int64 counts of full pre-trained length.
        """
        return _count_votes(self.selections(task_ids), self._space.sizes)

    def _states(self, task_ids) -> list:
        out = []
        for text, blobs in self._storage.read(_ids(task_ids), blobs=("weights",)):
            selection = self._decoder.selection(text)
            state = self._decoder.state(text, blobs["weights"], selection, len(self._decoder.classes(text)))
            out.append((selection, state))
        return out

    def pruned_states(self, task_ids) -> list:
        """The tasks' pruned state dicts (pruned numbering, BatchNorm statistics and head ``fc.*`` included).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        list of dict of str to torch.Tensor
            In the order of ``task_ids``; each loads into
            ``build_pruned_module(bank.spec, selection, n_classes)``.
        """
        return [state for _, state in self._states(task_ids)]

    def expanded_weights(self, task_ids) -> list:
        """The tasks' weights lifted to the pre-trained numbering (:func:`metaprune.channels.transfer.expand_state`).

        Parameters
        ----------
        task_ids : sequence of str

        Returns
        -------
        list of (dict, dict)
            Per task ``(values, present)``: full-size tensors and boolean presence masks.
        """
        return [expand_state(state, selection, self._space) for selection, state in self._states(task_ids)]

    def prototypes(self, task_ids=None) -> list:
        """The tasks' class prototypes (mean pre-trained penultimate feature per class).

        Parameters
        ----------
        task_ids : sequence of str, optional
            Default: every task, in ``task_ids`` order.

        Returns
        -------
        list of (numpy.ndarray, numpy.ndarray) or None
            Per task ``(classes, prototypes)`` with ``prototypes[i]`` the prototype of
            ``classes[i]``; None for a task stored without prototypes.
        """
        ids = None if task_ids is None else _ids(task_ids)
        out = []
        for text, blobs in self._storage.read(ids, blobs=("prototypes",)):
            classes = self._decoder.classes(text)
            array = self._decoder.prototypes(text, blobs["prototypes"], len(classes))
            out.append(None if array is None else (classes, array))
        return out

    def record(self, task_id):
        """Everything stored about one task.

        Parameters
        ----------
        task_id : str

        Returns
        -------
        TaskRecord

        Raises
        ------
        KeyError
            If the task is not in the bank.
        ValueError
            If its stored data is damaged.
        """
        text, blobs = self._storage.read([check_task_id(task_id)], blobs=("weights", "prototypes"))[0]
        return self._decoder.record(text, blobs)

    def pruned_module(self, task_id) -> nn.Module:
        """Rebuild a task's pruned network (with its head), in eval mode.

        Parameters
        ----------
        task_id : str

        Returns
        -------
        torchvision.models.ResNet
            Physically pruned; outputs follow ``record(task_id).classes``.
        """
        record = self.record(task_id)
        skeleton = pruned_skeleton(self._spec, record.selection, record.n_classes)
        return _materialise(skeleton, record.state).eval()  # the record's state is checked: no full network

    def verify(self) -> None:
        """Check the whole file: SQLite's page-level integrity, then every stored value.

        Reads every task (slow for large banks).

        Raises
        ------
        ValueError
            Naming the first problem found.
        """
        problems = self._storage.integrity_problems()
        if problems:
            raise ValueError(f"{self._storage.name} is damaged: {problems[:3]}")
        self.backbone  # noqa: B018  (loads and checks the fingerprint)
        for task_id in self.task_ids:
            self.record(task_id)


def _design(task) -> str:
    """What a task id is built for, as stored text: its classes and the digests of its images."""
    return dumps({"classes": [int(c) for c in task.classes],
                  "train_index": sha256_hex(np.ascontiguousarray(task.train_index, dtype=np.int64).tobytes()),
                  "test_index": sha256_hex(np.ascontiguousarray(task.test_index, dtype=np.int64).tobytes())})


def _conflict_message(name, task_id, theirs, ours, stored, more=0) -> str:
    """A one-line refusal of a build whose design differs from the bank's for ``task_id``.

    ``theirs`` and ``ours`` are designs (dicts with at least ``"classes"``) recorded in the
    bank and asked for by the build; ``stored`` says whether the bank holds that task already.
    """
    classes = theirs.get("classes") if isinstance(theirs, dict) else None
    differ = (f"the classes {classes} there, {ours['classes']} here" if classes != ours["classes"]
              else "the same classes but other images")
    why = "stored" if stored else "being built by another running build"
    more = f" (and {more} more task(s))" if more else ""
    return (f"{name} is built for another task design: task {task_id!r} is {why} with {differ}{more}; "
            f"nothing was pruned. Use the same tasks (seed, task file) as that build, other task ids, or "
            f"another bank file")


def _ids(task_ids) -> list:
    if isinstance(task_ids, str):
        raise ValueError(f"task_ids must be a sequence of task ids, got the single id {task_ids!r}")
    return [check_task_id(t) for t in task_ids]


def _reopen(path):
    return PrunedModelBank.open(path, read_only=True)


def _from_image(image):
    bank = PrunedModelBank.__new__(PrunedModelBank)
    bank._attach(BankStorage.from_image(image, read_only=True))
    return bank
