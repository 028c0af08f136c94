"""BatchNorm statistics recalibration after short fine-tuning."""

from __future__ import annotations

import torch
from torch import nn

from ..data.batches import forward_batches

__all__ = ["recalibrate_batchnorm"]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, X, batch_size: int = 256, device=None) -> nn.Module:
    """Recompute every BatchNorm's running statistics as exact averages over ``X``.

    A few hundred SGD steps (or a pruning event) move the weights faster than the
    running statistics (momentum 0.1) follow, so eval-mode predictions use stale
    statistics. One forward pass in train mode with cumulative averaging
    (``momentum=None``) fixes that without touching any weight.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return model
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    try:
        for _, batch in forward_batches(model, X, batch_size, device, training=True):
            model(batch)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
    return model
