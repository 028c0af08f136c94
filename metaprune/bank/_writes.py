"""The write side of :class:`~metaprune.bank.PrunedModelBank`: adding tasks and parallel builds.

:class:`BankWrites` prunes tasks (one at a time, or many in parallel through
:mod:`._build`), checks each result against the bank (backbone, classes, image shape) and
stores it in one transaction. A build records the task design it builds and claims each
task before pruning it (:mod:`._builders`, :mod:`._storage_builds`), so concurrent builds of
one design share the work and builds of another design are refused before any work.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from ..data.tasks import check_tasks
from ._build import fit_task, run_jobs
from ._builders import Builder, BuildSummary, heartbeat, is_alive
from ._codec import dumps, loads, sha256_hex
from ._records import check_task_id, encode_fitted, pruner_fingerprint

__all__ = ["BankWrites"]


class BankWrites:
    """The writes of :class:`~metaprune.bank.PrunedModelBank` (a mixin: the bank is the only host).

    The host provides ``_storage`` (a :class:`~._storage.BankStorage`), ``_decoder`` (a
    :class:`~._records.RowDecoder`), ``read_only``, ``fingerprint``, ``input_shape``,
    ``backbone``, ``last_build`` and ``__contains__``.
    """

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

    def add(self, task_id, X, y, pruner, X_test=None, y_test=None, replace=False) -> BankWrites:
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
                   replace=False) -> BankWrites:
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
              progress=True, tasks_at_once=1, share_work=None) -> BankWrites:
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
        tasks_at_once : int, default=1
            Tasks each job prunes as one stack (:func:`metaprune.pruners.many.fit_many`):
            the pre-trained network's features and first-event scores are computed once per
            image for all tasks of the build, and each job trains ``tasks_at_once`` tasks
            as one grouped network. Every task is still stored as soon as its stack
            finishes, so an interrupted build loses at most the stacks in flight. 1 prunes
            each task by the pruner's own ``fit`` (the default: on CPU a stack trains
            slower than its tasks one at a time, ``benchmarks/results/many_tasks.md``).
        share_work : bool, optional
            Compute the pre-trained network's features and first-event scores once per
            image for all tasks (IFP only); default: when ``tasks_at_once > 1``.

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
        if isinstance(tasks_at_once, bool) or not isinstance(tasks_at_once, (int, np.integer)) or tasks_at_once < 1:
            raise ValueError(f"tasks_at_once must be a positive int, got {tasks_at_once!r}")
        template = self._template(pruner)
        share_work = tasks_at_once > 1 if share_work is None else bool(share_work)
        shared = self._shared_work(template, todo, X, y) if share_work else {}

        def claimed():
            busy = []
            for task in todo:
                state = self._storage.claim(builder, task.task_id, is_alive)
                if state == "claimed":
                    yield task
                elif state == "busy":
                    busy.append(task)
                else:
                    stored.append(task.task_id)
            for task in busy:  # once more: the build that held them may have stopped meanwhile
                state = self._storage.claim(builder, task.task_id, is_alive)
                if state == "claimed":
                    yield task
                else:
                    (others if state == "busy" else stored).append(task.task_id)

        def jobs():
            if not share_work and tasks_at_once == 1:
                for task in claimed():
                    yield (task.task_id, *task.split(X, y))
                return
            chunk = []
            for task in claimed():  # tasks are claimed one stack at a time, as the stacks are sent
                chunk.append(task)
                if len(chunk) == tasks_at_once:
                    yield [(t.task_id, *t.split(X, y)) for t in chunk], [shared.get(t.task_id) for t in chunk]
                    chunk = []
            if chunk:
                yield [(t.task_id, *t.split(X, y)) for t in chunk], [shared.get(t.task_id) for t in chunk]

        def keep(row):
            (added if self._store(row, skip_existing=True) else stored).append(row.task_id)

        try:
            with heartbeat(lambda: self._storage.beat(builder)):
                run_jobs(template, jobs(), len(todo), keep, n_jobs=n_jobs, backend=backend,
                         n_threads=n_threads, progress=progress, stacked=share_work or tasks_at_once > 1)
        finally:
            self._storage.end_build(builder)
            self.last_build = BuildSummary(tuple(added), tuple(stored), tuple(others))
        return self

    @staticmethod
    def _shared_work(template, tasks, X, y) -> dict:
        """Task id -> :func:`~metaprune.pruners.many.shared_work` entry, one pass over the images tasks share."""
        from ..pruners.ifp import IterativeFilterPruner
        from ..pruners.many import shared_work_of_images
        from ..runtime.threads import torch_threads

        if not isinstance(template, IterativeFilterPruner) or not tasks:
            return {}
        used, rows = np.unique(np.concatenate([t.train_index for t in tasks]), return_inverse=True)
        bounds = np.cumsum([0] + [len(t.train_index) for t in tasks])
        images = np.asarray(X)[used]
        with torch_threads(template.n_threads):
            found = shared_work_of_images(template, images, [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
        return {t.task_id: entry for t, entry in zip(tasks, found)}

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
