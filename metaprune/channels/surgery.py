"""Physical pruning: cut a network down to a selection, or emulate it with masks.

:func:`extract` returns a physically smaller copy (sliced weights, smaller dense convs)
whose forward pass equals the masked computation of :func:`mask_channels` (the full
network with the dropped channels zeroed). :func:`shrink_` cuts an already-pruned network
further in place, which iterative pruning uses at every pruning event.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..data.batches import standard_format_
from .filter_space import FilterSpace
from .selection import Selection

__all__ = ["extract", "shrink_", "mask_channels", "channel_masks_applied", "replace_module_"]


def _index(positions, group, device):
    if group is None or positions.get(group) is None:
        return None
    return torch.tensor(np.asarray(positions[group]), dtype=torch.long, device=device)


def _take(tensor: torch.Tensor, dim: int, index) -> torch.Tensor:
    return tensor if index is None else tensor.index_select(dim, index)


def _sliced_conv(conv: nn.Conv2d, out_idx, in_idx) -> nn.Conv2d:
    if conv.groups != 1:
        raise TypeError("grouped convolutions are not supported by channel surgery")
    weight = _take(_take(conv.weight.data, 0, out_idx), 1, in_idx)
    new = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, 1, conv.bias is not None, conv.padding_mode,
                    device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if conv.bias is not None:
        new.bias.data.copy_(_take(conv.bias.data, 0, out_idx))
    return new


def _sliced_bn(bn: nn.BatchNorm2d, idx) -> nn.BatchNorm2d:
    n = bn.num_features if idx is None else idx.numel()
    ref = bn.weight if bn.weight is not None else bn.running_mean
    new = nn.BatchNorm2d(n, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                         device=ref.device if ref is not None else None,
                         dtype=ref.dtype if ref is not None else None)
    if bn.affine:
        new.weight.data.copy_(_take(bn.weight.data, 0, idx))
        new.bias.data.copy_(_take(bn.bias.data, 0, idx))
    if bn.track_running_stats:
        new.running_mean.copy_(_take(bn.running_mean, 0, idx))
        new.running_var.copy_(_take(bn.running_var, 0, idx))
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _sliced_linear(fc: nn.Linear, in_idx) -> nn.Linear:
    weight = _take(fc.weight.data, 1, in_idx)
    new = nn.Linear(weight.shape[1], weight.shape[0], fc.bias is not None, device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if fc.bias is not None:
        new.bias.data.copy_(fc.bias.data)
    return new


def _slice_modules_(model: nn.Module, space: FilterSpace, positions: dict) -> nn.Module:
    """Replace every module the space covers by its slice at ``positions`` (in place)."""
    device = next(model.parameters()).device
    for name, (out_group, in_group) in space.module_axes.items():
        module = model.get_submodule(name)
        out_idx, in_idx = _index(positions, out_group, device), _index(positions, in_group, device)
        if out_idx is None and in_idx is None:
            continue
        if isinstance(module, nn.Conv2d):
            new = _sliced_conv(module, out_idx, in_idx)
        elif isinstance(module, nn.BatchNorm2d):
            new = _sliced_bn(module, out_idx)
        elif isinstance(module, nn.Linear):
            new = _sliced_linear(module, in_idx)
        else:
            raise TypeError(f"cannot slice module {name!r} of type {type(module).__name__}")
        replace_module_(model, name, new, module)
    return model


def replace_module_(model: nn.Module, name: str, new: nn.Module, old: nn.Module) -> None:
    """Put ``new`` in ``old``'s place ``name`` of ``model``, with ``old``'s mode and trainable flags."""
    new.train(old.training)
    for p_new, p_old in zip(new.parameters(), old.parameters()):
        p_new.requires_grad_(p_old.requires_grad)
    model.set_submodule(name, new)


def extract(backbone: nn.Module, selection, space: FilterSpace | None = None) -> nn.Module:
    """A physically smaller copy of ``backbone`` that keeps only ``selection``'s channels.

    Parameters
    ----------
    backbone : torchvision.models.ResNet
        The full (pre-trained) network; it is not modified.
    selection : Selection or mapping
        Kept channels per group, in the backbone's numbering.
    space : FilterSpace, optional
        The backbone's filter space (discovered when omitted).

    Returns
    -------
    torch.nn.Module
        A deep copy with sliced convolutions, BatchNorms and final linear layer, every
        tensor C-contiguous (see :func:`metaprune.data.batches.standard_format_`). Its
        forward pass equals that of ``backbone`` with the dropped channels zeroed.
    """
    space = space or FilterSpace.from_model(backbone)
    selection = selection if isinstance(selection, Selection) else Selection(selection)
    selection.validate(space)
    positions = {g.name: None if len(selection[g.name]) == g.size else selection[g.name] for g in space}
    return standard_format_(_slice_modules_(copy.deepcopy(backbone), space, positions))


def shrink_(model: nn.Module, space: FilterSpace, current: Selection, target: Selection) -> nn.Module:
    """Cut an already-pruned ``model`` (holding ``current``) down to ``target``, in place.

    ``space`` is the filter space of the pre-trained network, both selections are in its
    numbering, and ``target`` must be a subset of ``current``. Sliced modules get new
    parameter objects: an optimizer must be rebuilt afterwards.
    """
    target.validate(space)
    positions = target.positions_in(current)
    positions = {g: None if len(pos) == len(current[g]) else pos for g, pos in positions.items()}
    return _slice_modules_(model, space, positions)


def mask_channels(model: nn.Module, selection, space: FilterSpace | None = None) -> list:
    """Zero the channels a selection drops, by forward hooks on the producing BatchNorms.

    Every BatchNorm that writes a group's channels gets its output multiplied by the
    group's keep-mask, so residual sums, ReLUs and the final linear layer see exact zeros
    for dropped channels. This is the reference semantics that :func:`extract` reproduces
    physically, and the "masks instead of surgery" baseline.

    Returns
    -------
    list of torch.utils.hooks.RemovableHandle
        Call ``handle.remove()`` on each to take the masks off again.
    """
    space = space or FilterSpace.from_model(model)
    selection = selection if isinstance(selection, Selection) else Selection(selection)
    masks = selection.masks(space)
    device = next(model.parameters()).device
    handles = []
    for name, (group, _) in space.module_axes.items():
        module = model.get_submodule(name)
        if group is None or not isinstance(module, nn.BatchNorm2d):
            continue
        mask = torch.as_tensor(masks[group], device=device).view(1, -1, 1, 1)
        handles.append(module.register_forward_hook(lambda _m, _i, out, mask=mask: out * mask.to(out.dtype)))
    return handles


@contextmanager
def channel_masks_applied(model: nn.Module, selection, space: FilterSpace | None = None):
    """Context manager form of :func:`mask_channels`: the masks are removed on exit."""
    handles = mask_channels(model, selection, space)
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
