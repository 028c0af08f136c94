"""Train K tasks' networks as one stack: the same steps as K runs of the skorch engine.

:func:`train_stacked` runs the iterations of :func:`metaprune.pruners.engine.fit_for_iterations`
for K networks at once, on :func:`metaprune.channels.stacking.stack_networks` of them: each
task draws its own seeded mini-batches (:func:`~metaprune.pruners.engine.iteration_batches`),
the loss is the sum of the K tasks' mean cross-entropies (so each task's weights get their
own gradient), and SGD with momentum and weight decay acts elementwise, so every task follows
the trajectory it follows alone, up to float rounding. Before chosen iterations a hook may
reshape the tasks' networks (IFP's pruning events): the stack is split, the hook changes the
networks, and they are stacked again with a new optimizer, as the engine rebuilds its
optimizer after an event.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..channels.stacking import stack_networks, unstack_network
from ..data.batches import image_tensor
from .engine import iteration_batches
from .schedule import cosine_learning_rate

__all__ = ["train_stacked"]


def train_stacked(networks, Xs, ys, n_steps: int, *, lr: float, momentum: float, weight_decay: float,
                  batch_size: int, seeds, device="cpu", events=(), before_event=None, progress=None):
    """Train K networks of equal shapes for ``n_steps`` SGD iterations as one stack.

    Parameters
    ----------
    networks : sequence of torch.nn.Module
        K networks with the same module tree and shapes, each with its task head; they are
        not modified.
    Xs, ys : sequences of arrays
        Each task's images ``(n, C, H, W)`` and encoded labels; every task has the same
        number of images ``n`` (so the same batch size) and of classes.
    n_steps : int
    lr, momentum, weight_decay, batch_size
        As in :func:`~metaprune.pruners.engine.fit_for_iterations` (cosine learning rate).
    seeds : sequence of int
        Each task's seed of its mini-batches.
    device : str or torch.device
    events : collection of int
        Iterations before which ``before_event`` runs.
    before_event : callable, optional
        ``before_event(networks, j)`` gets the K current networks (ordinary modules) and may
        change them in place; it returns True when it did.
    progress : tqdm progress bar, optional

    Returns
    -------
    networks : list of torch.nn.Module
        The K trained networks, in train mode.
    records : list of list of dict
        Per task, per iteration ``{"iteration", "loss", "lr"}``, as the engine records them.
    """
    k = len(networks)
    if not (len(Xs) == len(ys) == len(seeds) == k) or k == 0:
        raise ValueError(f"one data set, label vector and seed per network: {k} networks, {len(Xs)} image "
                         f"sets, {len(ys)} label vectors, {len(seeds)} seeds")
    n = {len(X) for X in Xs}
    if len(n) != 1:
        raise ValueError(f"stacked tasks need the same number of training images, got {sorted(n)}")
    n = n.pop()
    batch_size = min(batch_size, n)
    device = torch.device(device)
    images = [image_tensor(X) for X in Xs]
    labels = [torch.as_tensor(np.asarray(y), dtype=torch.long) for y in ys]
    batches = [iter(iteration_batches(n, n_steps, batch_size, seed)) for seed in seeds]
    events = set(events)
    current = [net for net in networks]

    def restack():
        stacked = stack_networks(current).to(device).train()
        optimizer = torch.optim.SGD(stacked.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        return stacked, optimizer

    stacked, optimizer = restack()
    records = [[] for _ in range(k)]
    for j in range(n_steps):
        if j in events and before_event is not None:
            current = unstack_network(stacked, k)
            if before_event(current, j):
                stacked, optimizer = restack()
        rate = cosine_learning_rate(lr, j, n_steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
        index = [torch.as_tensor(next(b)) for b in batches]
        xb = torch.cat([X[i] for X, i in zip(images, index)], dim=1).to(device)
        yb = torch.stack([y[i] for y, i in zip(labels, index)], dim=1).to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = stacked(xb)                                            # (B, K, n_classes)
        losses = F.cross_entropy(logits.permute(0, 2, 1), yb, reduction="none").mean(dim=0)
        losses.sum().backward()
        optimizer.step()
        values = losses.detach().cpu().tolist()
        for task, value in enumerate(values):
            records[task].append({"iteration": j, "loss": float(value), "lr": rate})
        if progress is not None:
            progress.update(1)
    return unstack_network(stacked, k), records
