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


def _slice_tensors_(model: nn.Module, space: FilterSpace, positions_of) -> set:
    """Cut every state-dict tensor of ``model`` along its group axes, in place.

    ``positions_of(axis)`` gives the positions to keep along an axis, or None to keep it
    whole. Parameters are replaced by new ``nn.Parameter`` objects with the same
    ``requires_grad``; returns the names of the modules whose tensors changed.
    """
    device_index: dict = {}
    touched = set()
    named = [(key, tensor, True) for key, tensor in model.named_parameters()]
    named += [(key, tensor, False) for key, tensor in model.named_buffers()]
    for key, tensor, is_parameter in named:
        axes = space.tensor_axes(key)
        new = tensor.data if is_parameter else tensor
        changed = False
        for dim, axis in enumerate(axes):
            if axis is None:
                continue
            if axis not in device_index:
                pos = positions_of(axis)
                device_index[axis] = None if pos is None else torch.from_numpy(np.array(pos, dtype=np.int64))
            index = device_index[axis]
            if index is not None:
                new = new.index_select(dim, index.to(new.device))
                changed = True
        if not changed:
            continue
        module_name, _, attr = key.rpartition(".")
        module = model.get_submodule(module_name)
        if is_parameter:
            setattr(module, attr, nn.Parameter(new, requires_grad=tensor.requires_grad))
        else:
            module._buffers[attr] = new
        touched.add(module_name)
    return touched


def _fix_shapes_(module: nn.Module, name: str) -> None:
    """Make a module's size attributes agree with its (sliced) tensors."""
    if isinstance(module, nn.Conv2d):
        out_channels = module.weight.shape[0]
        if module.groups > 1:  # depthwise or grouped: blocks of out_channels / groups channels
            module.groups = out_channels // (module.out_channels // module.groups)
        module.out_channels = out_channels
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = (module.weight if module.weight is not None else module.running_mean).shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (module.weight.shape[0],) if module.weight is not None else module.normalized_shape
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif type(module).__module__.startswith("torch.nn"):
        raise TypeError(f"cannot slice module {name!r} of type {type(module).__name__}")


def _slice_modules_(model: nn.Module, space: FilterSpace, positions_of) -> nn.Module:
    """Cut every module the space covers down to ``positions_of`` (in place)."""
    for name in sorted(_slice_tensors_(model, space, positions_of)):
        _fix_shapes_(model.get_submodule(name), name)
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
    kept_all = {g.name for g in space if len(selection[g.name]) == g.size}

    def positions_of(axis):
        if all(g in kept_all for g, _ in space.segments(axis)):
            return None
        return space.axis_positions(axis, selection)

    return standard_format_(_slice_modules_(copy.deepcopy(backbone), space, positions_of))


def shrink_(model: nn.Module, space: FilterSpace, current: Selection, target: Selection) -> nn.Module:
    """Cut an already-pruned ``model`` (holding ``current``) down to ``target``, in place.

    ``space`` is the filter space of the pre-trained network, both selections are in its
    numbering, and ``target`` must be a subset of ``current``. Sliced modules get new
    parameter objects: an optimizer must be rebuilt afterwards.
    """
    target.validate(space)
    target.positions_in(current)  # refuses channels the network no longer has
    unchanged = {g for g in space.names if len(target[g]) == len(current[g])}

    def positions_of(axis):
        if all(g in unchanged for g, _ in space.segments(axis)):
            return None
        return space.axis_positions_in(axis, target, current)

    return _slice_modules_(model, space, positions_of)


def mask_channels(model: nn.Module, selection, space: FilterSpace | None = None) -> list:
    """Emulate a selection on the full network: every layer reads only the kept channels.

    Each layer that mixes channels (a dense convolution, a Linear layer, the head) gets its
    input multiplied by the keep-mask of the axis it reads, and each LayerNorm over the
    channels normalises over the kept channels only, so the kept channels compute exactly
    what they compute in the physically pruned network; what dropped channels hold is
    never read. This is the reference semantics that :func:`extract` reproduces
    physically, and the "masks instead of surgery" baseline.

    Returns
    -------
    list of torch.utils.hooks.RemovableHandle
        Call ``handle.remove()`` on each to take the masks off again.
    """
    space = space or FilterSpace.from_model(model)
    selection = selection if isinstance(selection, Selection) else Selection(selection)
    selection.validate(space)
    device = next(model.parameters()).device

    def mask_of(axis):
        mask = torch.zeros(space.axis_size(axis), device=device)
        mask[torch.from_numpy(np.array(space.axis_positions(axis, selection), dtype=np.int64)).to(device)] = 1.0
        return mask

    handles = []
    for name, axis in space.mixers.items():
        module = model.get_submodule(name)
        dim = -1 if isinstance(module, nn.Linear) else 1
        shape = (-1,) if dim == -1 else (1, -1, 1, 1)
        mask = mask_of(axis).view(shape)
        handles.append(module.register_forward_pre_hook(
            lambda _m, args, mask=mask: (args[0] * mask.to(args[0].dtype), *args[1:])))
    for name, axis in space.normalisers.items():
        module = model.get_submodule(name)
        handles.append(module.register_forward_hook(_masked_layer_norm(mask_of(axis))))
    return handles


def _masked_layer_norm(mask: torch.Tensor):
    """Forward hook: a LayerNorm over the channels recomputed over the kept channels only."""
    def hook(module, args, _out):
        x = args[0]
        dim = -1 if type(module) is nn.LayerNorm else 1  # torchvision's LayerNorm2d normalises dim 1
        shape = [1] * x.ndim
        shape[dim] = -1
        m = mask.to(x.dtype).view(shape)
        n = m.sum()
        mean = (x * m).sum(dim, keepdim=True) / n
        var = (((x - mean) * m) ** 2).sum(dim, keepdim=True) / n
        y = (x - mean) / torch.sqrt(var + module.eps)
        if module.weight is not None:
            y = y * module.weight.view(shape) + module.bias.view(shape)
        return y * m
    return hook


@contextmanager
def channel_masks_applied(model: nn.Module, selection, space: FilterSpace | None = None):
    """Context manager form of :func:`mask_channels`: the masks are removed on exit."""
    handles = mask_channels(model, selection, space)
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
