"""The end-to-end demo on scikit-learn's digits (ships with scikit-learn: nothing to download).

1. pre-train a small CIFAR-style ResNet-18 on the digits' training pools, self-supervised
   (SimCLR; labels unused);
2. build a bank of 5-way training tasks pruned by iterative filter pruning;
3. on new 5-way tasks, compare Meta-Vote Pruning with IFP (same and 5x the iterations) and
   the uniform random baseline, on held-out images.

``run_demo`` returns the per-task results; ``format_table`` and ``save_plot`` present them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .bank import PrunedModelBank
from .datasets import load_digits_images
from .models import cifar_resnet18
from .preprocessing import ImageToTensor
from .pretrain import SimSiamPretrainer
from .pruners import IterativeFilterPruner, MetaVotePruner, UniformPruner
from .tasks import TaskSampler

__all__ = ["DemoConfig", "run_demo", "format_table", "save_plot"]


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults take a few minutes on 2 CPU cores."""

    width: int = 8
    pretrain_epochs: int = 30
    n_bank_tasks: int = 16
    n_test_tasks: int = 3
    pruning_ratio: float = 0.75
    bank_iterations: int = 150
    iterations: int = 30
    n_neighbors: int = 5
    lr: float = 3e-3
    batch_size: int = 64
    random_state: int = 0
    methods: tuple = ("mvp", "ifp", "ifp5", "uniform")


def _methods(cfg: DemoConfig, backbone, bank):
    common = dict(batch_size=cfg.batch_size, random_state=cfg.random_state)
    J = cfg.iterations
    makers = {
        "mvp": (f"MVP ({J} it)", lambda: MetaVotePruner(bank, n_neighbors=min(cfg.n_neighbors, len(bank)),
                                                        n_iterations=J,
                                                        lr=cfg.lr, **common)),
        "ifp": (f"IFP ({J} it)", lambda: IterativeFilterPruner(
            backbone, pruning_ratio=cfg.pruning_ratio, n_iterations=J, prune_every=max(1, J // 3), lr=cfg.lr,
            **common)),
        "ifp5": (f"IFP ({5 * J} it)", lambda: IterativeFilterPruner(
            backbone, pruning_ratio=cfg.pruning_ratio, n_iterations=5 * J, prune_every=max(1, 5 * J // 3),
            lr=cfg.lr, **common)),
        "uniform": (f"Uniform ({J} it)", lambda: UniformPruner(
            backbone, pruning_ratio=cfg.pruning_ratio, n_iterations=J, lr=cfg.lr, **common)),
    }
    unknown = set(cfg.methods) - set(makers)
    if unknown:
        raise ValueError(f"unknown demo methods {sorted(unknown)}; choose from {sorted(makers)}")
    return {makers[m][0]: makers[m][1]() for m in cfg.methods}


def run_demo(cfg: DemoConfig | None = None, log=print) -> dict:
    """Run the whole demo; return a dict with the config, the bank summary and per-task rows."""
    cfg = cfg or DemoConfig()
    torch.manual_seed(cfg.random_state)
    data = load_digits_images()
    sampler = TaskSampler(data.labels, n_test_per_class=40, random_state=cfg.random_state)
    pool = np.concatenate([sampler.train_pools[c] for c in sampler.classes])
    to_tensor = ImageToTensor(mean="auto", std="auto").fit(data.images[pool])
    X = to_tensor.transform(data.images)
    y = data.labels

    start = time.perf_counter()
    pretrainer = SimSiamPretrainer(
        backbone=cifar_resnet18(width=cfg.width, in_channels=1, num_classes=10), method="simclr",
        epochs=cfg.pretrain_epochs, batch_size=256, lr=0.3, warmup_epochs=min(2, cfg.pretrain_epochs - 1), mean=to_tensor.mean_,
        std=to_tensor.std_, knn_every=0, random_state=cfg.random_state, verbose=0)
    backbone = pretrainer.fit(data.images[pool]).backbone_
    log(f"pre-trained a CIFAR ResNet-18 (width {cfg.width}) with SimCLR on {len(pool)} digit images "
        f"in {time.perf_counter() - start:.0f} s")

    start = time.perf_counter()
    bank = PrunedModelBank(backbone)
    bank_tasks = sampler.sample(cfg.n_bank_tasks, n_way=5, random_state=cfg.random_state + 1, prefix="bank")
    bank.build(bank_tasks, IterativeFilterPruner(
        pruning_ratio=cfg.pruning_ratio, n_iterations=cfg.bank_iterations, prune_every=cfg.bank_iterations // 3,
        lr=cfg.lr, batch_size=cfg.batch_size, random_state=cfg.random_state), X, y, progress=False)
    bank_accuracy = [bank.record(t).metrics["test_accuracy"] for t in bank.task_ids]
    log(f"built a bank of {len(bank)} IFP-pruned tasks in {time.perf_counter() - start:.0f} s "
        f"(their held-out accuracy {np.mean(bank_accuracy):.3f})")

    rows = []
    for task in sampler.sample(cfg.n_test_tasks, n_way=5, random_state=cfg.random_state + 2, prefix="new"):
        X_train, y_train, X_test, y_test = task.split(X, y)
        for method, estimator in _methods(cfg, backbone, bank).items():
            estimator.fit(X_train, y_train)
            rows.append({"task": task.task_id, "classes": list(task.classes), "method": method,
                         "accuracy": float(estimator.score(X_test, y_test)), "iterations": estimator.n_iter_,
                         "fit_time_s": estimator.fit_time_, "params": estimator.n_params_,
                         "flops": estimator.flops_, "train_flops": estimator.train_flops_})
        log(f"  {task.task_id} {list(task.classes)}: " +
            ", ".join(f"{r['method']} {r['accuracy']:.3f}" for r in rows if r["task"] == task.task_id))
    return {"config": cfg.__dict__, "bank_accuracy": bank_accuracy, "dense_params":
            sum(p.numel() for p in backbone.parameters()), "rows": rows}


def _summary(rows):
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        acc = np.array([r["accuracy"] for r in sel])
        out.append({"method": m, "accuracy": acc.mean(), "std": acc.std(),
                    "iterations": np.mean([r["iterations"] for r in sel]),
                    "time": np.mean([r["fit_time_s"] for r in sel]),
                    "params": np.mean([r["params"] for r in sel]), "flops": np.mean([r["flops"] for r in sel]),
                    "train_flops": np.mean([r["train_flops"] for r in sel])})
    return out


def format_table(result: dict) -> str:
    """A Markdown table: mean (std) held-out accuracy and costs per method."""
    lines = ["| method | accuracy | iterations | fit time (s) | params | FLOPs/image | training GFLOPs |",
             "|---|---|---|---|---|---|---|"]
    for s in _summary(result["rows"]):
        lines.append(f"| {s['method']} | {s['accuracy']:.3f} ({s['std']:.3f}) | {s['iterations']:.0f} | "
                     f"{s['time']:.1f} | {s['params']:.0f} | {s['flops']:.0f} | {s['train_flops'] / 1e9:.2f} |")
    return "\n".join(lines)


def save_plot(result: dict, path) -> bool:
    """Bar chart of accuracy per method (needs matplotlib); returns False when it is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    summary = _summary(result["rows"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar([s["method"] for s in summary], [s["accuracy"] for s in summary],
           yerr=[s["std"] for s in summary], color=["C0", "C1", "C2", "C3"][: len(summary)], capsize=4)
    ax.axhline(0.2, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("5-way digits tasks, pruned CIFAR ResNet-18")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
