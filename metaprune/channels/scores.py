"""Per-group channel scores: mean post-ReLU activation over a data set (Alg. 1's criterion)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import forward_batches, image_tensor
from .filter_space import FilterSpace

__all__ = ["channel_scores"]


@torch.no_grad()
def channel_scores(model: nn.Module, X, space: FilterSpace, batch_size: int = 256, device=None,
                   per_image: bool = False) -> dict:
    """Score every channel of every group by its mean post-ReLU activation.

    A channel's score is the mean over the images of its spatially averaged post-ReLU
    activation. For a residual-stream group it is averaged over the outputs of all the
    blocks writing the stream (and the stem output for stage 1). One forward pass with
    hooks, batched, in eval mode.

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

    def hook(key, relu):
        def fn(_module, _inputs, out):
            act = (F.relu(out) if relu else out).float().mean(dim=(2, 3))
            if per_image:
                sums.setdefault(key, []).append(act.cpu())
            else:
                total = act.sum(dim=0)
                sums[key] = total if key not in sums else sums[key] + total
        return fn

    points = {(m, r) for g in space for m, r in g.activations}
    handles = [model.get_submodule(m).register_forward_hook(hook((m, r), r)) for m, r in sorted(points)]
    try:
        for _, batch in forward_batches(model, X, batch_size, device):
            model(batch)
    finally:
        for h in handles:
            h.remove()
    if per_image:
        return {g.name: torch.stack([torch.cat(sums[(m, r)]) for m, r in g.activations]).mean(0).numpy()
                for g in space}
    n = float(len(X))
    return {g.name: (torch.stack([sums[(m, r)] for m, r in g.activations]).mean(0) / n).cpu().numpy()
            for g in space}
