"""Analyses of pruned models from the paper's study (section 3).

Pure functions over selections and state dicts, in the pre-trained numbering:

- :func:`iou_per_group`: overlap of two tasks' kept channels (Fig. 3);
- :func:`vote_recall`: ``b(a)``, the chance that a channel kept by exactly ``a`` of a target
  task's neighbours is also kept by the target (Fig. 4, left);
- :func:`covered_histogram`: ``d(a)``, how many of the target's kept channels were kept by
  exactly ``a`` neighbours (Fig. 4, right; ``a = 0`` counts the channels no neighbour covers);
- :func:`weight_change`: mean absolute change of each layer's weights between two moments of
  a pruning run, on the weights both moments have (Fig. 2).

:class:`TrainingMonitor` is a skorch callback that records, every few iterations of a fit,
held-out accuracy and a copy of the weights, so that the curves above can be drawn for a run
of :class:`~metaprune.IterativeFilterPruner` (pass it in ``callbacks``; the pruner's
``pruning_path_`` gives the selection in effect at each recorded iteration).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from skorch.callbacks import Callback

from .data.batches import forward_batches
from .channels.filter_space import FilterSpace
from .channels.selection import Selection
from .channels.transfer import expand_state, gather_state
from .meta.voting import iou_per_group, vote_counts

__all__ = ["iou_per_group", "vote_recall", "covered_histogram", "weight_change", "selection_at",
           "TrainingMonitor"]


def _votes_and_target(target: Selection, neighbours: Sequence[Selection], sizes: Mapping):
    neighbours = list(neighbours)
    if not neighbours:
        raise ValueError("at least one neighbour selection is needed")
    votes = vote_counts(neighbours, sizes)
    missing = [g for g in sizes if g not in target]
    if missing:
        raise ValueError(f"the target selection lacks group(s) {missing}")
    return votes, len(neighbours)


def covered_histogram(target: Selection, neighbours: Sequence[Selection], sizes: Mapping) -> dict:
    """``d(a)``: the target's kept channels counted by how many neighbours kept them.

    Parameters
    ----------
    target : Selection
        The target task's selection (pre-trained numbering).
    neighbours : sequence of Selection
        The ``N`` neighbours' selections.
    sizes : mapping of str to int
        Pre-trained channels per group (``FilterSpace.sizes``).

    Returns
    -------
    dict of str to numpy.ndarray
        Per group, an int64 array of length ``N + 1``: entry ``a`` is the number of the
        target's kept channels that exactly ``a`` neighbours kept. The entries sum to the
        target's kept count; entry 0 counts the channels no neighbour covers.

    Examples
    --------
    >>> t = Selection({"g": [0, 1, 2]})
    >>> covered_histogram(t, [Selection({"g": [0, 1]}), Selection({"g": [0, 3]})], {"g": 4})["g"]
    array([1, 1, 1])
    """
    votes, n = _votes_and_target(target, neighbours, sizes)
    return _covered(votes, target, n)


def _covered(votes: dict, target: Selection, n: int) -> dict:
    return {g: np.bincount(votes[g][np.asarray(target[g])], minlength=n + 1).astype(np.int64) for g in votes}


def vote_recall(target: Selection, neighbours: Sequence[Selection], sizes: Mapping) -> dict:
    """``b(a)``: the fraction of channels with exactly ``a`` votes that the target also kept.

    Parameters
    ----------
    target, neighbours, sizes
        As in :func:`covered_histogram`.

    Returns
    -------
    dict of str to numpy.ndarray
        Per group, a float array of length ``N``: entry ``a - 1`` is
        ``|B(a) ∩ Ω_target| / |B(a)|`` where ``B(a)`` are the channels kept by exactly ``a``
        neighbours; NaN where no channel has ``a`` votes.

    Examples
    --------
    >>> t = Selection({"g": [0, 1, 2]})
    >>> vote_recall(t, [Selection({"g": [0, 1]}), Selection({"g": [0, 3]})], {"g": 4})["g"]
    array([0.5, 1. ])
    """
    votes, n = _votes_and_target(target, neighbours, sizes)
    covered = _covered(votes, target, n)
    out = {}
    for g in sizes:
        with_a = np.bincount(votes[g], minlength=n + 1)[1:].astype(np.float64)
        hit = covered[g][1:].astype(np.float64)
        out[g] = np.divide(hit, with_a, out=np.full(n, np.nan), where=with_a > 0)
    return out


def selection_at(path: Sequence, iteration: int, space: FilterSpace) -> Selection:
    """The selection in effect just after ``iteration`` of a pruning run.

    Parameters
    ----------
    path : sequence of (int, Selection)
        ``(iteration, selection)`` of each pruning event, in order (``pruning_path_``).
    iteration : int
        A training iteration (0-based); events at iterations ``<= iteration`` apply.
    space : FilterSpace
        The pre-trained filter space (the full selection applies before any event).

    Returns
    -------
    Selection
    """
    current = Selection.full(space)
    for at, selection in path:
        if at > iteration:
            break
        current = selection
    return current


def weight_change(before: Mapping, selection_before: Selection, after: Mapping, selection_after: Selection,
                  space: FilterSpace) -> dict:
    """Mean absolute change of each layer's weight between two moments of a run.

    The two state dicts may come from different sizes of the network (channels pruned in
    between); they are compared on the weights both have, in the pre-trained numbering.

    Parameters
    ----------
    before, after : mapping of str to torch.Tensor
        State dicts of the (pruned) network at the two moments.
    selection_before, selection_after : Selection
        The channels each state dict holds.
    space : FilterSpace
        The pre-trained filter space.

    Returns
    -------
    dict of str to float
        Per weight tensor of a convolution or linear layer (keys ending in ``.weight`` with at
        least 2 dimensions), the mean of ``|after - before|`` over the shared entries.

    Examples
    --------
    >>> from metaprune.backbone.resnet import cifar_resnet18
    >>> net = cifar_resnet18(width=2)
    >>> space = FilterSpace.from_model(net)
    >>> full = Selection.full(space)
    >>> state = net.state_dict()
    >>> weight_change(state, full, state, full, space)["conv1.weight"]
    0.0
    """
    common = Selection({g: np.intersect1d(selection_before[g], selection_after[g]) for g in space.names}, space)
    if any(len(v) == 0 for v in common.values()):
        raise ValueError("the two selections share no channel in some group")
    keys = [k for k, v in after.items() if k.endswith(".weight") and v.ndim >= 2 and k in before]
    a_full, _ = expand_state({k: before[k].detach().float().cpu() for k in keys}, selection_before, space)
    b_full, _ = expand_state({k: after[k].detach().float().cpu() for k in keys}, selection_after, space)
    a, b = gather_state(a_full, common, space), gather_state(b_full, common, space)
    return {k: float((b[k] - a[k]).abs().mean()) for k in keys}


class TrainingMonitor(Callback):
    """skorch callback: held-out accuracy and weight snapshots every ``every`` iterations.

    Parameters
    ----------
    every : int
        Record after iterations ``every - 1, 2 * every - 1, ...`` (0-based).
    X_eval, y_eval : array-like, optional
        Held-out images and class *indices* (0..n_classes-1, in the order of the pruner's
        ``classes_``). When given, ``accuracy_`` holds the accuracy of the network as it
        stands (eval mode, current BatchNorm running statistics).
    snapshots : bool, default=False
        Also keep a CPU copy of the weights in ``snapshots_``.
    batch_size : int, default=256

    Attributes
    ----------
    iterations_ : list of int
        The recorded iterations.
    accuracy_ : list of float
    snapshots_ : list of dict
    """

    def __init__(self, every: int, X_eval=None, y_eval=None, snapshots: bool = False, batch_size: int = 256):
        self.every = every
        self.X_eval = X_eval
        self.y_eval = y_eval
        self.snapshots = snapshots
        self.batch_size = batch_size

    def initialize(self):
        if not isinstance(self.every, (int, np.integer)) or self.every < 1:
            raise ValueError(f"every must be a positive int, got {self.every!r}")
        self.count_ = 0
        self.iterations_, self.accuracy_, self.snapshots_ = [], [], []
        return self

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        self.count_ += 1
        if self.count_ % self.every:
            return
        self.iterations_.append(self.count_ - 1)
        module = net.module_
        if self.X_eval is not None:
            self.accuracy_.append(self._accuracy(module, net.device))
        if self.snapshots:
            self.snapshots_.append({k: v.detach().cpu().clone() for k, v in module.state_dict().items()})

    @torch.no_grad()
    def _accuracy(self, module, device) -> float:
        y = np.asarray(self.y_eval)
        predicted = [module(batch).argmax(1).cpu().numpy()
                     for _, batch in forward_batches(module, self.X_eval, self.batch_size, device)]
        return float(np.mean(np.concatenate(predicted) == y))
