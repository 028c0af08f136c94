"""Fit many pruners at once: shared work across tasks and stacked training.

Two exact ideas (``fit_many``):

1. **Shared work.** The pre-trained network's penultimate features (which train IFP's task
   heads) and its per-channel activation means (IFP's first pruning event scores the
   unpruned network) depend on the image only, not on the task. Tasks drawn from one data set
   share images, so they are computed once per distinct image and each task reads its own
   rows (a task's channel score is the mean of its images' scores).
2. **Stacked training.** Pruners with the same schedule have the same channel counts in every
   group at every iteration, so up to ``tasks_at_once`` of them train as one grouped network
   (:mod:`metaprune.channels.stacking`, :func:`metaprune.pruners.stacked.train_stacked`).

Each estimator comes back fitted exactly as by its own ``fit`` (same ``net_``, ``selection_``,
``history_``, ``train_flops_``, ``predict``, ``save``) up to float rounding: the grouped
kernels add in another order, so near-tied channel scores may be ordered differently at a
later pruning event.
"""

from __future__ import annotations

import numpy as np
import torch

from ..channels.filter_space import _has_resnet_layout
from ..backbone.penultimate import penultimate_features
from ..backbone.resnet import fingerprint
from ..channels.filter_space import FilterSpace
from ..channels.scores import channel_scores
from ..runtime.threads import torch_threads
from .base import _progress
from .engine import fit_for_iterations
from .ifp import IterativeFilterPruner
from .oneshot import MetaVotePruner, UniformPruner

__all__ = ["fit_many", "shared_work", "shared_work_of_images", "stack_key"]

_STACKABLE = (IterativeFilterPruner, MetaVotePruner, UniformPruner)
# parameters that may differ between the tasks of one stack
_PER_TASK = {"backbone", "bank", "random_state", "verbose", "n_threads", "exclude", "similarity", "n_neighbors",
             "temperature", "exclude_shared_classes", "input_shape", "score_batch_size", "head_epochs", "head_l2",
             "recalibrate_bn"}


def stack_key(estimator, n_samples: int, n_classes: int, fingerprints=None):
    """What must be equal for two fits to train in one stack (None: the fit trains alone).

    Equal type and training parameters (the schedule, learning rate, batch size, device...),
    the same pre-trained network (its weights' fingerprint), and the same number of training images and classes. A fit
    with callbacks (they need a skorch net per step) or mask surgery trains alone, and so does
    any fit of a backbone that is not a ResNet (stacking covers the ResNet's layer kinds).
    ``fingerprints`` (a dict) caches the backbones' fingerprints across calls.
    """
    if not isinstance(estimator, _STACKABLE) or estimator.callbacks:
        return None
    if getattr(estimator, "surgery", "physical") != "physical":
        return None
    backbone = estimator._backbone()
    if backbone is not None and not _has_resnet_layout(backbone):
        return None  # stacks are built for ResNets' layers; other architectures train one at a time
    params = {k: v for k, v in estimator.get_params(deep=False).items() if k not in _PER_TASK}
    return (type(estimator).__name__, tuple(sorted((k, repr(v)) for k, v in params.items())),
            _fingerprint(estimator._backbone(), fingerprints), int(n_samples), int(n_classes))


def _fingerprint(backbone, cache=None) -> str:
    """The backbone's weights fingerprint, hashed once per module object when ``cache`` (a dict) is given."""
    if cache is None:
        return fingerprint(backbone)
    if id(backbone) not in cache:
        cache[id(backbone)] = (backbone, fingerprint(backbone))  # the module is held so its id stays its own
    return cache[id(backbone)][1]


