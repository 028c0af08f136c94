"""The training loop every pre-trainer shares: data order, augmentation, schedule, checkpoints.

:class:`BasePretrainer` turns a subclass's parameters and *objective*
(:mod:`~metaprune.backbone.pretrain.objectives`) into a trained backbone. The data order
and the augmentations of epoch ``e`` depend only on ``(random_state, e)`` and the learning
rate is a pure function of the step and of the *total* number of epochs
(:func:`~metaprune.backbone.lr_schedule.warmup_cosine_learning_rate`), so a killed run
resumed from its last checkpoint (:mod:`~metaprune.backbone.pretrain.checkpoints`) reaches
the same weights as an uninterrupted run (up to floating-point non-determinism).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ...data.augment import BatchAugment
from ...data.batches import in_memory_format, standard_format_, training_memory_format
from ...runtime.threads import uses_threads
from ..lr_schedule import warmup_cosine_learning_rate
from ..penultimate import penultimate
from ...channels.filter_space import head_name
from ..resnet import cifar_resnet18, fingerprint
from .checkpoints import check_resumable, load_checkpoint, restore_checkpoint, save_checkpoint
from .features import extract_features, knn_accuracy
from .images import channel_statistic, compact_images

__all__ = ["BasePretrainer"]


def _epoch_seed(random_state, epoch):
    return int(np.random.SeedSequence([int(random_state), int(epoch), 0x5EED]).generate_state(1)[0])


class BasePretrainer(BaseEstimator):
    """Training loop shared by all pre-trainers (see the module docstring).

    Subclasses store their parameters in ``__init__`` (scikit-learn style; those of
    :class:`~metaprune.backbone.pretrain.SimSiamPretrainer` that apply), build their
    objective in ``_make_objective(feat_dim, n_classes)`` and call ``_fit(X, y)`` from
    ``fit``.
    """

    # parameters that may differ between a run and its resumption
    _resume_free = (
        "checkpoint_path", "checkpoint_every", "knn_every", "knn_data", "device", "n_threads", "verbose",
        "backbone",
    )

    def _make_objective(self, feat_dim, n_classes):  # pragma: no cover - abstract
        raise NotImplementedError

    def _make_augment(self):
        return BatchAugment()

    # ---- parameter handling -------------------------------------------------------
    def _initial_backbone(self, in_channels, n_classes):
        if self.backbone is not None:
            return copy.deepcopy(self.backbone)
        return cifar_resnet18(width=self.width, in_channels=in_channels, num_classes=n_classes or 100)

    def _resume_params(self):
        out = {}
        for k, v in self.get_params(deep=False).items():
            if k in self._resume_free:
                continue
            out[k] = list(v) if isinstance(v, tuple) else v
        return json.loads(json.dumps(out, default=str))

    def _validate(self):
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if not 0 <= self.warmup_epochs < max(self.epochs, 1e-9) and self.warmup_epochs != 0:
            raise ValueError("warmup_epochs must be in [0, epochs)")
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be >= 1")

    def _save_checkpoint(self, path, state):
        save_checkpoint(path, state, self._resume_params())

    def _optimizer(self, backbone, objective, base_lr):
        """SGD with a scheduled group (backbone + heads) and a fixed-lr group (e.g. predictor)."""
        fixed_ids = {id(p) for m in objective.fixed_lr_modules() for p in m.parameters()}
        sched = list(backbone.parameters()) + [p for p in objective.parameters() if id(p) not in fixed_ids]
        fixed = [p for p in objective.parameters() if id(p) in fixed_ids]
        groups = [{"params": sched, "fix_lr": False}]
        if fixed:
            groups.append({"params": fixed, "fix_lr": bool(self._fix_lr())})
        return torch.optim.SGD(groups, lr=base_lr, momentum=self.momentum, weight_decay=self.weight_decay)

    # ---- fit -------------------------------------------------------------------------
    @uses_threads
    def _fit(self, X, y):
        from tqdm.auto import tqdm

        self._validate()
        device = torch.device(self.device)
        data = compact_images(X)
        is_uint8 = data.dtype == torch.uint8
        n, c = data.shape[:2]
        mean, std = channel_statistic(self.mean, c).to(device), channel_statistic(self.std, c).to(device)
        y_t = None
        n_classes = None
        if y is not None:
            y = np.asarray(y)
            if len(y) != n:
                raise ValueError(f"X has {n} samples but y has {len(y)}")
            self.classes_, y_idx = np.unique(y, return_inverse=True)
            y_t = torch.as_tensor(y_idx, dtype=torch.long)
            n_classes = len(self.classes_)

        # deterministic initialisation of backbone and heads
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            backbone = self._initial_backbone(c, n_classes)
            head = head_name(backbone)
            if n_classes is not None and backbone.get_submodule(head).out_features != n_classes:
                backbone.set_submodule(head, nn.Linear(backbone.get_submodule(head).in_features, n_classes))
            init_fp = fingerprint(backbone)
            objective = self._make_objective(backbone.get_submodule(head).in_features, n_classes)
        memory_format = training_memory_format(backbone, device)  # channels-last only where safe
        backbone.to(device).to(memory_format=memory_format)
        objective.to(device)

        base_lr = self.lr * self.batch_size / 256
        opt = self._optimizer(backbone, objective, base_lr)

        bs = min(self.batch_size, n)
        steps_per_epoch = max(1, n // bs)
        total_steps = steps_per_epoch * self.epochs
        warmup_steps = int(round(self.warmup_epochs * steps_per_epoch))
        start_epoch, step, history = 0, 0, []

        ckpt = Path(self.checkpoint_path) if self.checkpoint_path else None
        if ckpt is not None and ckpt.exists():
            meta, tensors = load_checkpoint(ckpt)
            check_resumable(meta, ckpt, self._resume_params(), init_fp, n)
            start_epoch, step, history = restore_checkpoint(meta, tensors, backbone, objective, opt, device)
            if self.verbose:
                print(f"[{self._label()}] resumed from {ckpt} at epoch {start_epoch}", flush=True)

        augment = self._make_augment()
        bar = tqdm(
            range(start_epoch, self.epochs),
            initial=start_epoch,
            total=self.epochs,
            disable=not self.verbose,
            desc=self._label(),
            mininterval=5,
        )
        for epoch in bar:
            backbone.train()
            objective.train()
            g = torch.Generator().manual_seed(_epoch_seed(self.random_state, epoch))
            order = torch.randperm(n, generator=g)
            t0 = time.perf_counter()
            aug_time = 0.0
            loss_sum = torch.zeros(())
            for b in range(steps_per_epoch):
                lr = warmup_cosine_learning_rate(base_lr, step, total_steps, warmup_steps)
                for group in opt.param_groups:
                    group["lr"] = base_lr if group.get("fix_lr") else lr
                idx = order[b * bs : (b + 1) * bs]
                ta = time.perf_counter()
                xb = data[idx].to(device)
                xb = xb.float().div_(255) if is_uint8 else xb * std + mean
                views = [augment(xb, g) for _ in range(objective.n_views)]
                xin = in_memory_format((torch.cat(views) - mean) / std, memory_format)
                aug_time += time.perf_counter() - ta
                feats = penultimate(backbone, xin).chunk(objective.n_views)
                yb = y_t[idx].to(device) if y_t is not None else None
                loss = objective(feats, yb, backbone)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach().cpu()
                step += 1
            ep_time = time.perf_counter() - t0
            rec = {
                "epoch": epoch + 1,
                "loss": float(loss_sum) / steps_per_epoch,
                "lr": lr,
                "time_s": round(ep_time, 2),
                "aug_time_s": round(aug_time, 2),
                "knn_acc": None,
            }
            if self.knn_data is not None and self.knn_every and (
                (epoch + 1) % self.knn_every == 0 or epoch + 1 == self.epochs
            ):
                tk = time.perf_counter()
                rec["knn_acc"] = self._monitor(backbone, device)
                rec["knn_time_s"] = round(time.perf_counter() - tk, 2)
            history.append(rec)
            if self.verbose:
                knn = "" if rec["knn_acc"] is None else f" knn={rec['knn_acc']:.4f}"
                bar.write(
                    f"[{self._label()}] epoch {epoch + 1}/{self.epochs} loss={rec['loss']:.4f} "
                    f"lr={lr:.4f} time={ep_time:.1f}s (aug {aug_time:.1f}s){knn}"
                )
            if ckpt is not None and ((epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.epochs):
                self._save_checkpoint(
                    ckpt,
                    dict(
                        backbone=backbone,
                        objective=objective,
                        optimizer=opt,
                        epoch=epoch + 1,
                        step=step,
                        history=history,
                        init_fingerprint=init_fp,
                        n_samples=n,
                    ),
                )
        bar.close()
        standard_format_(backbone).eval()
        self.backbone_ = backbone.cpu()
        self.objective_ = objective.cpu().eval()
        self.history_ = history
        self.n_epochs_ = len(history)
        return self

    def _fix_lr(self):
        return False

    def _label(self):
        method = getattr(self, "method", None)
        return type(self).__name__ + (f"({method})" if method else "")

    def _monitor(self, backbone, device):
        Xtr, ytr, Xte, yte = self.knn_data
        kw = dict(mean=self.mean, std=self.std, device=device)
        ftr = extract_features(backbone, Xtr, **kw)
        fte = extract_features(backbone, Xte, **kw)
        return knn_accuracy(ftr, ytr, fte, yte, n_tasks=100, random_state=0)

    def transform(self, X):
        """Penultimate features of the fitted backbone for images ``X``.

        Parameters
        ----------
        X : array-like of shape (N, H, W, C) uint8 or (N, C, H, W) float
            Images as for ``fit``.

        Returns
        -------
        numpy.ndarray of shape (N, D), float32
        """
        check_is_fitted(self, "backbone_")
        return extract_features(self.backbone_, X, mean=self.mean, std=self.std)
