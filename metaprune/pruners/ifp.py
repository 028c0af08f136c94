"""Iterative filter pruning (the paper's Alg. 1) as a scikit-learn classifier."""

from __future__ import annotations

import time

import numpy as np
import torch

from .schedule import default_prune_fraction, kept_after_events, pruning_iterations
from ..channels.scores import channel_scores
from ..channels.selection import Selection
from ..channels.surgery import extract, mask_channels, shrink_
from ..runtime.threads import uses_threads
from ..channels.filter_space import head_name
from .base import BasePruner
from .params import Interval, Options

__all__ = ["IterativeFilterPruner", "keep_top_scored"]


def keep_top_scored(current: np.ndarray, scores: np.ndarray, n_keep: int) -> np.ndarray:
    """The ``n_keep`` channels of ``current`` with the largest scores, sorted.

    Ties are broken towards the lower channel index, so the choice is deterministic.
    """
    if len(current) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(current)} channels")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.sort(np.asarray(current)[order[:n_keep]])


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
    prune_every : int, default=60
        A pruning event happens every ``h`` iterations, starting at iteration 0.
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
    lr : float, default=1e-4
        Base learning rate of SGD (cosine-annealed over all iterations).
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
        "prune_every": Interval(int, 1, None, closed="left"),
        "prune_fraction": (Options(None), Interval(float, 0, 1, closed="neither")),
        "finetune_epochs": Interval(int, 0, None, closed="left"),
        "surgery": Options("physical", "mask"),
    }

    def __init__(self, backbone=None, *, pruning_ratio=0.9, n_iterations=200, prune_every=60, prune_fraction=None,
                 head_epochs=10, head_l2=1e-3, finetune_epochs=1, lr=1e-4, batch_size=128, momentum=0.9,
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
        if self.prune_every > self.n_iterations:
            raise ValueError(f"prune_every (h={self.prune_every}) must not exceed n_iterations "
                             f"(J={self.n_iterations})")

    def _schedule(self, space) -> dict:
        """Kept channels per group after each pruning event."""
        events = pruning_iterations(self.n_iterations, self.prune_every)
        p = self.prune_fraction
        if p is None:
            p = default_prune_fraction(self.pruning_ratio, self.n_iterations, self.prune_every)
        n_keep = space.n_keep(self.pruning_ratio)
        return {g.name: kept_after_events(g.size, n_keep[g.name], p, len(events)) for g in space}

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
        start = time.perf_counter()
        X, y, classes, space = self._fit_common(X, y)
        schedule = self._schedule(space)
        module = self._prepared_backbone()
        task_head = self._new_head(module, X, y, len(classes)).to(self.device)
        module.set_submodule(head_name(module), task_head)
        X_scores = torch.from_numpy(X)
        masked = self.surgery == "mask"
        state = {"selection": Selection.full(space), "hooks": []}
        kept_log, path = [], []

        def before_step(net, j):
            changed = False
            if j < self.n_iterations and j % self.prune_every == 0:
                event = j // self.prune_every
                current = state["selection"]
                targets = {g: int(schedule[g][event]) for g in space.names}
                if any(targets[g] < len(current[g]) for g in space.names):
                    scores = channel_scores(net.module_, X_scores, space, batch_size=self.score_batch_size,
                                            device=self.device)
                    self.train_flops_ += self._forward_flops(net.module_, X) * len(X)
                    if masked:  # full-size scores: read off the channels still kept
                        scores = {g: scores[g][current[g]] for g in space.names}
                    target = Selection({g: keep_top_scored(current[g], scores[g], targets[g])
                                        for g in space.names}, space)
                    if masked:
                        for handle in state["hooks"]:
                            handle.remove()
                        state["hooks"] = mask_channels(net.module_, target, space)
                    else:
                        shrink_(net.module_, space, current, target)
                    net.initialize_optimizer()
                    state["selection"] = target
                    path.append((j, target))
                    changed = True
            kept_log.append(state["selection"].n_kept)
            return changed

        n_finetune = self.finetune_epochs * self._epoch_steps(len(X), self.batch_size)
        net, records = self._fine_tune(module, X, y, len(classes), self.n_iterations + n_finetune,
                                       before_step=before_step, desc="IFP")
        if masked:  # the result is the same physically small network either way
            for handle in state["hooks"]:
                handle.remove()
            net.module_ = extract(net.module_, state["selection"], space)
        for record, kept in zip(records, kept_log):
            record["phase"] = "prune" if record["iteration"] < self.n_iterations else "finetune"
            record["n_kept"] = kept
        self.pruning_path_ = path
        return self._finish(net, state["selection"], space, X, classes, records, start)
