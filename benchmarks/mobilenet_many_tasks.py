"""One real run beyond ResNets (issue 16): a MobileNetV2 pruned for many CIFAR-100 tasks.

The backbone is the package's own SimCLR pre-training of a torchvision MobileNetV2
(``width_mult=0.5``, rebuilt from its recipe, no torchvision weights), made with

    python benchmarks/pretrain_cifar.py --arch mobilenet_v2 --width-mult 0.5 --method simclr \\
        --epochs 10 --warmup-epochs 1 --subset-per-class 100 --knn-every 5 --threads 1 --recalibrate-bn

and loaded from its file like any user's weights. Then, as in the paper's protocol:

1. an IFP bank of ``--bank-tasks`` seeded 5-way tasks (200 training images per class), built
   with ``PrunedModelBank.build``;
2. ``--test-tasks`` new 5-way tasks, each sharing 2 classes with bank tasks; on each, MVP
   (``n_neighbors=3``) and Uniform with the same iterations, and IFP with the same budget,
   scored on the task's 100 held-out images per class (never seen by any fit).

Results: ``benchmarks/results/mobilenet_v2/run.json`` and ``.md``.

    python benchmarks/mobilenet_many_tasks.py --backbone metaprune/checkpoints/cifar100_mobilenet_v2_wm0.5_simclr.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "mobilenet_v2"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--bank-tasks", type=int, default=8)
    parser.add_argument("--test-tasks", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from _cifar import cifar100_images
    from metaprune import IterativeFilterPruner, MetaVotePruner, PrunedModelBank, UniformPruner
    from metaprune.backbone.resnet import load_backbone
    from metaprune.channels.complexity import count_flops, count_parameters
    from metaprune.channels.filter_space import FilterSpace
    from metaprune.data.tasks import TaskSampler

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    X, y = cifar100_images()
    backbone = load_backbone(args.backbone).eval()
    space = FilterSpace.from_model(backbone, X.shape[1:])
    sampler = TaskSampler(y, n_test_per_class=100, random_state=16)
    bank_tasks = sampler.sample(args.bank_tasks, n_way=5, n_train_per_class=200, prefix="bank")
    common = dict(pruning_ratio=args.ratio, n_threads=args.threads, random_state=0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        bank = PrunedModelBank(backbone, path=Path(folder) / "bank.sqlite")
        t0 = time.perf_counter()
        bank.build(bank_tasks, IterativeFilterPruner(n_iterations=args.iterations, **common), X, y, progress=False)
        bank_seconds = time.perf_counter() - t0
        bank_accuracy = [float(bank.record(t, weights=False).metrics.get("test_accuracy", np.nan))
                         for t in bank.task_ids]
        for i in range(args.test_tasks):
            # a new task sharing 2 classes with one bank task
            [task] = sampler.sharing(bank_tasks[i % len(bank_tasks)], n_shared=2, n_tasks=1, n_train_per_class=200,
                                     prefix=f"test{i}", random_state=np.random.default_rng([16, i]))
            Xtr, ytr, Xte, yte = task.split(X, y)
            row = {"task": task.task_id, "classes": [int(c) for c in task.classes]}
            for name, est in (
                    ("mvp", MetaVotePruner(bank, n_neighbors=3, n_iterations=args.iterations, **common)),
                    ("uniform", UniformPruner(backbone, n_iterations=args.iterations, **common)),
                    ("ifp", IterativeFilterPruner(backbone, n_iterations=args.iterations, **common))):
                t = time.perf_counter()
                est.fit(Xtr, ytr)
                row[name] = float(est.score(Xte, yte))
                row[f"{name}_s"] = round(time.perf_counter() - t, 1)
            row["params_pruned"] = count_parameters(est.net_.module_)
            row["flops_pruned"] = count_flops(est.net_.module_, X.shape[1:])
            rows.append(row)
            print(json.dumps(row), flush=True)
        bank.close()
    summary = {"backbone": Path(args.backbone).name, "groups": len(space), "bank_tasks": args.bank_tasks,
               "bank_build_s": round(bank_seconds, 1), "bank_test_accuracy": bank_accuracy,
               "iterations": args.iterations, "ratio": args.ratio, "threads": args.threads,
               "params_dense": count_parameters(backbone), "flops_dense": count_flops(backbone, X.shape[1:]),
               "wall_s": round(time.perf_counter() - start, 1), "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "run.json").write_text(json.dumps(summary, indent=1) + "\n")
    methods = ("mvp", "uniform", "ifp")
    lines = ["# MobileNetV2 pruned for many CIFAR-100 tasks", "",
             f"`python benchmarks/mobilenet_many_tasks.py --backbone {args.backbone}` "
             f"(--bank-tasks {args.bank_tasks} --test-tasks {args.test_tasks} --iterations {args.iterations} "
             f"--ratio {args.ratio}); {args.threads} thread(s); wall {summary['wall_s'] / 60:.1f} min.", "",
             f"Backbone `{summary['backbone']}`: {len(space)} channel groups, "
             f"{summary['params_dense'] / 1e6:.2f} M parameters, {summary['flops_dense'] / 1e6:.1f} MFLOPs "
             f"per 32x32 image; pruned networks at r = {args.ratio}: "
             f"{rows[-1]['params_pruned'] / 1e6:.3f} M parameters, {rows[-1]['flops_pruned'] / 1e6:.2f} MFLOPs.",
             "", f"IFP bank: {args.bank_tasks} tasks (5-way, 200 training images per class, J = {args.iterations}), "
             f"built in {bank_seconds / 60:.1f} min; their held-out accuracy "
             f"{np.nanmean(bank_accuracy):.3f} (min {np.nanmin(bank_accuracy):.3f}, max {np.nanmax(bank_accuracy):.3f}).",
             "", "Each test task shares 2 classes with one bank task (its other 3 classes are drawn outside "
             "that task's).", "",
             "Held-out accuracy (100 images per class, chance 0.2). MVP: n_neighbors = 3; all methods "
             f"{args.iterations} iterations at r = {args.ratio}, every other parameter at its default.", "",
             "| task | classes | MVP | Uniform | IFP |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['classes']} | {r['mvp']:.3f} | {r['uniform']:.3f} | {r['ifp']:.3f} |")
    means = {m: np.mean([r[m] for r in rows]) for m in methods}
    lines.append(f"| mean | | {means['mvp']:.3f} | {means['uniform']:.3f} | {means['ifp']:.3f} |")
    diffs = np.array([r["mvp"] - r["uniform"] for r in rows])
    lines += ["", f"MVP - Uniform per task: {', '.join(f'{d:+.3f}' for d in diffs)} "
              f"(MVP ahead on {int((diffs > 0).sum())} of {len(diffs)}); too few tasks for a confidence interval."]
    (OUT / "run.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
