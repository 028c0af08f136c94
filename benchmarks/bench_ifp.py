"""IFP speed: physical pruning vs. masks, and skorch overhead vs. a plain PyTorch loop.

On a CIFAR-100 5-way task (400 training images per class, the package's fixed split) with
a CIFAR ResNet-18, this measures in one run:

1. the wall time of ``IterativeFilterPruner`` with physical surgery vs. the same schedule
   with masks (``surgery="mask"``), at r = 0.9 (target: physical at least 4x faster);
2. fine-tuning throughput of the pruned network through the estimator's skorch engine
   (``metaprune.pruners.engine.fit_for_iterations``) vs. a plain PyTorch loop on a copy of the
   same module with the same batches (target: overhead at most 20%).

Results go to ``benchmarks/results/ifp_speed.json`` and ``.md``.

Usage::

    python benchmarks/bench_ifp.py [--width 16] [--iterations 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import metaprune
from metaprune import IterativeFilterPruner
from metaprune.data.loaders import default_cifar100_path, load_cifar100
from metaprune.backbone.resnet import cifar_resnet18, load_backbone
from metaprune.data.preprocessing import CIFAR100_MEAN, CIFAR100_STD, ImageToTensor
from metaprune.data.tasks import TaskSampler
from metaprune.pruners.engine import fit_for_iterations

RESULTS = Path(__file__).resolve().parent / "results"
CHECKPOINT = Path(metaprune.__file__).resolve().parent / "checkpoints" / "cifar100_resnet18_w16_simclr.safetensors"


def cifar_task(seed: int = 0):
    path = default_cifar100_path()
    if path is None:
        raise SystemExit("CIFAR-100 not found: set METAPRUNE_CIFAR100 or place it at ../shared/data/cifar100/train.npz")
    data = load_cifar100(path)
    task = TaskSampler(data.labels, n_test_per_class=100, random_state=0).sample(1, n_way=5, random_state=seed)[0]
    to_tensor = ImageToTensor(mean=CIFAR100_MEAN, std=CIFAR100_STD)
    X_train = to_tensor.fit_transform(data.images[task.train_index])
    X_test = to_tensor.transform(data.images[task.test_index])
    return task, X_train, data.labels[task.train_index], X_test, data.labels[task.test_index]


def backbone_for(width: int):
    if width == 16 and CHECKPOINT.is_file():
        return load_backbone(CHECKPOINT), CHECKPOINT.name
    torch.manual_seed(0)
    return cifar_resnet18(width=width), f"random init (width {width})"


def timed_fit(estimator, X, y):
    start = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - start


def plain_loop(module, X, y, n_steps, batch_size, lr, seed):
    """The same SGD steps as fit_for_iterations, written directly in PyTorch."""
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    order = torch.cat([torch.randperm(len(X), generator=generator)
                       for _ in range(n_steps * batch_size // len(X) + 1)])
    start = time.perf_counter()
    for step in range(n_steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        for group in optimizer.param_groups:
            group["lr"] = metaprune.pruners.schedule.cosine_learning_rate(lr, step, n_steps)
        optimizer.zero_grad()
        loss = loss_fn(module(X_t[index]), y_t[index])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--prune-every", type=int, default=60)
    parser.add_argument("--ratio", type=float, default=0.9)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "ifp_speed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    task, X, y, X_test, y_test = cifar_task()
    _, y_enc = np.unique(y, return_inverse=True)
    backbone, backbone_name = backbone_for(args.width)
    common = dict(pruning_ratio=args.ratio, n_iterations=args.iterations, prune_every=args.prune_every,
                  lr=1e-3, batch_size=128, random_state=0, n_threads=None)  # --threads decides

    # 1. physical vs. masked IFP, interleaved so both see the same machine load
    times = {"physical": [], "mask": []}
    scores = {}
    for _ in range(args.repeats):
        for mode in ("physical", "mask"):
            est = IterativeFilterPruner(backbone, surgery=mode, **common)
            times[mode].append(timed_fit(est, X, y))
            scores[mode] = est.score(X_test, y_test)
            pruned = est.net_.module_
    # each repeat runs both modes back to back, so their ratio is the load-robust measure
    ratio = float(np.median(np.array(times["mask"]) / np.array(times["physical"])))

    # 2. estimator engine vs. plain loop on the same pruned module
    engine, plain = [], []
    for _ in range(args.repeats):
        module = copy.deepcopy(pruned)
        start = time.perf_counter()
        fit_for_iterations(module, X, y_enc.astype(np.int64), 5, args.finetune_steps, lr=1e-3, momentum=0.9,
                           weight_decay=5e-4, batch_size=128, device="cpu", seed=0)
        engine.append(time.perf_counter() - start)
        plain.append(plain_loop(copy.deepcopy(pruned), X, y_enc.astype(np.int64), args.finetune_steps, 128, 1e-3, 0))
    overhead = float(np.median(engine) / np.median(plain) - 1.0)

    result = {
        "task": {"classes": list(task.classes), "n_train": int(len(X)), "n_test": int(len(X_test)),
                 "split": "TaskSampler(n_test_per_class=100, random_state=0), first 5-way task of seed 0"},
        "backbone": backbone_name, "width": args.width,
        "ifp": {**common, "head_epochs": 10},
        "wall_time_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "mask_over_physical_time_ratio": round(ratio, 2),
        "held_out_accuracy": {k: round(float(v), 4) for k, v in scores.items()},
        "finetune_steps": args.finetune_steps,
        "engine_time_s": [round(t, 3) for t in engine], "plain_loop_time_s": [round(t, 3) for t in plain],
        "engine_overhead": round(overhead, 3),
        "threads": args.threads, "repeats": args.repeats,
        "versions": {"metaprune": metaprune.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(
        f"# IFP speed ({result['date']})\n\n"
        f"CIFAR-100 5-way task {result['task']['classes']}, {len(X)} train / {len(X_test)} held-out images, "
        f"CIFAR ResNet-18 width {args.width} ({backbone_name}), r = {args.ratio}, J = {args.iterations}, "
        f"h = {args.prune_every}, batch 128, {args.threads} threads, median of {args.repeats}.\n\n"
        f"| | wall time (s) | held-out accuracy |\n|---|---|---|\n"
        f"| IFP physical | {np.median(times['physical']):.1f} | {scores['physical']:.3f} |\n"
        f"| IFP masks | {np.median(times['mask']):.1f} | {scores['mask']:.3f} |\n\n"
        f"Masks / physical wall-time ratio (median over back-to-back pairs): **{ratio:.2f}x** (target >= 4x).\n\n"
        f"Fine-tuning the pruned network for {args.finetune_steps} steps: estimator engine "
        f"{np.median(engine):.2f} s vs. plain PyTorch loop {np.median(plain):.2f} s: overhead "
        f"**{100 * overhead:.1f}%** (target <= 20%).\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
