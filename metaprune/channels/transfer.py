"""Move weights between a pruned network's numbering and the pre-trained numbering.

Meta-vote pruning averages weights across neighbours' pruned models; that only makes
sense in one common numbering, the pre-trained one. :func:`expand_state` lifts a pruned
state dict to full-size tensors plus presence masks; :func:`gather_state` does the
inverse, cutting full-size tensors down to a selection.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .filter_space import FilterSpace
from .selection import Selection

__all__ = ["gather_state", "expand_state"]


class _Indices:
    """Per axis: the kept positions of a selection as an index tensor on one device, computed once."""

    def __init__(self, space: FilterSpace, selection: Selection, device):
        self.space, self.selection, self.device = space, selection, device
        self._cache: dict = {}

    def __getitem__(self, axis) -> torch.Tensor:
        if axis not in self._cache:
            positions = np.array(self.space.axis_positions(axis, self.selection), dtype=np.int64)
            self._cache[axis] = torch.from_numpy(positions).to(self.device)
        return self._cache[axis]


def gather_state(full_state: Mapping, selection: Selection, space: FilterSpace) -> dict:
    """Cut full-size (pre-trained numbering) tensors down to ``selection``.

    Parameters
    ----------
    full_state : mapping of str to torch.Tensor
        A state dict of the full network (or any subset of its entries).
    selection : Selection
        Channels to keep, validated against ``space``.
    space : FilterSpace
        The pre-trained network's filter space.

    Returns
    -------
    dict of str to torch.Tensor
        A state dict that loads into ``extract(backbone, selection)``.
    """
    selection.validate(space)
    out = {}
    cache: dict = {}
    for key, tensor in full_state.items():
        idx = cache.setdefault(tensor.device, _Indices(space, selection, tensor.device))
        for dim, group in enumerate(space.tensor_axes(key)):
            if group is not None:
                tensor = tensor.index_select(dim, idx[group])
        out[key] = tensor
    return out


def expand_state(pruned_state: Mapping, selection: Selection, space: FilterSpace) -> tuple:
    """Lift a pruned state dict to full-size tensors plus presence masks.

    Returns
    -------
    values : dict of str to torch.Tensor
        Full-size tensors: the pruned values at their pre-trained positions, zero elsewhere.
    present : dict of str to torch.Tensor (bool)
        True where ``values`` holds a value of the pruned network. For a convolution weight
        that is where both its output and its input channel were kept.
    """
    selection.validate(space)
    values, present = {}, {}
    cache: dict = {}
    for key, tensor in pruned_state.items():
        idx = cache.setdefault(tensor.device, _Indices(space, selection, tensor.device))
        mask = torch.ones(tensor.shape, dtype=torch.bool, device=tensor.device)
        for dim, group in enumerate(space.tensor_axes(key)):
            if group is None:
                continue
            if tensor.shape[dim] != len(idx[group]):
                raise ValueError(f"{key}: axis {dim} has {tensor.shape[dim]} entries but the selection keeps "
                                 f"{len(idx[group])} channels of group {group!r}")
            shape = list(tensor.shape)
            shape[dim] = space.axis_size(group)
            tensor = tensor.new_zeros(shape).index_copy_(dim, idx[group], tensor)
            mask = mask.new_zeros(shape).index_copy_(dim, idx[group], mask)
        values[key], present[key] = tensor, mask
    return values, present
