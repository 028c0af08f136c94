"""The public pre-trainers: scikit-learn estimators around the shared training loop.

- :class:`SimSiamPretrainer` -- self-supervised pre-training with SimSiam or SimCLR
  (``method``), labels ignored;
- :class:`SupervisedPretrainer` -- cross-entropy through the backbone's ``fc``, with a
  lighter augmentation.

They follow scikit-learn conventions (``__init__`` only stores parameters, ``fit``
returns ``self``, fitted attributes end in ``_``); what differs between them is the
objective (:mod:`~metaprune.backbone.pretrain.objectives`) and the augmentation they hand
to :class:`~metaprune.backbone.pretrain.loop.BasePretrainer`.
"""

from __future__ import annotations

from ...data.augment import BatchAugment
from ...data.preprocessing import CIFAR100_MEAN, CIFAR100_STD
from .loop import BasePretrainer
from .objectives import SimCLRObjective, SimSiamObjective, SupervisedObjective

__all__ = ["SimSiamPretrainer", "SupervisedPretrainer"]


class SimSiamPretrainer(BasePretrainer):
    """Self-supervised pre-training of a ResNet backbone with SimSiam (or SimCLR).

    Parameters
    ----------
    backbone : torchvision ResNet, optional
        Network to pre-train (copied, never modified). Default: ``cifar_resnet18(width)``.
    width : int, default 16
        Width of the default backbone (ignored when ``backbone`` is given).
    method : {"simsiam", "simclr"}, default "simsiam"
        Objective. ``"simclr"`` (NT-Xent, temperature ``temperature``) shares the loop,
        augmentation and schedule; it converges faster in short CPU budgets.
    epochs : int, default 100
    batch_size : int, default 256
    lr : float, default 0.06
        Base learning rate, scaled by ``batch_size / 256``.
    momentum : float, default 0.9
    weight_decay : float, default 5e-4
    warmup_epochs : float, default 0
        Linear warm-up length; then a cosine decay to 0 at the end of ``epochs``.
    proj_dim : int, optional
        Projector width. Default ``4 * feat_dim`` (feat_dim = the backbone's ``fc.in_features``:
        2048 for a width-64 ResNet-18, as in the SimSiam paper; 512 at width 16).
    pred_dim : int, optional
        Predictor bottleneck, default ``proj_dim // 4`` (SimSiam only).
    fix_pred_lr : bool, default True
        Keep the predictor's learning rate at the base value (SimSiam only).
    temperature : float, default 0.5
        NT-Xent temperature (SimCLR only).
    mean, std : sequence of float, default CIFAR-100 statistics
        Normalisation applied after augmentation. uint8 NHWC input is divided by 255 and
        normalised with them; float NCHW input is taken as already normalised with them.
    checkpoint_path : str or path, optional
        Resumable checkpoint file; ``fit`` resumes from it if it exists.
    checkpoint_every : int, default 1
        Epochs between checkpoints (the last epoch is always written).
    knn_every : int, default 1
        Epochs between k-NN evaluations when ``knn_data`` is given.
    knn_data : tuple (X_train, y_train, X_test, y_test), optional
        Images for the 5-way k-NN monitor (evaluation only).
    device : str, default "cpu"
    n_threads : "auto", int or None, default "auto"
        Threads of torch's CPU pool during ``fit`` (and its k-NN monitor passes):
        ``"auto"`` uses the cores idle when the call starts, at most torch's current
        setting (one on a busy 2-core machine, where a second thread only waits), an int
        that many, None leaves torch's setting alone. The caller's setting is restored
        afterwards. Thread counts change float rounding, so
        pass an int for results that are bit-identical whatever the machine's load.
    random_state : int, default 0
    verbose : int, default 1

    Attributes
    ----------
    backbone_ : torchvision.models.ResNet
        The pre-trained network with its original ``fc``, in eval mode.
    objective_ : nn.Module
        The trained heads (projector, predictor).
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``lr``, ``time_s``, ``aug_time_s``, ``knn_acc``.

    Examples
    --------
    >>> import numpy as np
    >>> from metaprune.backbone.pretrain import SimSiamPretrainer
    >>> X = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    >>> est = SimSiamPretrainer(width=4, epochs=1, batch_size=8, verbose=0).fit(X)
    >>> est.backbone_.fc.in_features
    32
    """

    def __init__(
        self,
        backbone=None,
        width=16,
        method="simsiam",
        epochs=100,
        batch_size=256,
        lr=0.06,
        momentum=0.9,
        weight_decay=5e-4,
        warmup_epochs=0,
        proj_dim=None,
        pred_dim=None,
        fix_pred_lr=True,
        temperature=0.5,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        checkpoint_path=None,
        checkpoint_every=1,
        knn_every=1,
        knn_data=None,
        device="cpu",
        n_threads="auto",
        random_state=0,
        verbose=1,
    ):
        self.backbone = backbone
        self.width = width
        self.method = method
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.proj_dim = proj_dim
        self.pred_dim = pred_dim
        self.fix_pred_lr = fix_pred_lr
        self.temperature = temperature
        self.mean = mean
        self.std = std
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.knn_every = knn_every
        self.knn_data = knn_data
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _fix_lr(self):
        return self.fix_pred_lr

    def _make_objective(self, feat_dim, n_classes):
        proj = self.proj_dim or 4 * feat_dim
        if self.method == "simsiam":
            return SimSiamObjective(feat_dim, proj, self.pred_dim or max(1, proj // 4))
        if self.method == "simclr":
            return SimCLRObjective(feat_dim, proj, out_dim=128, temperature=self.temperature)
        raise ValueError(f"method must be 'simsiam' or 'simclr', got {self.method!r}")

    def fit(self, X, y=None):
        """Pre-train on images ``X`` (labels are ignored); returns ``self``."""
        return self._fit(X, None)


class SupervisedPretrainer(BasePretrainer):
    """Supervised pre-training (cross-entropy) with the same loop, augmentation and checkpoints.

    Parameters are those of :class:`SimSiamPretrainer` that apply (no heads); the
    augmentation is lighter by default (``crop_scale=(0.35, 1.0)``, colour jitter with
    probability ``jitter_p=0.5``, no grayscale). The backbone's ``fc`` is replaced by a
    layer with one output per class of ``y`` when the sizes differ.

    Attributes
    ----------
    backbone_ : torchvision.models.ResNet
        The trained network including its classification ``fc``, in eval mode.
    classes_ : ndarray
        Class labels, in the order of ``fc``'s outputs.
    history_ : list of dict
    """

    def __init__(
        self,
        backbone=None,
        width=16,
        epochs=30,
        batch_size=256,
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        warmup_epochs=0,
        crop_scale=(0.35, 1.0),
        jitter_p=0.5,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        checkpoint_path=None,
        checkpoint_every=1,
        knn_every=1,
        knn_data=None,
        device="cpu",
        n_threads="auto",
        random_state=0,
        verbose=1,
    ):
        self.backbone = backbone
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.crop_scale = crop_scale
        self.jitter_p = jitter_p
        self.mean = mean
        self.std = std
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.knn_every = knn_every
        self.knn_data = knn_data
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _make_augment(self):
        return BatchAugment(scale=tuple(self.crop_scale), jitter_p=self.jitter_p, grayscale_p=0.0)

    def _make_objective(self, feat_dim, n_classes):
        return SupervisedObjective()

    def fit(self, X, y):
        """Train ``backbone + fc`` with cross-entropy on ``(X, y)``; returns ``self``."""
        if y is None:
            raise ValueError("SupervisedPretrainer.fit requires labels y")
        return self._fit(X, y)
