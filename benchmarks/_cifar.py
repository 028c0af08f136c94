"""What the CIFAR-100 benchmarks share: the preprocessed images and the shipped backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def cifar100_images():
    """CIFAR-100's 50,000 training images, normalised as the shipped backbones expect (float32
    NCHW), with their labels; ``(X, labels)``."""
    from metaprune.data.loaders import default_cifar100_path, load_cifar100
    from metaprune.data.preprocessing import CIFAR100_MEAN, CIFAR100_STD, ImageToTensor

    path = default_cifar100_path()
    if path is None:
        raise SystemExit("CIFAR-100 not found: set METAPRUNE_CIFAR100 or place it at ../shared/data/cifar100/train.npz")
    data = load_cifar100(path)
    X = ImageToTensor(mean=CIFAR100_MEAN, std=CIFAR100_STD).fit_transform(data.images)
    return np.ascontiguousarray(X, dtype=np.float32), np.asarray(data.labels)


def shipped_backbone(name: str = "cifar100_resnet18_w16_simclr.safetensors"):
    """A checkpoint shipped in ``metaprune/checkpoints``, loaded."""
    import metaprune
    from metaprune.backbone.resnet import load_backbone

    return load_backbone(Path(metaprune.__file__).resolve().parent / "checkpoints" / name)
