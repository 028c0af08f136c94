"""Pruning many tasks in parallel through joblib: workers compute, the caller writes.

Each job prunes a fresh clone of the pruner on one task, computes its prototypes and
metrics, and returns a :class:`~._schema.TaskRow` (strings and bytes). Results come back
as they finish (``return_as="generator_unordered"``), and the caller stores each one at
once, so a build that is interrupted keeps every finished task. Any joblib backend works:
``"loky"`` or ``"threading"`` on one machine, ``"dask"`` (with a ``dask.distributed.Client``)
or Ray on a cluster.
"""

from __future__ import annotations

from contextlib import nullcontext

from joblib import Parallel, delayed, parallel_config
from sklearn.base import clone

from ._records import encode_fitted

__all__ = ["fit_task", "fit_task_stack", "run_jobs"]


def fit_task(pruner, task_id, X, y, X_test=None, y_test=None):
    """Prune one task (runs in a worker).

    Parameters
    ----------
    pruner : estimator
        Unfitted pruner whose ``backbone`` is the bank's pre-trained backbone; a clone is
        fitted, so the same object can be shared by concurrent jobs.
    task_id : str
    X, y : array-like
        The task's training images and labels (for fitting and the prototypes).
    X_test, y_test : array-like, optional
        Held-out images and labels for the ``test_accuracy`` metric.

    Returns
    -------
    TaskRow
    """
    from ..runtime.threads import torch_threads

    estimator = clone(pruner)
    with torch_threads(estimator.get_params().get("n_threads", None)):  # the fit and the prototype pass
        estimator.fit(X, y)
        # the clone holds its own copy of the backbone: prototypes never share a module across threads
        return encode_fitted(task_id, estimator, estimator.backbone, X, y, X_test, y_test)


def fit_task_stack(pruner, jobs, shared):
    """Prune a few tasks as one stack (runs in a worker): :func:`metaprune.pruners.many.fit_many`.

    Parameters
    ----------
    pruner : estimator
        As in :func:`fit_task`; one clone per task.
    jobs : list of tuple
        ``(task_id, X, y, X_test, y_test)`` per task.
    shared : list
        :func:`~metaprune.pruners.many.shared_work` entry per task.

    Returns
    -------
    list of TaskRow
    """
    from ..pruners.many import fit_many
    from ..runtime.threads import torch_threads

    estimators = [clone(pruner) for _ in jobs]
    with torch_threads(pruner.get_params().get("n_threads", None)):
        fit_many(estimators, [j[1] for j in jobs], [j[2] for j in jobs], tasks_at_once=len(jobs),
                 shared=None if all(s is None for s in shared) else shared)
        return [encode_fitted(job[0], est, est.backbone, *job[1:]) for est, job in zip(estimators, jobs)]


def _share_cores(pruner, n_jobs, n_threads=None):
    """The pruner each worker fits: ``n_threads`` (when given) replaces the pruner's own; with
    ``"auto"`` and several workers, each worker's torch pool gets ``cores // workers``
    threads (at least 1), so workers never oversubscribe the machine."""
    from joblib import effective_n_jobs

    from ..runtime.threads import available_cores, resolve_threads

    if n_threads is not None:
        if n_threads != "auto":
            resolve_threads(n_threads)  # a clear error for a bad value
        pruner = clone(pruner).set_params(n_threads=n_threads)
    workers = effective_n_jobs(n_jobs)
    if workers <= 1 or pruner.get_params().get("n_threads", None) != "auto":
        return pruner
    return clone(pruner).set_params(n_threads=max(1, available_cores() // workers))


def run_jobs(pruner, jobs, total, on_result, n_jobs=None, backend=None, n_threads=None, progress=True,
             stacked=False):
    """Run :func:`fit_task` on every job and hand each result to ``on_result`` as it arrives.

    Parameters
    ----------
    pruner : estimator
        Template passed to every job.
    jobs : iterable of tuple
        ``(task_id, X, y, X_test, y_test)`` per task (consumed lazily).
    total : int
        Number of jobs (for the progress bar).
    on_result : callable
        Called in this process with each :class:`TaskRow`, in completion order.
    n_jobs : int, optional
        joblib's ``n_jobs``; None uses the backend's default (1 for joblib's default
        backend, every worker of a Dask cluster).
    n_threads : "auto", int or None, optional
        Threads of each worker's fit (see :func:`_share_cores`).
    backend : str, optional
        joblib backend name (``"loky"``, ``"threading"``, ``"dask"``...); None keeps the
        active joblib configuration.
    progress : bool
        Show a tqdm progress bar.
    stacked : bool, default=False
        Each job is ``(jobs, shared)``, a few tasks pruned as one stack by
        :func:`fit_task_stack`; ``on_result`` gets each of its rows.
    """
    from tqdm.auto import tqdm

    config = nullcontext() if backend is None else parallel_config(backend=backend)
    with config, tqdm(total=total, desc="bank build", unit="task", disable=not progress) as bar:
        try:
            parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)
        except ValueError as exc:
            raise ValueError(f"cannot build with backend={backend!r}, n_jobs={n_jobs!r}: {exc} (the build "
                             f"needs a backend that streams results back as tasks finish: 'loky', "
                             f"'threading', 'dask'...)") from None
        pruner = _share_cores(pruner, n_jobs, n_threads)
        if stacked:
            for rows in parallel(delayed(fit_task_stack)(pruner, *job) for job in jobs):
                for row in rows:
                    on_result(row)
                    bar.update(1)
            return
        for row in parallel(delayed(fit_task)(pruner, *job) for job in jobs):
            on_result(row)
            bar.update(1)
