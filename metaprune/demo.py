"""The end-to-end demo on scikit-learn's digits (ships with scikit-learn: nothing to download).

1. pre-train a small CIFAR-style ResNet-18 on the digits' training pools, self-supervised
   (SimCLR; labels unused);
2. build a bank of 5-way training tasks pruned by iterative filter pruning;
3. on new 5-way tasks, compare Meta-Vote Pruning with IFP (same and 5x the iterations) and
   the uniform random baseline, on held-out images.

``run_demo`` returns the per-task results and reports its progress through ``log`` (pre-training
epochs, each bank task as it is stored, each method on each new task); ``format_table`` and
``save_plot`` present the results.
"""

from __future__ import annotations

import re
import sys
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass

import numpy as np
import torch

from .bank import PrunedModelBank
from .data.loaders import load_digits_images
from .backbone.resnet import cifar_resnet18, fingerprint
from .data.preprocessing import ImageToTensor
from .backbone.pretrain import SimSiamPretrainer
from .pruners import IterativeFilterPruner, MetaVotePruner, UniformPruner
from .data.tasks import TaskSampler
from .runtime.threads import resolve_threads

__all__ = ["DemoConfig", "run_demo", "format_table", "save_plot"]


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults take a few minutes on 2 CPU cores.

    ``n_threads`` ("auto", int or None) is passed to the pre-trainer and to every estimator:
    ``"auto"`` uses the cores idle when each fit starts, an int that many threads (results
    that do not depend on the machine's load), None leaves torch's setting alone.
    """

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
    n_threads: str | int | None = "auto"


_METHODS = ("mvp", "ifp", "ifp5", "uniform")


def _check_methods(methods) -> None:
    """Raise ValueError, naming them, if ``methods`` holds names the demo does not know."""
    unknown = set(methods) - set(_METHODS)
    if unknown:
        raise ValueError(f"unknown demo methods {sorted(unknown)}; choose from {sorted(_METHODS)}")


def _methods(cfg: DemoConfig, backbone, bank):
    common = dict(batch_size=cfg.batch_size, random_state=cfg.random_state, n_threads=cfg.n_threads)
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
    _check_methods(cfg.methods)
    return {makers[m][0]: makers[m][1]() for m in cfg.methods}


_EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) loss=(\S+)")


def _epoch_message(line: str, every: int) -> str | None:
    """The demo's progress message for one line the pre-trainer prints, or None to skip it.

    Parameters
    ----------
    line : str
        A line printed by a verbose pre-trainer, e.g.
        ``"[SimSiamPretrainer(simclr)] epoch 5/30 loss=4.1234 lr=0.3000 time=0.9s (aug 0.1s)"``.
    every : int
        Epochs between messages; the last epoch always gets one.

    Returns
    -------
    str or None
        ``"  pre-training epoch 5/30, loss 4.1234"`` for an epoch line whose number is a
        multiple of ``every`` or the last, None for the other epoch lines and blank lines,
        any other line stripped.

    Examples
    --------
    >>> _epoch_message("[P] epoch 5/30 loss=4.1234 lr=0.3000 time=0.9s (aug 0.1s)", every=5)
    '  pre-training epoch 5/30, loss 4.1234'
    >>> _epoch_message("[P] epoch 6/30 loss=4.1000 lr=0.3000 time=0.9s (aug 0.1s)", every=5) is None
    True
    """
    match = _EPOCH_LINE.search(line)
    if match is None:
        return line.strip() or None
    epoch, epochs, loss = int(match[1]), int(match[2]), match[3]
    if epoch % every and epoch != epochs:
        return None
    return f"  pre-training epoch {epoch}/{epochs}, loss {loss}"


class _LineWriter:
    """A write-only text stream that hands every complete line to ``on_line``."""

    def __init__(self, on_line):
        self._on_line = on_line
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._on_line(line)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._pending:
            self._on_line(self._pending)
            self._pending = ""


@contextmanager
def _stdout_to(on_line):
    """Send what the block prints to ``on_line``, line by line; ``on_line`` itself prints to the
    real standard output."""
    real = sys.stdout

    def emit(line):
        with redirect_stdout(real):
            on_line(line)

    writer = _LineWriter(emit)
    try:
        with redirect_stdout(writer):
            yield
    finally:
        writer.close()


def _pretrain(cfg: DemoConfig, images, mean, std, log, every):
    """SimCLR pre-training of the demo's backbone; with ``log``, a message every ``every`` epochs
    (the pre-trainer's own per-epoch lines, routed through ``log``, and its bar on stderr)."""
    pretrainer = SimSiamPretrainer(
        backbone=cifar_resnet18(width=cfg.width, in_channels=1, num_classes=10), method="simclr",
        epochs=cfg.pretrain_epochs, batch_size=256, lr=0.3, warmup_epochs=min(2, cfg.pretrain_epochs - 1),
        mean=mean, std=std, knn_every=0, n_threads=cfg.n_threads, random_state=cfg.random_state,
        verbose=0 if log is None else 1)
    if log is None:
        return pretrainer.fit(images).backbone_

    def forward(line):
        message = _epoch_message(line, every)
        if message is not None:
            log(message)

    with _stdout_to(forward):
        return pretrainer.fit(images).backbone_


def _build_bank(cfg: DemoConfig, backbone, tasks, X, y, log):
    """The bank of IFP-pruned training tasks, stored one task at a time (as one ``build`` over
    all of them would, in the same order); with ``log``, a message per stored task."""
    bank = PrunedModelBank(backbone)
    pruner = IterativeFilterPruner(
        pruning_ratio=cfg.pruning_ratio, n_iterations=cfg.bank_iterations,
        prune_every=cfg.bank_iterations // 3, lr=cfg.lr, batch_size=cfg.batch_size, n_threads=cfg.n_threads,
        random_state=cfg.random_state)
    for k, task in enumerate(tasks, start=1):
        start = time.perf_counter()
        bank.build([task], pruner, X, y, progress=False)
        if log is not None:
            accuracy = bank.record(task.task_id, weights=False).metrics["test_accuracy"]
            log(f"  bank task {k}/{len(tasks)} {task.task_id} {list(task.classes)}: held-out accuracy "
                f"{accuracy:.3f} ({time.perf_counter() - start:.1f} s)")
    return bank


def _row(task, method, estimator, X_test, y_test) -> dict:
    """One result row: a fitted estimator's held-out accuracy, costs and kept channels on a new task."""
    return {"task": task.task_id, "classes": list(task.classes), "method": method,
            "accuracy": float(estimator.score(X_test, y_test)), "iterations": estimator.n_iter_,
            "fit_time_s": estimator.fit_time_, "params": estimator.n_params_,
            "flops": estimator.flops_, "train_flops": estimator.train_flops_,
            "selection": estimator.selection_.to_dict()}


def run_demo(cfg: DemoConfig | None = None, log=print, progress_every: int = 5) -> dict:
    """Run the whole demo; return a dict with the config, the bank summary and per-task rows.

    Parameters
    ----------
    cfg : DemoConfig, optional
        Sizes, seed and threads (default: ``DemoConfig()``).
    log : callable or None, default print
        Called with one progress message (a str) at a time: pre-training epochs, each bank
        task as it is stored with its held-out accuracy, each method on each new task, and a
        summary after pre-training and after the bank build. While it is given, the
        pre-trainer also shows its progress bar on stderr. None runs silently.
    progress_every : int, default 5
        Pre-training epochs between messages (the last epoch always gets one).

    Returns
    -------
    dict
        ``config`` (the fields of ``cfg``), ``backbone_fingerprint`` (SHA-256 of the pre-trained
        weights, :func:`~metaprune.backbone.resnet.fingerprint`: equal in two runs exactly when their
        backbones are bit-identical), ``bank_accuracy`` (held-out accuracy of every bank
        task), ``dense_params`` and ``rows`` (one dict per new task and method: accuracy,
        iterations, fit time, parameters, FLOPs, training FLOPs, and the kept channels of every
        group in the pre-trained numbering, ``selection``).

    Raises
    ------
    ValueError
        If ``cfg.n_threads`` is not "auto", a positive int or None, or a method is unknown.
    """
    cfg = cfg or DemoConfig()
    if cfg.n_threads != "auto":
        resolve_threads(cfg.n_threads)  # a bad value fails before any work
    _check_methods(cfg.methods)  # an unknown method too
    say = log if log is not None else (lambda message: None)
    torch.manual_seed(cfg.random_state)
    data = load_digits_images()
    sampler = TaskSampler(data.labels, n_test_per_class=40, random_state=cfg.random_state)
    pool = np.concatenate([sampler.train_pools[c] for c in sampler.classes])
    to_tensor = ImageToTensor(mean="auto", std="auto").fit(data.images[pool])
    X = to_tensor.transform(data.images)
    y = data.labels

    start = time.perf_counter()
    say(f"pre-training a CIFAR ResNet-18 (width {cfg.width}) with SimCLR on {len(pool)} digit images for "
        f"{cfg.pretrain_epochs} epochs")
    backbone = _pretrain(cfg, data.images[pool], to_tensor.mean_, to_tensor.std_, log, progress_every)
    backbone_print = fingerprint(backbone)
    say(f"pre-trained a CIFAR ResNet-18 (width {cfg.width}) with SimCLR on {len(pool)} digit images "
        f"in {time.perf_counter() - start:.0f} s")

    start = time.perf_counter()
    bank_tasks = sampler.sample(cfg.n_bank_tasks, n_way=5, random_state=cfg.random_state + 1, prefix="bank")
    say(f"pruning {len(bank_tasks)} training tasks into the bank with IFP "
        f"({cfg.bank_iterations} iterations each)")
    bank = _build_bank(cfg, backbone, bank_tasks, X, y, log)
    bank_accuracy = [bank.record(t, weights=False).metrics["test_accuracy"] for t in bank.task_ids]
    say(f"built a bank of {len(bank)} IFP-pruned tasks in {time.perf_counter() - start:.0f} s "
        f"(their held-out accuracy {np.mean(bank_accuracy):.3f})")

    rows = []
    new_tasks = sampler.sample(cfg.n_test_tasks, n_way=5, random_state=cfg.random_state + 2, prefix="new")
    for k, task in enumerate(new_tasks, start=1):
        X_train, y_train, X_test, y_test = task.split(X, y)
        for method, estimator in _methods(cfg, backbone, bank).items():
            estimator.fit(X_train, y_train)
            rows.append(_row(task, method, estimator, X_test, y_test))
            say(f"  new task {k}/{len(new_tasks)} {task.task_id} {list(task.classes)} {method}: held-out "
                f"accuracy {rows[-1]['accuracy']:.3f} ({rows[-1]['fit_time_s']:.1f} s)")
    return {"config": cfg.__dict__, "backbone_fingerprint": backbone_print, "bank_accuracy": bank_accuracy,
            "dense_params": sum(p.numel() for p in backbone.parameters()), "rows": rows}


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