def _distinct_images(Xs):
    """The distinct images of all tasks and, per task, the row of each of its images there."""
    flat = [np.ascontiguousarray(X, dtype=np.float32).reshape(len(X), -1) for X in Xs]
    rows = np.concatenate(flat)
    keys = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    bounds = np.cumsum([0] + [len(X) for X in Xs])
    shape = np.asarray(Xs[0]).shape[1:]
    return rows[first].reshape(-1, *shape), [inverse[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def shared_work(estimators, Xs, fingerprints=None) -> list:
    """What IFP fits share across tasks, computed once per distinct image.

    Parameters
    ----------
    estimators : list of pruners
    Xs : list of arrays
        Each estimator's training images.
    fingerprints : dict, optional
        A cache of backbone fingerprints shared by the calls of one ``fit_many``.

    Returns
    -------
    list
        Per estimator, None (not an IFP fit) or ``(features, scores)``: the pre-trained
        network's penultimate features of its images (rows in its order), and its first
        pruning event's channel scores (per group, the mean over its images of each image's
        scores). :func:`fit_many` takes them as ``shared_work``.
    """
    found = _shared_work(estimators, Xs, fingerprints)
    return [found.get(i) for i in range(len(estimators))]


def _shared_work(estimators, Xs, fingerprints=None):
    """Per IFP fit: (penultimate features, first-event scores per image) of its images, computed once."""
    ifp = [i for i, e in enumerate(estimators) if isinstance(e, IterativeFilterPruner)]
    out = {}
    by_backbone = {}
    for i in ifp:  # clones hold copies of one backbone: the same weights are the same network
        by_backbone.setdefault(_fingerprint(estimators[i]._backbone(), fingerprints), []).append(i)
    for members in by_backbone.values():
        images, rows = _distinct_images([Xs[i] for i in members])
        found = shared_work_of_images(estimators[members[0]], images, rows)
        out.update(zip(members, found))
    return out


def shared_work_of_images(estimator, images, rows) -> list:
    """:func:`shared_work` for tasks given as rows of one image array (a bank's data set).

    Parameters
    ----------
    estimator : IterativeFilterPruner
        Its backbone and batch sizes are used.
    images : array of shape (n_images, C, H, W)
        Every image any of the tasks uses, once.
    rows : list of int arrays
        Per task, the rows of ``images`` it trains on, in its order.

    Returns
    -------
    list of (features, scores)
        One entry per task, as in :func:`shared_work`.
    """
    module = estimator._prepared_backbone()
    features = penultimate_features(module, images, batch_size=max(estimator.batch_size, 256),
                                    device=estimator.device)
    space = FilterSpace.from_model(module)
    scores = channel_scores(module, torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)), space,
                            batch_size=estimator.score_batch_size, device=estimator.device, per_image=True)
    return [(features[r], {g: v[r].mean(axis=0) for g, v in scores.items()}) for r in rows]


def _account(run, segments):
    """FLOPs of the training steps, as the engine counts them: 3 x forward per training image."""
    pruner = run.pruner
    step_images = min(pruner.batch_size, len(run.X))
    for flops, n_steps in segments:
        pruner.train_flops_ += 3 * flops * step_images * n_steps


def _fit_stack(runs, device, progress):
    from .stacked import train_stacked

    first = runs[0].pruner
    events = set(runs[0].events)
    n_steps = runs[0].n_steps
    boundaries = {}  # iteration -> forward FLOPs of each network from there on

    def flops_now(networks, j):
        boundaries[j] = [run.pruner._forward_flops(net, run.X) for run, net in zip(runs, networks)]

    def before_event(networks, j):
        changed = [run.event(net, j) for run, net in zip(runs, networks)]
        if any(changed):
            flops_now(networks, j)
        return any(changed)

    networks = [run.module for run in runs]
    flops_now(networks, 0)
    networks, records = train_stacked(
        networks, [run.X for run in runs], [run.y for run in runs], n_steps, lr=first.lr, momentum=first.momentum,
        weight_decay=first.weight_decay, batch_size=first.batch_size, seeds=[run.pruner._seed_ for run in runs],
        device=device, events=events - {0}, before_event=before_event, progress=progress)
    starts = sorted(boundaries) + [n_steps]
    for t, run in enumerate(runs):
        _account(run, [(boundaries[a][t], b - a) for a, b in zip(starts[:-1], starts[1:])])
    return networks, records


def _wrap(run, module):
    """The trained network in the estimator's skorch net, as ``fit`` leaves it."""
    pruner = run.pruner
    net, _ = fit_for_iterations(module, run.X, run.y, run.n_classes, 0, lr=pruner.lr, momentum=pruner.momentum,
                                weight_decay=pruner.weight_decay, batch_size=pruner.batch_size, device=pruner.device,
                                seed=pruner._seed_)
    return net


