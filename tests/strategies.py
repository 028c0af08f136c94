"""Hypothesis strategies shared by the tests."""

import numpy as np
from hypothesis import strategies as st

from metaprune.channels.selection import Selection


@st.composite
def selections(draw, space, min_keep=1):
    """A random valid selection of ``space``: every group keeps a random non-empty subset."""
    kept = {}
    for group in space:
        n = draw(st.integers(min_value=min(min_keep, group.size), max_value=group.size))
        seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
        kept[group.name] = np.random.default_rng(seed).choice(group.size, size=n, replace=False)
    return Selection(kept, space)
