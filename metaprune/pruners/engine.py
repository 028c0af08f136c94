"""The skorch training engine shared by the pruners: fast batches and per-iteration schedules.

Pruners train for a fixed number of SGD *iterations* (not epochs), change the learning
rate every iteration (cosine schedule) and, for iterative pruning, reshape the network
between iterations. :class:`IterationSchedule` does that as a skorch callback;
:func:`make_net` builds the :class:`skorch.NeuralNetClassifier` that runs it.
"""

from __future__ import annotations

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from torch import nn
from torch.utils.data import BatchSampler, Dataset, RandomSampler

from ..data.batches import image_tensor
from .schedule import cosine_learning_rate

__all__ = ["BatchDataset", "IterationSchedule", "make_net", "fit_net", "iteration_batches", "fit_for_iterations"]


class BatchDataset(Dataset):
    """A dataset indexed by whole batches of indices (one tensor gather per batch).

    skorch's default dataset collates samples one by one; for small images that costs
    as much as a pruned network's forward pass, so training indexes whole batches.
    """

    def __init__(self, X, y):
        self.X = image_tensor(X)  # C-contiguous: gathered batches are then contiguous too
        self.y = torch.as_tensor(np.asarray(y))

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        index = torch.as_tensor(index)
        return self.X[index], self.y[index]


class IterationSchedule(Callback):
    """skorch callback: cosine learning rate per iteration, an optional hook before each step,
    and a per-iteration record of the loss.

    Parameters
    ----------
    base_lr : float
        Learning rate at iteration 0.
    total_steps : int
        Length of the cosine schedule.
    before_step : callable, optional
        ``before_step(net, iteration)``, called before each training step (pruning events
        reshape ``net.module_`` and rebuild the optimizer here).
    progress : tqdm progress bar, optional
    """

    def __init__(self, base_lr, total_steps, before_step=None, progress=None):
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.before_step = before_step
        self.progress = progress

    def initialize(self):
        self.iteration_ = 0
        self.records_ = []
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        if self.before_step is not None:
            self.before_step(net, self.iteration_)
        lr = cosine_learning_rate(self.base_lr, self.iteration_, self.total_steps)
        for group in net.optimizer_.param_groups:
            group["lr"] = lr
        self._lr = lr

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        if not training:
            return
        self.records_.append({"iteration": self.iteration_, "loss": float(loss.item()), "lr": self._lr})
        self.iteration_ += 1
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def make_net(module: nn.Module, n_classes: int, *, lr: float, momentum: float, weight_decay: float,
             batch_size: int, device, callbacks=(), optimizer=torch.optim.SGD, **kwargs) -> NeuralNetClassifier:
    """The skorch classifier that trains and serves a (pruned) network."""
    return NeuralNetClassifier(
        module=module,
        criterion=nn.CrossEntropyLoss,
        optimizer=optimizer,
        lr=lr,
        optimizer__momentum=momentum,
        optimizer__weight_decay=weight_decay,
        batch_size=batch_size,
        max_epochs=1,
        train_split=None,
        classes=list(range(n_classes)),
        device=device,
        callbacks=list(callbacks),
        verbose=0,
        **kwargs,
    )


def fit_net(net, X, y=None):
    """``net.fit(X, y)`` of skorch, except that Ctrl-C stops it with ``KeyboardInterrupt``.

    skorch's ``fit`` / ``partial_fit`` catch ``KeyboardInterrupt`` and return a half-trained
    net as if fitted, and the caller's Ctrl-C is lost (a bank would store that task as
    complete). This runs the same steps (initialise, ``on_train_begin``, the fit loop,
    ``on_train_end``) without that catch. Every skorch fit in metaprune goes through it.

    Returns
    -------
    net
    """
    net.initialize()
    net.notify("on_train_begin", X=X, y=y)
    net.fit_loop(X, y)
    net.notify("on_train_end", X=X, y=y)
    return net


def iteration_batches(n_samples: int, n_steps: int, batch_size: int, seed: int) -> BatchSampler:
    """The mini-batches of a training run: ``n_steps`` batches of indices from reshuffled passes.

    Every run of ``n_steps`` iterations on ``n_samples`` images with this seed draws the same
    batches, whether the network trains alone (:func:`fit_for_iterations`) or in a stack
    (:func:`metaprune.pruners.stacked.train_stacked`).

    Parameters
    ----------
    n_samples, n_steps : int
    batch_size : int
        Images per batch; at most ``n_samples``.
    seed : int

    Returns
    -------
    torch.utils.data.BatchSampler
        Iterating it yields lists of ``batch_size`` indices (one batch per iteration).
    """
    generator = torch.Generator().manual_seed(int(seed))
    return BatchSampler(RandomSampler(range(n_samples), replacement=False, num_samples=max(1, n_steps) * batch_size,
                                      generator=generator), batch_size, drop_last=False)


def fit_for_iterations(module: nn.Module, X: np.ndarray, y: np.ndarray, n_classes: int, n_steps: int, *,
                       lr: float, momentum: float, weight_decay: float, batch_size: int, device, seed: int,
                       before_step=None, callbacks=(), progress=None):
    """Train ``module`` for exactly ``n_steps`` SGD iterations through skorch.

    Mini-batches are drawn from reshuffled passes over the data (a seeded sampler), the
    learning rate follows a cosine schedule over the ``n_steps`` iterations, and
    ``before_step(net, j)`` runs before iteration ``j``.

    Returns
    -------
    net : skorch.NeuralNetClassifier
        The fitted net (``net.module_`` is the trained network).
    records : list of dict
        Per-iteration ``{"iteration", "loss", "lr"}``.
    """
    schedule = IterationSchedule(lr, n_steps, before_step=before_step, progress=progress)
    batch_size = min(batch_size, len(X))
    sampler = iteration_batches(len(X), n_steps, batch_size, seed)
    net = make_net(module, n_classes, lr=lr, momentum=momentum, weight_decay=weight_decay,
                   batch_size=batch_size, device=device, callbacks=[("iteration_schedule", schedule), *callbacks],
                   iterator_train__batch_size=None, iterator_train__sampler=sampler)
    try:
        if n_steps > 0:
            fit_net(net, BatchDataset(X, y))
        else:
            net.initialize()
    finally:  # training-time hooks are closures: drop them so the fitted net pickles
        schedule.before_step = schedule.progress = None
    if len(schedule.records_) != max(n_steps, 0):  # a callback that stopped training early
        raise RuntimeError(f"training stopped after {len(schedule.records_)} of {n_steps} iterations")
    return net, schedule.records_
