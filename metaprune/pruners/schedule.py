"""The pruning schedule of Alg. 1 as pure functions.

Pruning events happen at iterations ``j = 0, h, 2h, ... < J``. At each event a group that
still has more than its target ``n_keep`` channels loses the fraction ``p`` of them, so
after event ``e`` (0-based) it holds ``max(n_keep, round(n * (1 - p) ** (e + 1)))``
channels; the last event always lands exactly on ``n_keep``. The default fraction
``p = 1 - (1 - r) ** (1 / floor(J / h))`` reaches the target at event ``floor(J/h) - 1``,
i.e. at iteration ``(floor(J/h) - 1) * h <= J - h``.
"""

from __future__ import annotations

import numpy as np

from ..backbone.lr_schedule import warmup_cosine_learning_rate

__all__ = ["default_prune_every", "default_prune_fraction", "pruning_iterations", "kept_after_events",
           "kept_per_iteration", "cosine_learning_rate"]


def _check(n_iterations: int, prune_every: int) -> None:
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    if prune_every < 1:
        raise ValueError(f"prune_every must be >= 1, got {prune_every}")
    if prune_every > n_iterations:
        raise ValueError(f"prune_every (h={prune_every}) must not exceed n_iterations (J={n_iterations})")


def default_prune_every(n_iterations: int, fraction: float = 0.3) -> int:
    """Iterations ``h`` between pruning events when none is given: ``fraction`` of the run.

    Parameters
    ----------
    n_iterations : int
        ``J``, the pruning iterations of the run.
    fraction : float, default=0.3
        ``h / J``; the paper's 0.3 gives events at 0, 0.3 J and 0.6 J (``h = 60`` of 200).

    Returns
    -------
    int
        ``max(1, round(fraction * J))``.

    Examples
    --------
    >>> default_prune_every(200), default_prune_every(2), default_prune_every(100, fraction=0.25)
    (60, 1, 25)
    """
    return max(1, int(round(fraction * n_iterations)))


def default_prune_fraction(pruning_ratio: float, n_iterations: int, prune_every: int) -> float:
    """``p = 1 - (1 - r) ** (1 / floor(J / h))``: reach ratio ``r`` in ``floor(J/h)`` events."""
    _check(n_iterations, prune_every)
    if not 0.0 < pruning_ratio < 1.0:
        raise ValueError(f"pruning_ratio must be in (0, 1), got {pruning_ratio}")
    return 1.0 - (1.0 - pruning_ratio) ** (1.0 / (n_iterations // prune_every))


def pruning_iterations(n_iterations: int, prune_every: int) -> np.ndarray:
    """Iterations at which a pruning event happens: ``0, h, 2h, ... < J``."""
    _check(n_iterations, prune_every)
    return np.arange(0, n_iterations, prune_every)


def kept_after_events(n: int, n_keep: int, prune_fraction: float, n_events: int) -> np.ndarray:
    """Channels a group of ``n`` holds after each of ``n_events`` events (last one exactly ``n_keep``)."""
    if not 0.0 < prune_fraction < 1.0:
        raise ValueError(f"prune_fraction must be in (0, 1), got {prune_fraction}")
    if not 1 <= n_keep <= n:
        raise ValueError(f"n_keep must be in [1, {n}], got {n_keep}")
    e = np.arange(1, n_events + 1)
    kept = np.maximum(n_keep, np.round(n * (1.0 - prune_fraction) ** e)).astype(np.int64)
    kept = np.minimum(kept, n)
    if n_events:
        kept[-1] = n_keep
    return kept


def kept_per_iteration(n: int, n_keep: int, prune_fraction: float, n_iterations: int, prune_every: int) -> np.ndarray:
    """Channels held during each of the ``J`` iterations (after that iteration's event, if any)."""
    events = pruning_iterations(n_iterations, prune_every)
    after = kept_after_events(n, n_keep, prune_fraction, len(events))
    index = np.arange(n_iterations) // prune_every
    return after[index]


def cosine_learning_rate(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine annealing from ``base_lr`` at step 0 towards 0 at ``total_steps`` (no warm-up): the
    one schedule of :mod:`metaprune.backbone.lr_schedule`, shared with pre-training."""
    return warmup_cosine_learning_rate(base_lr, step, total_steps)
