"""Pre-training of ResNet backbones: SimSiam, SimCLR and supervised, with exact resume.

The estimators follow scikit-learn conventions (``__init__`` only stores parameters,
``fit`` returns ``self``, fitted attributes end in ``_``). They share one training loop;
what differs is a small *objective* module that owns the method's heads (projector,
predictor) and computes the loss from the backbone's penultimate features of the
augmented views. One module per job:

- :mod:`~metaprune.backbone.pretrain.estimators` -- :class:`SimSiamPretrainer` (SimSiam or
  SimCLR) and :class:`SupervisedPretrainer`, the public estimators;
- :mod:`~metaprune.backbone.pretrain.objectives` -- the methods' heads and losses
  (:class:`SimSiamObjective`, :class:`SimCLRObjective`, :class:`SupervisedObjective`,
  :func:`negative_cosine_similarity`, :func:`nt_xent_loss`);
- :mod:`~metaprune.backbone.pretrain.loop` -- the shared epoch loop (data order,
  augmentation, learning-rate schedule, checkpoint cadence, k-NN monitor);
- :mod:`~metaprune.backbone.pretrain.checkpoints` -- pickle-free resumable checkpoints
  (:data:`~metaprune.backbone.pretrain.checkpoints.CHECKPOINT_FORMAT`);
- :mod:`~metaprune.backbone.pretrain.features` -- penultimate features and the few-class
  k-NN monitor (:func:`extract_features`, :func:`knn_accuracy`);
- :mod:`~metaprune.backbone.pretrain.images` -- uint8 NHWC or normalised float NCHW images
  as tensors (:func:`to_float_images`).

Checkpoints are one safetensors file holding the backbone, the heads, the optimizer's
momentum buffers and the RNG states, with every scalar as JSON in the file's metadata,
written to a temporary name and moved into place, so a kill never leaves a half-written
checkpoint. The data order and the augmentations of epoch ``e`` depend only on
``(random_state, e)`` and the learning rate is a pure function of the step and of the
*total* number of epochs, so a killed run resumed from its last checkpoint reaches the
same weights as an uninterrupted run (up to floating-point non-determinism).
"""

from __future__ import annotations

from ...data.preprocessing import CIFAR100_MEAN, CIFAR100_STD
from ..penultimate import penultimate
from .checkpoints import CHECKPOINT_FORMAT  # public, outside __all__ as in the single-module layout
from .estimators import SimSiamPretrainer, SupervisedPretrainer
from .features import extract_features, knn_accuracy
from .images import to_float_images
from .objectives import (SimCLRObjective, SimSiamObjective, SupervisedObjective, negative_cosine_similarity,
                         nt_xent_loss)

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "SimSiamPretrainer",
    "SupervisedPretrainer",
    "SimSiamObjective",
    "SimCLRObjective",
    "SupervisedObjective",
    "negative_cosine_similarity",
    "nt_xent_loss",
    "knn_accuracy",
    "extract_features",
    "penultimate",
    "to_float_images",
]
