"""Per-group channel scores: mean post-activation output over a data set (Alg. 1's criterion)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import forward_batches, image_tensor
from .filter_space import FilterSpace

__all__ = ["channel_scores", "current_counts"]


@torch.no_grad()
def channel_scores(model: nn.Module, X, space: FilterSpace, batch_size: int = 256, device=None,
                   per_image: bool = False) -> dict:
    """Score every channel of every group by its mean post-activation output.

    A channel's score is the mean over the images of its spatially averaged activation
    (whatever the activation: ReLU, ReLU6, Hardswish, SiLU, GELU ...). For a group written
    by several layers (a residual stream) it is averaged over all the points where the
    group's activations are read (:attr:`ChannelGroup.activations`). Where no activation
    follows a group's writers (MobileNet's linear bottlenecks, ConvNeXt's blocks), the mean
    absolute value of what they write is used. One forward pass with hooks, batched, in
    eval mode.

    Parameters
    ----------
    model : torchvision.models.ResNet
        Full or pruned network; module names must match ``space``.
    X : array-like or torch.Tensor of shape (n, C, H, W)
        Images, preprocessed as the network expects.
    space : FilterSpace
        The (pre-trained) network's filter space; only its activation points are used, so
        a pruned model gives scores of its current channels.
    batch_size : int
        Images per forward pass.
    device : str or torch.device, optional
        Where to run; defaults to the model's device.
    per_image : bool, default=False
        Return every image's scores ``(n, channels)`` instead of their mean: the mean over
        any subset of the images is then that subset's scores, so tasks that share images
        (a bank's tasks drawn from one data set) score the unpruned network once per image.

    Returns
    -------
    dict of str to numpy.ndarray
        Group name -> non-negative scores, one per channel the model currently has, in
        the model's current channel order (per image: one row per image).
    """
    X = image_tensor(X)
    if X.ndim != 4:
        raise ValueError(f"X must have shape (n, C, H, W), got {tuple(X.shape)}")
    if len(X) == 0:
        raise ValueError("cannot score channels on an empty data set")
    sums: dict = {}
    counts = current_counts(model, space) if any(len(p) > 2 and p[3] is not None for g in space
                                                 for p in g.activations) else None

    def hook(point):
        activation = _ACTIVATIONS[point[1]]
        dim = point[2] if len(point) > 2 else 1

        def fn(_module, _inputs, out):
            act = activation(out).float()
            if act.ndim == 4 and dim == 1:
                act = act.mean(dim=(2, 3))
            elif act.ndim > 2 or dim not in (1, -1):
                act = act.movedim(dim, -1).reshape(act.shape[0], -1, act.shape[dim]).mean(dim=1)
            if per_image:
                sums.setdefault(point, []).append(act.cpu())
            else:
                total = act.sum(dim=0)
                sums[point] = total if point not in sums else sums[point] + total
        return fn

    points = {p for g in space for p in g.activations}
    handles = [model.get_submodule(p[0]).register_forward_hook(hook(p)) for p in sorted(points, key=repr)]
    try:
        for _, batch in forward_batches(model, X, batch_size, device):
            model(batch)
    finally:
        for h in handles:
            h.remove()

    def part(point, values):
        if len(point) < 4 or point[3] is None:
            return values
        axis, i = point[3]
        lengths = [counts[g] * r for g, r in space.segments(axis)]
        start = sum(lengths[:i])
        return values[..., start:start + lengths[i]]

    if per_image:
        return {g.name: torch.stack([part(p, torch.cat(sums[p])) for p in g.activations]).mean(0).numpy()
                for g in space}
    n = float(len(X))
    return {g.name: (torch.stack([part(p, sums[p]) for p in g.activations]).mean(0) / n).cpu().numpy()
            for g in space}


def current_counts(model: nn.Module, space: FilterSpace) -> dict:
    """Channels each group currently has in ``model`` (full or pruned), read off its tensors."""
    counts = {}
    for key, tensor in (*model.named_parameters(), *model.named_buffers()):
        for dim, axis in enumerate(space.tensor_axes(key)):
            if isinstance(axis, str) and axis not in counts:
                counts[axis] = int(tensor.shape[dim])
    missing = [g for g in space.names if g not in counts]
    if missing:
        raise ValueError(f"the network has no tensor indexed by groups {missing}")
    return counts


# what is applied to a module's output before averaging (True / False: the ResNet flags)
_ACTIVATIONS = {True: F.relu, False: lambda x: x, "identity": lambda x: x, "relu": F.relu, "relu6": F.relu6,
                "hardswish": F.hardswish, "silu": F.silu, "gelu": F.gelu, "leaky_relu": F.leaky_relu,
                "elu": F.elu, "mish": F.mish, "abs": torch.abs}
