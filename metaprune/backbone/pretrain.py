"""Pre-training of ResNet backbones: SimSiam, SimCLR and supervised, with exact resume.

The estimators follow scikit-learn conventions (``__init__`` only stores parameters,
``fit`` returns ``self``, fitted attributes end in ``_``). They share one training loop
(:class:`_BasePretrainer`); what differs is a small *objective* module that owns the
method's heads (projector, predictor) and computes the loss from the backbone's
penultimate features of the augmented views:

- :class:`SimSiamObjective` -- SimSiam (Chen & He, 2021): 3-layer projector whose last
  BatchNorm has no affine parameters (the paper's CIFAR recipe), bottleneck predictor,
  symmetric negative cosine loss with stop-gradient on the target branch;
- :class:`SimCLRObjective` -- SimCLR NT-Xent loss, offered because it converges faster
  than SimSiam in short CPU budgets (see the checkpoint cards);
- :class:`SupervisedObjective` -- cross-entropy through the backbone's own ``fc``.

Checkpoints are pickle-free: one safetensors file holds the backbone, the heads, the
optimizer's momentum buffers and the RNG states, with every scalar (epoch, step,
history, parameters) as JSON in the file's metadata. The file is written to a temporary
name and moved into place with :func:`os.replace`, so a kill never leaves a half-written
checkpoint. The data order and the augmentations of epoch ``e`` depend only on
``(random_state, e)`` and the learning rate is a pure function of the step and of the
*total* number of epochs, so a killed run resumed from its last checkpoint reaches the
same weights as an uninterrupted run (up to floating-point non-determinism).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..data.augment import BatchAugment
from .resnet import cifar_resnet18, fingerprint, spec_of
from ..data.batches import (canonical_strides, image_tensor, in_memory_format, module_mode, standard_format_,
                      training_memory_format)
from .penultimate import penultimate
from ..runtime.threads import uses_threads
from ..data.preprocessing import CIFAR100_MEAN, CIFAR100_STD

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

CHECKPOINT_FORMAT = "metaprune.pretrain_checkpoint"


# --------------------------------------------------------------------------------------
# features and k-NN monitor (pure functions)
# --------------------------------------------------------------------------------------
def to_float_images(X, mean=None, std=None):
    """Convert images to a float32 NCHW tensor in ``[0, 1]``.

    ``uint8`` arrays are read as NHWC (the CIFAR layout) and divided by 255. Float
    arrays are read as NCHW images already normalised with ``(mean, std)`` and are
    mapped back to ``[0, 1]`` (if ``mean``/``std`` are None they are returned as is).
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"X must be 4-dimensional (N, C, H, W) float or (N, H, W, C) uint8, got {X.shape}")
    if X.dtype == np.uint8:
        return _nchw_from_nhwc(X).float().div_(255)
    if not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"X must be uint8 (NHWC) or float (NCHW), got dtype {X.dtype}")
    t = image_tensor(X)
    if mean is not None:
        m, s = _stat_tensor(mean, t.shape[1]), _stat_tensor(std, t.shape[1])
        t = t * s + m
    return t


def _nchw_from_nhwc(X: np.ndarray) -> torch.Tensor:
    """uint8 NHWC images as a C-contiguous NCHW tensor (canonical strides, see metaprune.data.batches)."""
    return canonical_strides(torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))))


def _stat_tensor(v, channels):
    t = torch.as_tensor(v, dtype=torch.float32).reshape(-1)
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(f"normalisation statistics have {t.numel()} entries for {channels} channels")
    return t.view(1, channels, 1, 1)


def _uint8_nchw(X):
    """Store a training set compactly: uint8 NCHW tensor for uint8 input, float otherwise."""
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"X must be 4-dimensional (N, C, H, W) float or (N, H, W, C) uint8, got {X.shape}")
    if X.dtype == np.uint8:
        return _nchw_from_nhwc(X)
    if not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"X must be uint8 (NHWC) or float (NCHW), got dtype {X.dtype}")
    return image_tensor(X)


