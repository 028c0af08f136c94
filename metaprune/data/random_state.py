"""Seeded random generators: one :class:`numpy.random.Generator` from any ``random_state``.

The samplers of :mod:`metaprune.data.task_sampler` and the channel sampling of
:mod:`metaprune.meta.voting` take the same ``random_state`` values (None, an int seed, a
Generator or a legacy RandomState); :func:`as_generator` turns each into the Generator they draw
from, so the same seed gives the same draws everywhere.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_generator"]


def as_generator(random_state):
    """Return a :class:`numpy.random.Generator` for ``random_state``.

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        None: fresh entropy; int: a seed; a Generator is used as is; a RandomState seeds a new
        Generator from its stream (so it is advanced, reproducibly).

    Returns
    -------
    numpy.random.Generator
        ``numpy.random.default_rng(random_state)`` for None or an int, ``random_state`` itself
        for a Generator.

    Raises
    ------
    ValueError
        For any other value (a float, a string...).

    Examples
    --------
    >>> as_generator(0).integers(100, size=3).tolist() == np.random.default_rng(0).integers(100, size=3).tolist()
    True
    >>> generator = np.random.default_rng(1)
    >>> as_generator(generator) is generator
    True
    """
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(None if random_state is None else int(random_state))
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    raise ValueError(f"random_state must be None, an int, a numpy Generator or RandomState, "
                     f"got {random_state!r}")
