"""Penultimate-layer features (the task head's input) of a network, batched and without gradients."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..channels.filter_space import _has_resnet_layout, head_name
from ..data.batches import forward_batches

__all__ = ["penultimate", "penultimate_features", "class_prototypes"]


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features (the input of the task head), differentiable.

    Equivalent to ``model(x)`` with the head replaced by an identity, without touching the
    model. For a torchvision-style ResNet the head's input is computed directly; for any
    other network (its head is its last ``nn.Linear``, see
    :func:`~metaprune.channels.filter_space.head_name`) the forward pass runs whole and the
    head's input is captured.
    """
    if not _has_resnet_layout(model):
        captured = []
        handle = model.get_submodule(head_name(model)).register_forward_pre_hook(
            lambda _m, args: captured.append(args[0]))
        try:
            model(x)
        finally:
            handle.remove()
        return torch.flatten(captured[0], 1)
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


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
    captured = [penultimate(model, batch).cpu() for _, batch in forward_batches(model, X, batch_size, device)]
    if not captured:
        return np.zeros((0, model.get_submodule(head_name(model)).in_features), dtype=np.float32)
    return torch.cat(captured).numpy()


def class_prototypes(model: nn.Module, X, y, batch_size: int = 256, device=None) -> tuple:
    """Per-class mean penultimate feature of ``model`` (the paper's class prototypes).

    Parameters
    ----------
    model : torchvision.models.ResNet
        Normally the *pre-trained* backbone, so prototypes of all tasks are comparable.
    X : array-like of shape (n, C, H, W)
    y : array-like of shape (n,)
        Class labels.

    Returns
    -------
    classes : ndarray
        Sorted distinct labels.
    prototypes : ndarray of shape (n_classes, n_features), float32
        Row ``i`` is the mean feature of class ``classes[i]``.
    """
    y = np.asarray(y)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} samples but y has {len(y)} labels")
    features = penultimate_features(model, X, batch_size=batch_size, device=device)
    classes, inverse = np.unique(y, return_inverse=True)
    sums = np.zeros((len(classes), features.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, features)
    counts = np.bincount(inverse, minlength=len(classes))[:, None]
    return classes, (sums / counts).astype(np.float32)