@torch.no_grad()
def extract_features(model, X, mean=CIFAR100_MEAN, std=CIFAR100_STD, batch_size=512, device="cpu"):
    """Penultimate features of ``model`` for images ``X`` (eval mode, batched, no grad).

    ``X`` is uint8 NHWC (normalised here with ``mean``/``std``) or float NCHW already
    normalised. Returns a float32 numpy array ``(N, D)``. The model's mode is restored.
    """
    Xt = np.asarray(X)
    is_uint8 = Xt.dtype == np.uint8
    memory_format = training_memory_format(model, device)  # the format training uses, where it is safe
    out = []
    with module_mode(model, False):
        for i in range(0, len(Xt), batch_size):
            xb = to_float_images(Xt[i : i + batch_size]) if is_uint8 else image_tensor(Xt[i : i + batch_size])
            if is_uint8:
                xb = (xb - _stat_tensor(mean, xb.shape[1])) / _stat_tensor(std, xb.shape[1])
            xb = in_memory_format(xb.to(device), memory_format)
            out.append(penultimate(model, xb).float().cpu())
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


# --------------------------------------------------------------------------------------
# losses and objectives
# --------------------------------------------------------------------------------------
def negative_cosine_similarity(p, z):
    """SimSiam's ``D(p, z) = -cos(p, stopgrad(z))``, averaged over the batch.

    No gradient flows into ``z`` (the target branch).
    """
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def nt_xent_loss(z1, z2, temperature=0.5):
    """SimCLR's normalised temperature-scaled cross-entropy over ``2N`` views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


class SimSiamObjective(nn.Module):
    """SimSiam heads and loss.

    Projector: ``Linear-BN-ReLU-Linear-BN-ReLU-Linear-BN(affine=False)`` (hidden and output
    width ``proj_dim``); predictor: ``Linear-BN-ReLU-Linear`` with bottleneck ``pred_dim``.
    Loss: ``D(p1, z2)/2 + D(p2, z1)/2`` with stop-gradient on ``z``.
    """

    n_views = 2

    def __init__(self, feat_dim, proj_dim, pred_dim):
        super().__init__()
        self.projector = nn.Sequential(
            nn.Linear(feat_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim, affine=False),
        )
        self.predictor = nn.Sequential(
            nn.Linear(proj_dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),
            nn.Linear(pred_dim, proj_dim),
        )

    def fixed_lr_modules(self):
        return [self.predictor]

    def forward(self, feats, y=None, backbone=None):
        f1, f2 = feats
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return 0.5 * negative_cosine_similarity(p1, z2) + 0.5 * negative_cosine_similarity(p2, z1)


class SimCLRObjective(nn.Module):
    """SimCLR heads and loss: projector ``Linear-BN-ReLU-Linear`` to ``out_dim``, NT-Xent."""

    n_views = 2

    def __init__(self, feat_dim, proj_dim, out_dim=128, temperature=0.5):
        super().__init__()
        self.temperature = temperature
        self.projector = nn.Sequential(
            nn.Linear(feat_dim, proj_dim, bias=False),
            nn.BatchNorm1d(proj_dim),
            nn.ReLU(inplace=True),
            nn.Linear(proj_dim, out_dim),
        )

    def fixed_lr_modules(self):
        return []

    def forward(self, feats, y=None, backbone=None):
        f1, f2 = feats
        return nt_xent_loss(self.projector(f1), self.projector(f2), self.temperature)


class SupervisedObjective(nn.Module):
    """Cross-entropy through the backbone's own ``fc`` (one augmented view)."""

    n_views = 1

    def fixed_lr_modules(self):
        return []

    def forward(self, feats, y=None, backbone=None):
        return F.cross_entropy(backbone.fc(feats[0]), y)


# --------------------------------------------------------------------------------------
# the shared training loop
# --------------------------------------------------------------------------------------
def _epoch_seed(random_state, epoch):
    return int(np.random.SeedSequence([int(random_state), int(epoch), 0x5EED]).generate_state(1)[0])


