"""Penultimate-layer features of a ResNet, batched and without gradients."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["penultimate_features"]


@torch.no_grad()
def penultimate_features(model: nn.Module, X, batch_size: int = 256, device=None) -> np.ndarray:
    """Outputs of the global average pool (the input of ``fc``), in eval mode.

    Parameters
    ----------
    model : torchvision.models.ResNet
        Full or pruned network; it is not modified (its ``fc`` is bypassed, not replaced).
    X : array-like or torch.Tensor of shape (n, C, H, W)
        Preprocessed images.
    batch_size : int
        Images per forward pass.
    device : str or torch.device, optional
        Defaults to the model's device.

    Returns
    -------
    numpy.ndarray of shape (n, n_features), float32
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    X = torch.as_tensor(X)
    captured = []
    handle = model.avgpool.register_forward_hook(lambda _m, _i, out: captured.append(torch.flatten(out, 1).cpu()))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(X), batch_size):
            model(X[start:start + batch_size].to(device, torch.float32))
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        return np.zeros((0, model.fc.in_features), dtype=np.float32)
    return torch.cat(captured).numpy()
