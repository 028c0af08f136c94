"""Iterative filter pruning (the paper's Alg. 1) as a scikit-learn classifier."""

from __future__ import annotations

import time

import numpy as np
import torch

from .schedule import default_prune_every, default_prune_fraction, kept_after_events, pruning_iterations
from ..channels.scores import channel_scores
from ..channels.selection import Selection, in_blocks
from ..channels.surgery import extract, mask_channels, shrink_
from ..runtime.threads import uses_threads
from ..channels.filter_space import head_name
from .base import BasePruner
from .params import Interval, Options

__all__ = ["IterativeFilterPruner", "keep_top_scored"]


def keep_top_scored(current: np.ndarray, scores: np.ndarray, n_keep: int, unit: int = 1) -> np.ndarray:
    """The ``n_keep`` channels of ``current`` with the largest scores, sorted.

    Ties are broken towards the lower channel index, so the choice is deterministic. With
    ``unit > 1`` the channels come in whole blocks of ``unit`` (a grouped convolution's
    groups): the ``n_keep / unit`` blocks of largest mean score are kept.
    """
    if len(current) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(current)} channels")
    current = np.asarray(current)

    def top(values, k):
        return np.sort(np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")[:k])

    return current[in_blocks(top, np.asarray(scores, dtype=np.float64), n_keep, unit, "of these channels")]


class IterativeFilterPruner(BasePruner):
    """Iterative filter pruning (IFP, Alg. 1 of the MVP paper) of a pre-trained ResNet for one task.

    ``fit(X, y)`` (1) replaces the backbone's head by a linear layer for the task's
    classes, trained to its optimum on frozen pre-trained features (computed once);
    (2) runs ``n_iterations`` SGD iterations, and every ``prune_every`` iterations
    physically removes the fraction ``prune_fraction`` of each channel group's remaining
    channels with the smallest mean post-ReLU activation on the task's training images,
    until each group holds ``max(1, round((1 - pruning_ratio) * n))`` channels;
    (3) fine-tunes the pruned network for one epoch. Training runs in skorch; the
    optimizer is rebuilt after every pruning event.

    Parameters
    ----------
    backbone : torch.nn.Module
        Pre-trained torchvision-style ResNet; never modified.
    pruning_ratio : float, default=0.9
        Fraction ``r`` of every group's channels to remove, in (0, 1).
    n_iterations : int, default=200
        Pruning iterations ``J`` (SGD steps, not epochs).
    prune_every : int or None, default=None
        A pruning event happens every ``h`` iterations, starting at iteration 0. None uses
        ``round(0.3 * n_iterations)`` (:func:`~metaprune.pruners.schedule.default_prune_every`):
        events at 0, 0.3 J and 0.6 J, the paper's ``h = 60`` at ``J = 200``.
    prune_fraction : float, optional
        Fraction ``p`` of the remaining channels removed per event; default
        ``1 - (1 - r) ** (1 / floor(J / h))``. The last event always lands exactly on the
        target size.
    head_epochs : int, default=10
        ``K``: full-batch L-BFGS steps of the head on frozen features.
    head_l2 : float, default=1e-3
        L2 penalty of the head's weights (on the mean loss).
    finetune_epochs : int, default=1
        Epochs of fine-tuning after the last pruning iteration.
    lr : float, default=3e-2
        Base learning rate of SGD (cosine-annealed over all iterations). Chosen by
        measurement: of 1e-4 ... 1e-1, the rate whose held-out accuracy is never far below
        the best rate's, over 5-way tasks of digits, CIFAR-100 and Fashion-MNIST with the
        package's own pre-trained backbones (widths 8 and 16), J = 60 and 200, r = 0.5 and
        0.9 (``benchmarks/choose_defaults.py``, table in
        ``benchmarks/results/defaults/table.md``). The paper's 1e-4, meant to keep
        fine-tuning slight on full-width networks, stays near chance there; it is one call
        away: ``IterativeFilterPruner(backbone, **paper_parameters(IterativeFilterPruner))``
        (:func:`~metaprune.pruners.paper.paper_parameters`).
    batch_size : int, default=128
    momentum : float, default=0.9
    weight_decay : float, default=5e-4
    score_batch_size : int, default=256
        Images per forward pass when scoring channels.
    recalibrate_bn : bool, default=True
        After training, recompute BatchNorm running statistics exactly on the training
        images (one forward pass, no weight changes): short fine-tuning leaves them stale.
    surgery : {"physical", "mask"}, default="physical"
        "physical" slices the network at every pruning event, so later iterations are
        cheaper; "mask" keeps the full network and zeroes dropped channels (same
        mathematics, full cost; the reference the benchmark compares against). Either
        way the fitted network is physically pruned.
    input_shape : tuple of int, optional
        (C, H, W) to reshape flattened rows of ``X`` to; one entry may be -1.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    n_threads : "auto", int or None, default="auto"
        Threads of torch's CPU pool during ``fit`` and prediction: ``"auto"`` uses the
        cores idle when the call starts, at most torch's current setting (one on a busy
        2-core machine, where a second thread only waits), an int that many, None leaves
        torch's setting alone. The caller's setting is restored afterwards. Thread counts change float rounding, so
        pass an int for results that are bit-identical whatever the machine's load.
    callbacks : list of skorch callbacks, optional
        Extra callbacks for the skorch training run (e.g. an evaluation every n steps).
    random_state : int, RandomState or None
        Seeds the order of mini-batches: same seed, same selection.
    verbose : int, default=0
        Show a progress bar when positive.

    Attributes
    ----------
    classes_ : ndarray
        Class labels seen in ``fit``.
    selection_ : Selection
        Kept channels per group, in the pre-trained numbering.
    net_ : skorch.NeuralNetClassifier
        The fitted skorch net; ``net_.module_`` is the physically pruned network.
    n_params_ : int
        Parameters of the pruned network (including its head).
    flops_ : int
        FLOPs of one forward pass of the pruned network on one image.
    train_flops_ : int
        FLOPs spent by ``fit`` (feature passes, scoring passes, and 3x forward per
        training image for forward + backward).
    fit_time_ : float
        Wall-clock seconds of ``fit``.
    history_ : list of dict
        Per-iteration ``iteration``, ``phase`` ("prune"/"finetune"), ``loss``, ``lr`` and
        ``n_kept`` (channels per group during that iteration).
    pruning_path_ : list of (int, Selection)
        The iteration and resulting selection of every pruning event, in order (the last
        one is ``selection_``).
    filter_space_ : FilterSpace
        The backbone's channel groups.

    Examples
    --------
    >>> from metaprune import IterativeFilterPruner
    >>> from metaprune.backbone.resnet import cifar_resnet18
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 3, 8, 8)).astype("float32"); y = np.repeat([0, 1], 20)
    >>> ifp = IterativeFilterPruner(cifar_resnet18(width=4), pruning_ratio=0.5, n_iterations=4,
    ...                             prune_every=2, batch_size=8, random_state=0).fit(X, y)
    >>> ifp.selection_.n_kept["layer4"]
    16
    """

    _parameter_constraints = {
        **BasePruner._parameter_constraints,
        "n_iterations": Interval(int, 1, None, closed="left"),
        "prune_every": (Options(None), Interval(int, 1, None, closed="left")),
        "prune_fraction": (Options(None), Interval(float, 0, 1, closed="neither")),
        "finetune_epochs": Interval(int, 0, None, closed="left"),
        "surgery": Options("physical", "mask"),
    }

    def __init__(self, backbone=None, *, pruning_ratio=0.9, n_iterations=200, prune_every=None, prune_fraction=None,
                 head_epochs=10, head_l2=1e-3, finetune_epochs=1, lr=3e-2, batch_size=128, momentum=0.9,
                 weight_decay=5e-4, score_batch_size=256, recalibrate_bn=True, surgery="physical", input_shape=None,
                 device="cpu", n_threads="auto", callbacks=None, random_state=None, verbose=0):
        self.backbone = backbone
        self.pruning_ratio = pruning_ratio
        self.n_iterations = n_iterations
        self.prune_every = prune_every
        self.prune_fraction = prune_fraction
        self.head_epochs = head_epochs
        self.head_l2 = head_l2
        self.finetune_epochs = finetune_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.score_batch_size = score_batch_size
        self.recalibrate_bn = recalibrate_bn
        self.surgery = surgery
        self.input_shape = input_shape
        self.device = device
        self.n_threads = n_threads
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self):
        """The declared ranges, then the one check that relates two parameters."""
        super()._validate_params()
        if self.prune_every is not None and self.prune_every > self.n_iterations:
            raise ValueError(f"prune_every (h={self.prune_every}) must not exceed n_iterations "
                             f"(J={self.n_iterations})")

    def _prune_every(self) -> int:
        """``h``: the given ``prune_every``, or 0.3 J when None."""
        return self.prune_every if self.prune_every is not None else default_prune_every(self.n_iterations)

    def _schedule(self, space) -> dict:
        """Kept channels per group after each pruning event."""
        h = self._prune_every()
        events = pruning_iterations(self.n_iterations, h)
        p = self.prune_fraction
        if p is None:
            p = default_prune_fraction(self.pruning_ratio, self.n_iterations, h)
        n_keep = space.n_keep(self.pruning_ratio)
        return {g.name: g.unit * kept_after_events(g.size // g.unit, n_keep[g.name] // g.unit, p, len(events))
                for g in space}

    @uses_threads
    def fit(self, X, y):
        """Prune the backbone for the task given by images ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W)
            Preprocessed float images (or flattened rows with ``input_shape``).
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self
        """
        run = self._begin_run(X, y)

        def before_step(net, j):
            changed = j in run.events and run.event(net.module_, j)
            if changed:
                net.initialize_optimizer()
            return changed

        net, records = self._fine_tune(run.module, run.X, run.y, run.n_classes, run.n_steps,
                                       before_step=before_step, desc="IFP")
        return run.finish(net, records)

    def _begin_run(self, X, y, features=None) -> "_PruningRun":
        """Checks, the task head and the schedule: everything before the first iteration."""
        return _PruningRun(self, X, y, features)


class _PruningRun:
    """One IFP fit between its phases: the network to train, its pruning events, its path.

    ``fit`` trains ``module`` for ``n_steps`` iterations with ``event(module, j)`` before
    iterations ``j`` in ``events``; :func:`metaprune.pruners.many.fit_many` trains many runs'
    modules as one stack with the same events. ``finish`` makes the fitted estimator.
    """

    def __init__(self, pruner: IterativeFilterPruner, X, y, features=None):
        self.pruner = pruner
        self.start = time.perf_counter()
        self.X, self.y, self.classes, self.space = pruner._fit_common(X, y)
        self.n_classes = len(self.classes)
        self.schedule = pruner._schedule(self.space)
        h = pruner._prune_every()
        self.events = range(0, pruner.n_iterations, h)
        self.prune_every = h
        module = pruner._prepared_backbone()
        task_head = pruner._new_head(module, self.X, self.y, self.n_classes, features=features).to(pruner.device)
        module.set_submodule(head_name(module), task_head)
        self.module = module
        n_finetune = pruner.finetune_epochs * pruner._epoch_steps(len(self.X), pruner.batch_size)
        self.n_steps = pruner.n_iterations + n_finetune
        self.selection = Selection.full(self.space)
        self.hooks = []
        self.path = []

    @property
    def masked(self) -> bool:
        return self.pruner.surgery == "mask"

    def event(self, module, j, scores=None) -> bool:
        """The pruning event before iteration ``j``: score, keep the top channels, shrink ``module``.

        ``scores`` (per group, one per current channel) replaces the scoring pass when given:
        the first event's scores depend only on the images (see :func:`fit_many`). Returns
        True when ``module`` changed.
        """
        pruner, space, current = self.pruner, self.space, self.selection
        targets = {g: int(self.schedule[g][j // self.prune_every]) for g in space.names}
        if not any(targets[g] < len(current[g]) for g in space.names):
            return False
        if scores is None:
            scores = channel_scores(module, torch.from_numpy(self.X), space, batch_size=pruner.score_batch_size,
                                    device=pruner.device)
        pruner.train_flops_ += pruner._forward_flops(module, self.X) * len(self.X)
        if self.masked:  # full-size scores: read off the channels still kept
            scores = {g: scores[g][current[g]] for g in space.names}
        units = space.units
        target = Selection({g: keep_top_scored(current[g], scores[g], targets[g], units[g]) for g in space.names},
                           space)
        if self.masked:
            for handle in self.hooks:
                handle.remove()
            self.hooks = mask_channels(module, target, space)
        else:
            shrink_(module, space, current, target)
        self.selection = target
        self.path.append((j, target))
        return True

    def n_kept_at(self, j) -> dict:
        """Channels per group during iteration ``j``."""
        kept = Selection.full(self.space)
        for at, selection in self.path:
            if at <= j:
                kept = selection
        return kept.n_kept

    def finish(self, net, records):
        """The fitted estimator: records annotated, masks turned into the physical network."""
        pruner = self.pruner
        if self.masked:  # the result is the same physically small network either way
            for handle in self.hooks:
                handle.remove()
            net.module_ = extract(net.module_, self.selection, self.space)
        for record in records:
            record["phase"] = "prune" if record["iteration"] < pruner.n_iterations else "finetune"
            record["n_kept"] = self.n_kept_at(record["iteration"])
        pruner.pruning_path_ = self.path
        return pruner._finish(net, self.selection, self.space, self.X, self.classes, records, self.start)
