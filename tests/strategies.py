"""Hypothesis strategies shared by the tests."""

import numpy as np
from hypothesis import strategies as st

from metaprune.channels.selection import Selection


@st.composite
def selections(draw, space, min_keep=1):
    """A random valid selection of ``space``: every group keeps a random non-empty subset
    (of whole blocks, for a group read by a grouped convolution)."""
    kept = {}
    for group in space:
        blocks = group.size // group.unit
        n = draw(st.integers(min_value=min(min_keep, blocks), max_value=blocks))
        seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
        chosen = np.random.default_rng(seed).choice(blocks, size=n, replace=False)
        kept[group.name] = (chosen[:, None] * group.unit + np.arange(group.unit)).ravel()
    return Selection(kept, space)
