"""Monitoring a backbone during pre-training: penultimate features and their few-class k-NN accuracy.

:func:`extract_features` runs the network over a set of images in eval mode (uint8 images
are converted and normalised one batch at a time); :func:`knn_accuracy` scores those
features with a cosine-similarity k-NN vote on random ``n_way`` tasks, the monitor the
pre-trainers report per epoch.
"""

from __future__ import annotations

from contextlib import closing

import numpy as np
import torch
import torch.nn.functional as F

from ...data.batches import forward_batches, in_memory_format, training_memory_format
from ...data.preprocessing import CIFAR100_MEAN, CIFAR100_STD
from ..penultimate import penultimate
from .images import channel_statistic, to_float_images

__all__ = ["extract_features", "knn_accuracy"]


@torch.no_grad()
def extract_features(model, X, mean=CIFAR100_MEAN, std=CIFAR100_STD, batch_size=512, device="cpu"):
    """Penultimate features of ``model`` for images ``X`` (eval mode, batched, no grad).

    ``X`` is uint8 NHWC (normalised here with ``mean``/``std``) or float NCHW already
    normalised. Returns a float32 numpy array ``(N, D)``. The model's mode is restored.

    Parameters
    ----------
    model : torchvision.models.ResNet
    X : array-like of shape (N, H, W, C) uint8 or (N, C, H, W) float
    mean, std : float or sequence of float, default CIFAR-100 statistics
        Normalisation of uint8 images (unused for float images).
    batch_size : int, default 512
    device : str or torch.device, default "cpu"

    Returns
    -------
    numpy.ndarray of shape (N, D), float32
    """
    Xt = np.asarray(X)
    memory_format = training_memory_format(model, device)  # the format training uses, where it is safe

    def normalised(batch):
        xb = to_float_images(batch)
        return (xb - channel_statistic(mean, xb.shape[1])) / channel_statistic(std, xb.shape[1])

    transform = normalised if Xt.dtype == np.uint8 else None
    with closing(forward_batches(model, Xt, batch_size, device, transform=transform)) as batches:
        out = [penultimate(model, in_memory_format(xb, memory_format)).float().cpu() for _, xb in batches]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def knn_accuracy(
    train_features,
    train_labels,
    test_features,
    test_labels,
    k=20,
    n_way=5,
    n_tasks=200,
    random_state=0,
):
    """Mean ``n_way`` k-NN accuracy (cosine similarity) over random few-class tasks.

    For each task, ``n_way`` classes present in both sets are drawn; every test sample of
    those classes is classified by a similarity-weighted vote of its ``k`` most
    cosine-similar training samples *of those classes*.

    Parameters
    ----------
    train_features, test_features : array (n, d)
    train_labels, test_labels : array (n,)
    k : int, default 20
    n_way : int, default 5
    n_tasks : int, default 200
    random_state : int

    Returns
    -------
    float
        Accuracy averaged over tasks.
    """
    tr = torch.as_tensor(np.asarray(train_features, dtype=np.float32))
    te = torch.as_tensor(np.asarray(test_features, dtype=np.float32))
    ytr = np.asarray(train_labels)
    yte = np.asarray(test_labels)
    if tr.ndim != 2 or te.ndim != 2 or tr.shape[1] != te.shape[1]:
        raise ValueError("features must be 2-D arrays with the same number of columns")
    if len(tr) != len(ytr) or len(te) != len(yte):
        raise ValueError("features and labels have different lengths")
    classes = np.intersect1d(np.unique(ytr), np.unique(yte))
    if len(classes) < n_way:
        raise ValueError(f"need at least n_way={n_way} classes present in both sets, got {len(classes)}")
    tr = F.normalize(tr, dim=1)
    te = F.normalize(te, dim=1)
    rng = np.random.default_rng(random_state)
    accs = []
    for _ in range(n_tasks):
        task = rng.choice(classes, size=n_way, replace=False)
        itr = np.flatnonzero(np.isin(ytr, task))
        ite = np.flatnonzero(np.isin(yte, task))
        # map labels to 0..n_way-1
        lab_tr = torch.as_tensor(np.searchsorted(np.sort(task), ytr[itr]))
        lab_te = torch.as_tensor(np.searchsorted(np.sort(task), yte[ite]))
        sim = te[ite] @ tr[itr].T
        kk = min(k, len(itr))
        val, idx = sim.topk(kk, dim=1)
        votes = torch.zeros(len(ite), n_way)
        votes.scatter_add_(1, lab_tr[idx], val.clamp(min=0) + 1e-6)
        accs.append((votes.argmax(1) == lab_te).float().mean().item())
    return float(np.mean(accs))
