"""Selections: which channels of every group a pruned network keeps.

A :class:`Selection` maps each group name to the sorted indices of the kept channels *in
the pre-trained network's numbering*. Everything that crosses tasks (votes, IoU, the bank,
weight averaging) speaks in that numbering, never in the numbering of a shrunk model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["Selection", "in_blocks"]


def _as_index_array(group: str, values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"group {group!r}: kept indices must be a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"group {group!r}: a group must keep at least one channel")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"group {group!r}: kept indices must be integers")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"group {group!r}: kept indices must be integers, got dtype {arr.dtype}")
    arr = np.sort(arr.astype(np.int64))
    if arr[0] < 0:
        raise ValueError(f"group {group!r}: negative channel index {arr[0]}")
    if np.any(arr[1:] == arr[:-1]):
        dup = arr[1:][arr[1:] == arr[:-1]][0]
        raise ValueError(f"group {group!r}: channel {dup} is listed more than once")
    arr.setflags(write=False)
    return arr


class Selection(Mapping):
    """Read-only mapping: group name -> sorted kept channel indices (pre-trained numbering).

    Parameters
    ----------
    kept : mapping of str to sequence of int
        Kept channel indices per group, in any order; they are stored sorted.
    space : FilterSpace, optional
        When given, the selection is validated against it: exactly its groups, every
        index in range.

    Raises
    ------
    ValueError
        For an unknown or missing group, an index out of range, a duplicated index or an
        empty group; the message names the group.

    Examples
    --------
    >>> sel = Selection({"layer1": [3, 0, 1]})
    >>> sel["layer1"]
    array([0, 1, 3])
    >>> sel.n_kept
    {'layer1': 3}
    """

    def __init__(self, kept: Mapping, space=None):
        if not isinstance(kept, Mapping):
            raise TypeError(f"a selection is built from a mapping of group -> indices, got {type(kept).__name__}")
        self._kept = {str(name): _as_index_array(str(name), idx) for name, idx in kept.items()}
        if space is not None:
            self.validate(space)

    # -- Mapping protocol -------------------------------------------------------
    def __getitem__(self, name):
        try:
            return self._kept[name]
        except KeyError:
            raise KeyError(f"selection has no group {name!r}") from None

    def __iter__(self):
        return iter(self._kept)

    def __len__(self) -> int:
        return len(self._kept)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Mapping) or set(self) != set(other):
            return False
        return all(np.array_equal(self[k], np.asarray(other[k])) for k in self)

    def __hash__(self):
        return hash(tuple((k, v.tobytes()) for k, v in sorted(self._kept.items())))

    def __repr__(self) -> str:
        return "Selection(" + ", ".join(f"{k}: {len(v)}" for k, v in self._kept.items()) + ")"

    # -- construction -----------------------------------------------------------
    @classmethod
    def full(cls, space) -> "Selection":
        """The selection that keeps every channel of ``space``."""
        return cls({g.name: np.arange(g.size) for g in space}, space)

    @classmethod
    def from_dict(cls, data: Mapping, space=None) -> "Selection":
        """Inverse of :meth:`to_dict`."""
        return cls(data, space)

    def to_dict(self) -> dict:
        """JSON-serialisable form: group -> list of int."""
        return {k: v.tolist() for k, v in self._kept.items()}

    # -- queries ----------------------------------------------------------------
    @property
    def n_kept(self) -> dict:
        """Number of kept channels per group."""
        return {k: int(v.size) for k, v in self._kept.items()}

    def validate(self, space) -> "Selection":
        """Check this selection against a :class:`~metaprune.channels.filter_space.FilterSpace`.

        Returns self, so it can be chained.
        """
        for name, idx in self._kept.items():
            if name not in space:
                raise ValueError(f"unknown group {name!r} (the network's groups are {list(space.names)})")
            size, unit = space[name].size, space[name].unit
            if idx[-1] >= size:
                raise ValueError(f"group {name!r}: channel index {idx[-1]} out of range for {size} channels")
            if unit > 1 and (idx.size % unit or np.any(idx.reshape(-1, unit) != idx[::unit, None] + np.arange(unit))
                             or np.any(idx[::unit] % unit)):
                raise ValueError(f"group {name!r} is read by a grouped convolution: it must keep whole blocks "
                                 f"of {unit} channels")
        missing = [g for g in space.names if g not in self._kept]
        if missing:
            raise ValueError(f"selection lacks groups {missing}")
        return self

    def masks(self, space) -> dict:
        """Boolean keep-masks of full pre-trained length, per group."""
        self.validate(space)
        out = {}
        for g in space:
            m = np.zeros(g.size, dtype=bool)
            m[self._kept[g.name]] = True
            out[g.name] = m
        return out

    def positions_in(self, outer: "Selection") -> dict:
        """Positions of this selection's channels inside a larger selection ``outer``.

        Used to shrink an already-pruned network (whose channels are ``outer``) further
        to this selection.

        Raises
        ------
        ValueError
            If a kept channel is not in ``outer`` for some group.
        """
        out = {}
        for name, idx in self._kept.items():
            ref = outer[name]
            pos = np.searchsorted(ref, idx)
            if np.any(pos >= ref.size) or np.any(ref[np.minimum(pos, ref.size - 1)] != idx):
                raise ValueError(f"group {name!r}: selection keeps channels the current network no longer has")
            out[name] = pos
        return out

    def subset_of(self, other: "Selection") -> bool:
        """Whether every kept channel here is also kept in ``other``."""
        return set(self) == set(other) and all(np.isin(v, other[k]).all() for k, v in self._kept.items())


def in_blocks(choose, values: np.ndarray, n_keep: int, unit: int, group: str, *args) -> np.ndarray:
    """``choose(values, n_keep, *args)`` made to pick whole blocks of ``unit`` channels.

    ``choose`` returns sorted indices of ``n_keep`` of the ``values``; with ``unit > 1`` it
    is given the mean value of every block and asked for ``n_keep / unit`` blocks, whose
    channels are returned. One rule for every way of choosing channels (top scores,
    votes, uniform draws) in a group read by a grouped convolution.
    """
    if unit == 1:
        return choose(values, n_keep, *args)
    if values.size % unit or n_keep % unit:
        raise ValueError(f"group {group!r} is kept in blocks of {unit} channels: {values.size} channels and "
                         f"n_keep={n_keep} must be multiples of {unit}")
    blocks = choose(values.reshape(-1, unit).mean(axis=1), n_keep // unit, *args)
    return (blocks[:, None] * unit + np.arange(unit)).ravel()
