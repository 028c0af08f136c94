"""Learning-rate schedule as a pure function: linear warm-up, then cosine decay (pre-training and pruning).

:func:`warmup_cosine_learning_rate` gives the learning rate of one optimisation step from
the step index and the schedule's length alone, so a run resumed at step ``s`` continues
with exactly the rates an uninterrupted run would have used.
"""

from __future__ import annotations

import math

__all__ = ["warmup_cosine_learning_rate"]


def warmup_cosine_learning_rate(base_lr: float, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Learning rate at ``step``: linear warm-up over ``warmup_steps``, then cosine decay to 0.

    During warm-up (``step < warmup_steps``) the rate is ``base_lr * (step + 1) / warmup_steps``,
    reaching ``base_lr`` at the last warm-up step. After it the rate follows
    ``base_lr * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup_steps) / (total_steps - warmup_steps)``,
    held at 0 once ``t`` passes 1.

    Parameters
    ----------
    base_lr : float
        Peak learning rate (the rate at the first step after warm-up).
    step : int
        Optimisation step, counted from 0 over the whole run.
    total_steps : int
        Length of the schedule, warm-up included.
    warmup_steps : int, default=0
        Steps of linear warm-up; 0 starts the cosine at ``base_lr``.

    Returns
    -------
    float

    Examples
    --------
    >>> [round(warmup_cosine_learning_rate(1.0, s, 6, warmup_steps=2), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
