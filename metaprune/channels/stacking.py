"""Stacking: K networks of one architecture and equal channel counts as one grouped network.

Tasks pruned with the same schedule have the same number of channels in every group at
every iteration; only *which* channels differ. :func:`stack_networks` turns K such networks
into one whose convolutions are grouped (``groups=K``: task k's output channels see only task
k's input channels), whose BatchNorms hold K x c channels (their batch statistics stay per
task, because channels never mix), and whose final linear layer is a :class:`GroupedLinear`
(one map per task). The stacked network takes the K tasks' mini-batches concatenated along
the channel axis, ``(B, K * C, H, W)``, and returns ``(B, K, n_classes)``: entry ``[:, k]``
equals task k's network on task k's batch, and the gradient of the sum of the K losses with
respect to task k's weights is task k's own gradient. :func:`unstack_network` splits a stack
back into K ordinary networks. Both copy: the inputs are never modified.

Supported layers: ``Conv2d`` (any groups, stacked as ``K * groups``), ``BatchNorm2d``,
``Linear`` (the head) and the parameter-free ``ReLU``, ``MaxPool2d``, ``AdaptiveAvgPool2d``,
``Identity``; anything else raises ``TypeError`` naming the module. This covers torchvision
ResNets, pruned or not.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .surgery import replace_module_

__all__ = ["GroupedLinear", "stack_networks", "unstack_network", "stack_batches"]

_PARAMETER_FREE = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Identity)


class GroupedLinear(nn.Module):
    """K linear maps on K blocks of features: ``(B, K * F) -> (B, K, O)``.

    Parameters
    ----------
    weight : torch.Tensor of shape (K, O, F)
    bias : torch.Tensor of shape (K, O), optional
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    @property
    def n_stacked(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, _, f = self.weight.shape
        blocks = x.reshape(x.shape[0], k, f).transpose(0, 1)          # (K, B, F)
        out = torch.bmm(blocks, self.weight.transpose(1, 2))            # (K, B, O)
        if self.bias is not None:
            out = out + self.bias.unsqueeze(1)
        return out.transpose(0, 1)                                      # (B, K, O)

    def extra_repr(self) -> str:
        k, o, f = self.weight.shape
        return f"n_stacked={k}, in_features={f}, out_features={o}, bias={self.bias is not None}"


def _leaves(module: nn.Module):
    for name, sub in module.named_modules():
        if next(sub.children(), None) is None:
            yield name, sub
        elif any(p is not None for p in sub._parameters.values()):
            raise TypeError(f"cannot stack module {name!r} ({type(sub).__name__}): it holds parameters and "
                            f"sub-modules")


def _check_same(name, values, what):
    if any(v != values[0] for v in values[1:]):
        raise ValueError(f"cannot stack {name!r}: the networks differ in {what} ({values[0]} vs another)")


def _cat(tensors, dim=0):
    return torch.cat([t.detach() for t in tensors], dim=dim)


def _stacked_conv(name, convs) -> nn.Conv2d:
    ref = convs[0]
    _check_same(name, [tuple(c.weight.shape) for c in convs], "weight shape")
    _check_same(name, [(c.stride, c.padding, c.dilation, c.groups, c.padding_mode, c.bias is None)
                       for c in convs], "settings")
    k = len(convs)
    new = nn.Conv2d(k * ref.in_channels, k * ref.out_channels, ref.kernel_size, ref.stride, ref.padding,
                    ref.dilation, k * ref.groups, ref.bias is not None, ref.padding_mode,
                    device=ref.weight.device, dtype=ref.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(_cat([c.weight for c in convs]))
        if ref.bias is not None:
            new.bias.copy_(_cat([c.bias for c in convs]))
    return new


def _stacked_bn(name, bns) -> nn.BatchNorm2d:
    ref = bns[0]
    _check_same(name, [(b.num_features, b.eps, b.momentum, b.affine, b.track_running_stats) for b in bns],
                "settings")
    k = len(bns)
    device = next(iter([*ref.parameters(), *ref.buffers()])).device
    new = nn.BatchNorm2d(k * ref.num_features, ref.eps, ref.momentum, ref.affine, ref.track_running_stats,
                         device=device)
    with torch.no_grad():
        if ref.affine:
            new.weight.copy_(_cat([b.weight for b in bns]))
            new.bias.copy_(_cat([b.bias for b in bns]))
        if ref.track_running_stats:
            new.running_mean.copy_(_cat([b.running_mean for b in bns]))
            new.running_var.copy_(_cat([b.running_var for b in bns]))
            _check_same(name, [int(b.num_batches_tracked) for b in bns], "num_batches_tracked")
            new.num_batches_tracked.copy_(ref.num_batches_tracked)
    return new


def _stacked_linear(name, fcs) -> GroupedLinear:
    _check_same(name, [tuple(f.weight.shape) for f in fcs], "weight shape")
    _check_same(name, [f.bias is None for f in fcs], "bias")
    weight = torch.stack([f.weight.detach() for f in fcs])
    bias = None if fcs[0].bias is None else torch.stack([f.bias.detach() for f in fcs])
    return GroupedLinear(weight, bias)


def stack_networks(networks) -> nn.Module:
    """One grouped network computing K networks of the same architecture and sizes side by side.

    Parameters
    ----------
    networks : sequence of torch.nn.Module
        K >= 1 networks with the same module tree and parameter shapes (e.g. K tasks' pruned
        ResNets at the same iteration of one schedule). They are not modified.

    Returns
    -------
    torch.nn.Module
        A copy of the first network's module tree whose layers are the stacked layers (see
        the module docstring); its training mode is the first network's.

    Raises
    ------
    ValueError
        If the networks differ in a layer's shape or settings, or ``networks`` is empty.
    TypeError
        If a layer is not one of the supported kinds (the message names it).
    """
    networks = list(networks)
    if not networks:
        raise ValueError("no networks to stack")
    stacked = copy.deepcopy(networks[0])
    leaves = [dict(_leaves(n)) for n in networks]
    _check_same("the networks", [tuple(sorted(m)) for m in leaves], "module names")
    for name, module in _leaves(stacked):
        layers = [m[name] for m in leaves]
        _check_same(name, [type(m) for m in layers], "layer type")
        if isinstance(module, nn.Conv2d) and type(module) is nn.Conv2d:
            new = _stacked_conv(name, layers)
        elif type(module) is nn.BatchNorm2d:
            new = _stacked_bn(name, layers)
        elif type(module) is nn.Linear:
            new = _stacked_linear(name, layers)
        elif isinstance(module, _PARAMETER_FREE):
            continue
        else:
            raise TypeError(f"cannot stack module {name!r} of type {type(module).__name__}")
        replace_module_(stacked, name, new, module)
    return stacked


def _task_conv(conv: nn.Conv2d, k: int, n: int) -> nn.Conv2d:
    out_c, in_c, groups = conv.out_channels // n, conv.in_channels // n, conv.groups // n
    new = nn.Conv2d(in_c, out_c, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups,
                    conv.bias is not None, conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(conv.weight[k * out_c:(k + 1) * out_c])
        if conv.bias is not None:
            new.bias.copy_(conv.bias[k * out_c:(k + 1) * out_c])
    return new


def _task_bn(bn: nn.BatchNorm2d, k: int, n: int) -> nn.BatchNorm2d:
    c = bn.num_features // n
    part = slice(k * c, (k + 1) * c)
    device = next(iter([*bn.parameters(), *bn.buffers()])).device
    new = nn.BatchNorm2d(c, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device=device)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[part])
            new.bias.copy_(bn.bias[part])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[part])
            new.running_var.copy_(bn.running_var[part])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _task_linear(fc: GroupedLinear, k: int) -> nn.Linear:
    _, o, f = fc.weight.shape
    new = nn.Linear(f, o, fc.bias is not None, device=fc.weight.device, dtype=fc.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(fc.weight[k])
        if fc.bias is not None:
            new.bias.copy_(fc.bias[k])
    return new


def _skeleton(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree whose tensors are empty placeholders (every holder is replaced next)."""
    memo = {id(t): nn.Parameter(t.new_empty(0), t.requires_grad) for t in module.parameters()}
    memo.update({id(t): t.new_empty(0) for t in module.buffers()})
    return copy.deepcopy(module, memo)


def unstack_network(stacked: nn.Module, n_stacked: int) -> list:
    """Split a network made by :func:`stack_networks` back into its ``n_stacked`` networks.

    Returns
    -------
    list of torch.nn.Module
        Ordinary networks (``Conv2d``, ``BatchNorm2d``, ``Linear``), each a copy with the
        stack's current weights and buffers for its task, in the stack's training mode.
    """
    heads = [m for m in stacked.modules() if isinstance(m, GroupedLinear)]
    if any(h.n_stacked != n_stacked for h in heads):
        raise ValueError(f"the stack holds {heads[0].n_stacked} networks, not {n_stacked}")
    networks = []
    for k in range(n_stacked):
        net = _skeleton(stacked)
        for name, module in _leaves(stacked):
            if type(module) is nn.Conv2d:
                new = _task_conv(module, k, n_stacked)
            elif type(module) is nn.BatchNorm2d:
                new = _task_bn(module, k, n_stacked)
            elif isinstance(module, GroupedLinear):
                new = _task_linear(module, k)
            else:
                continue
            replace_module_(net, name, new, module)
        networks.append(net)
    return networks


def stack_batches(batches) -> torch.Tensor:
    """K image batches of equal shape ``(B, C, H, W)`` as one stacked input ``(B, K * C, H, W)``."""
    return torch.cat(list(batches), dim=1)