class _BasePretrainer(BaseEstimator):
    """Training loop shared by all pre-trainers (see module docstring)."""

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

    # ---- learning rate ---------------------------------------------------------------
    def _lr_at(self, step, total_steps, warmup_steps, base):
        if step < warmup_steps:
            return base * (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    # ---- checkpoints -----------------------------------------------------------------
    def _save_checkpoint(self, path, state):
        from safetensors.torch import save_file

        tensors = {}
        for k, v in state["backbone"].state_dict().items():
            tensors[f"backbone.{k}"] = v.detach().cpu().contiguous()
        for k, v in state["objective"].state_dict().items():
            tensors[f"objective.{k}"] = v.detach().cpu().contiguous()
        osd = state["optimizer"].state_dict()
        for idx, st in osd["state"].items():
            for name, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"optim.{idx}.{name}"] = v.detach().cpu().contiguous()
        tensors["rng.torch"] = torch.get_rng_state()
        np_state = np.random.get_state()
        tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
        meta = {
            "epoch": state["epoch"],
            "step": state["step"],
            "history": state["history"],
            "params": self._resume_params(),
            "init_fingerprint": state["init_fingerprint"],
            "spec": spec_of(state["backbone"]).to_dict(),
            "n_samples": state["n_samples"],
            "optim_param_groups": osd["param_groups"],
            "rng_numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        }
        header = {"format": CHECKPOINT_FORMAT, "state": json.dumps(meta)}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        save_file(tensors, str(tmp), metadata=header)
        os.replace(tmp, path)

    def _load_checkpoint(self, path):
        """``(state, tensors)`` of a checkpoint file; a damaged or foreign file is a ValueError."""
        from .safetensors_reader import header_json, read_header, read_tensors

        header, _ = read_header(path, CHECKPOINT_FORMAT, "pre-training checkpoint")
        state = header_json(header, "state", path)
        if not isinstance(state, dict):
            raise ValueError(f"{path}: the checkpoint's 'state' entry is not a JSON object (damaged file)")
        return state, read_tensors(path, "pre-training checkpoint")

    # ---- fit -------------------------------------------------------------------------
    @uses_threads
    def _fit(self, X, y):
        from tqdm.auto import tqdm

        self._validate()
        device = torch.device(self.device)
        data = _uint8_nchw(X)
        is_uint8 = data.dtype == torch.uint8
        n, c = data.shape[:2]
        mean, std = _stat_tensor(self.mean, c).to(device), _stat_tensor(self.std, c).to(device)
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
            if n_classes is not None and backbone.fc.out_features != n_classes:
                backbone.fc = nn.Linear(backbone.fc.in_features, n_classes)
            init_fp = fingerprint(backbone)
            objective = self._make_objective(backbone.fc.in_features, n_classes)
        memory_format = training_memory_format(backbone, device)  # channels-last only where safe
        backbone.to(device).to(memory_format=memory_format)
        objective.to(device)

        # optimizer: scheduled group (backbone + heads) and fixed-lr group (e.g. predictor)
        base_lr = self.lr * self.batch_size / 256
        fixed_ids = {id(p) for m in objective.fixed_lr_modules() for p in m.parameters()}
        sched = list(backbone.parameters()) + [p for p in objective.parameters() if id(p) not in fixed_ids]
        fixed = [p for p in objective.parameters() if id(p) in fixed_ids]
        groups = [{"params": sched, "fix_lr": False}]
        if fixed:
            groups.append({"params": fixed, "fix_lr": bool(self._fix_lr())})
        opt = torch.optim.SGD(groups, lr=base_lr, momentum=self.momentum, weight_decay=self.weight_decay)

        bs = min(self.batch_size, n)
        steps_per_epoch = max(1, n // bs)
        total_steps = steps_per_epoch * self.epochs
        warmup_steps = int(round(self.warmup_epochs * steps_per_epoch))
        start_epoch, step, history = 0, 0, []

        ckpt = Path(self.checkpoint_path) if self.checkpoint_path else None
        if ckpt is not None and ckpt.exists():
            meta, tensors = self._load_checkpoint(ckpt)
            if meta["params"] != self._resume_params() or meta["init_fingerprint"] != init_fp:
                raise ValueError(
                    f"checkpoint {ckpt} was made with other parameters or another initial backbone; "
                    "delete it or use another checkpoint_path"
                )
            if meta["n_samples"] != n:
                raise ValueError(f"checkpoint {ckpt} was made on {meta['n_samples']} samples, X has {n}")
            backbone.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("backbone.")})
            objective.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("objective.")})
            ostate = {}
            for k, v in tensors.items():
                if k.startswith("optim."):
                    _, idx, name = k.split(".", 2)
                    ostate.setdefault(int(idx), {})[name] = v.to(device)
            opt.load_state_dict({"state": ostate, "param_groups": meta["optim_param_groups"]})
            torch.set_rng_state(tensors["rng.torch"])
            kind, pos, has_gauss, cached = meta["rng_numpy"]
            keys = tensors["rng.numpy"].numpy().astype(np.uint32)
            np.random.set_state((kind, keys, pos, has_gauss, cached))
            start_epoch, step, history = meta["epoch"], meta["step"], meta["history"]
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
                lr = self._lr_at(step, total_steps, warmup_steps, base_lr)
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
        """Penultimate features of the fitted backbone for images ``X``."""
        check_is_fitted(self, "backbone_")
        return extract_features(self.backbone_, X, mean=self.mean, std=self.std)


class SimSiamPretrainer(_BasePretrainer):
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


class SupervisedPretrainer(_BasePretrainer):
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