def fit_many(estimators, Xs, ys, tasks_at_once=None, verbose: int = 0, shared=None):
    """Fit unfitted pruners on their own data sets at once; each comes back as if fitted alone.

    Parameters
    ----------
    estimators : list of IterativeFilterPruner, MetaVotePruner or UniformPruner
        Unfitted (or to be refitted) estimators; each is fitted in place. Those with the same
        training parameters and backbone and the same numbers of training images and classes
        (:func:`stack_key`) train together, ``tasks_at_once`` at a time; the others alone.
    Xs, ys : lists of array-like
        Each estimator's training images and labels, as its ``fit`` takes them.
    tasks_at_once : int or None, default=None
        Networks per stack. None: 8 when the estimators train on a GPU, 1 on the CPU, where
        a stack trains slower than its tasks one at a time (``benchmarks/results/many_tasks.md``)
        but the shared passes still pay. 1 given explicitly fits every estimator by its own
        ``fit`` (with the shared passes only when ``shared`` is given).
    verbose : int, default=0
        A progress bar over the stacks' iterations.
    shared : list, optional
        :func:`shared_work` of these estimators and images, when the caller computed it
        already (a bank build computes it once for all its tasks); default: computed here.

    Returns
    -------
    list
        The estimators, fitted, in the given order.

    Notes
    -----
    ``train_flops_`` counts what each fit would spend alone (the shared passes are counted
    for every task that uses them), so fits compare whichever way they ran. Torch threads
    follow the first estimator's ``n_threads``.

    Examples
    --------
    >>> from metaprune import IterativeFilterPruner
    >>> from metaprune.pruners.many import fit_many
    >>> pruners = fit_many([IterativeFilterPruner(bb, random_state=s) for s in range(4)], Xs, ys)  # doctest: +SKIP
    """
    estimators, Xs, ys = list(estimators), list(Xs), list(ys)
    if not (len(estimators) == len(Xs) == len(ys)):
        raise ValueError(f"one data set per estimator: {len(estimators)} estimators, {len(Xs)} image sets, "
                         f"{len(ys)} label vectors")
    automatic = tasks_at_once is None
    if not automatic and (isinstance(tasks_at_once, bool) or not isinstance(tasks_at_once, (int, np.integer))
                          or tasks_at_once < 1):
        raise ValueError(f"tasks_at_once must be a positive int or None, got {tasks_at_once!r}")
    if not estimators:
        return []
    for e in estimators:
        if not isinstance(e, _STACKABLE):
            raise TypeError(f"fit_many fits IterativeFilterPruner, MetaVotePruner and UniformPruner, "
                            f"got {type(e).__name__}")
    if automatic:
        on_cpu = all(torch.device(e.device).type == "cpu" for e in estimators)
        tasks_at_once = 1 if on_cpu else 8
    with torch_threads(estimators[0].n_threads):
        if tasks_at_once == 1 and shared is None and not automatic:
            return [e.fit(X, y) for e, X, y in zip(estimators, Xs, ys)]
        for e in estimators:
            e._check_params()
        fingerprints = {}  # every backbone object hashed once for the whole call
        if shared is None:
            shared = shared_work(estimators, Xs, fingerprints)
        elif len(shared) != len(estimators):
            raise ValueError(f"one shared_work entry per estimator: {len(shared)} for {len(estimators)}")
        groups = {}
        for i, (e, X, y) in enumerate(zip(estimators, Xs, ys)):
            key = stack_key(e, len(X), len(np.unique(np.asarray(y))), fingerprints)
            groups.setdefault(key if key is not None else ("alone", i), []).append(i)
        for key, members in groups.items():
            if key[0] == "alone":
                estimators[members[0]].fit(Xs[members[0]], ys[members[0]])
                continue
            for start in range(0, len(members), tasks_at_once):
                chunk = members[start:start + tasks_at_once]
                _fit_chunk([estimators[i] for i in chunk], [Xs[i] for i in chunk], [ys[i] for i in chunk],
                           [shared[i] for i in chunk], verbose)
    return estimators


def _fit_chunk(estimators, Xs, ys, shared, verbose):
    if len(estimators) == 1 and shared[0] is None:  # nothing to stack with or share: the estimator's own fit
        estimators[0].fit(Xs[0], ys[0])
        return
    runs = [e._begin_run(X, y, features=None if s is None else s[0]) for e, X, y, s in zip(estimators, Xs, ys, shared)]
    if len(runs) == 1:  # the shared passes, then the estimator's own loop
        _fit_alone(runs[0], shared[0])
        return
    if 0 in runs[0].events:  # the first event scores the unpruned network: per-image scores, shared
        for run, s in zip(runs, shared):
            run.event(run.module, 0, scores=None if s is None else s[1])
    by_shape = {}  # e.g. MVP with pruning_ratio=None keeps its neighbours' sizes, which may differ
    for run, s in zip(runs, shared):
        shapes = tuple(tuple(p.shape) for p in run.module.parameters())
        by_shape.setdefault(shapes, []).append((run, s))
    if len(by_shape) > 1:
        for members in by_shape.values():
            _train_runs([r for r, _ in members], [s for _, s in members], verbose)
        return
    _train_runs(runs, shared, verbose)


def _train_runs(runs, shared, verbose):
    """Train runs whose networks have equal shapes: as one stack, or alone when there is one."""
    if len(runs) == 1:
        _fit_alone(runs[0], shared[0], first_event_done=0 in runs[0].events)
        return
    progress = _progress(runs[0].n_steps, f"{type(runs[0].pruner).__name__} x{len(runs)}", verbose)
    try:
        networks, records = _fit_stack(runs, runs[0].pruner.device, progress)
    finally:
        if progress is not None:
            progress.close()
    for run, module, rec in zip(runs, networks, records):
        run.finish(_wrap(run, module), rec)


def _fit_alone(run, shared, first_event_done=False):
    """One run through the skorch engine, its first event scored from the shared per-image scores."""
    def before_step(net, j):
        if j == 0 and first_event_done:
            return True  # the network was pruned at event 0 already: only the new-optimizer step remains
        scores = shared[1] if j == 0 and shared is not None else None
        changed = j in run.events and run.event(net.module_, j, scores=scores)
        if changed:
            net.initialize_optimizer()
        return changed

    net, records = run.pruner._fine_tune(run.module, run.X, run.y, run.n_classes, run.n_steps,
                                         before_step=before_step, desc=type(run.pruner).__name__)
    run.finish(net, records)
