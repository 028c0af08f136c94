"""Bank-build throughput: one task at a time vs stacks of tasks with shared work (issue 14).

Builds the same IFP bank of real CIFAR-100 5-way tasks (the shipped width-16 SimCLR backbone;
width 32 is a seeded random initialisation of the same architecture, there is no width-32
checkpoint) twice per configuration, side by side in one run:

- ``one at a time``: ``PrunedModelBank.build(..., tasks_at_once=1, n_jobs=2)``, one torch
  thread per worker (today's path);
- ``stacked``: ``tasks_at_once=K`` with ``n_jobs=2`` (each worker trains a stack of K tasks
  as one grouped network; the pre-trained features and first-event scores are computed once
  per image for the whole build).

It reports tasks per hour, the peak resident memory of the build's processes, and the mean
and spread of the bank tasks' held-out accuracy. Results: ``benchmarks/results/many_tasks.json``
and ``.md``.

    python benchmarks/bench_many_tasks.py --n-tasks 8 --stack 4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(config, queue):
    """One bank build in a fresh process (so peak memory is this build's own)."""
    import torch

    from _cifar import cifar100_images, shipped_backbone
    from metaprune import IterativeFilterPruner, PrunedModelBank
    from metaprune.backbone.resnet import cifar_resnet18
    from metaprune.data.tasks import TaskSampler

    torch.set_num_threads(1)
    X, labels = cifar100_images()
    if config["width"] == 16:
        backbone = shipped_backbone()
    else:
        torch.manual_seed(0)
        backbone = cifar_resnet18(width=config["width"], in_channels=3, num_classes=100)
    sampler = TaskSampler(labels, n_test_per_class=100, random_state=14)
    pool = config.get("class_pool")  # tasks drawn from fewer classes share more images
    classes = None if pool is None else np.random.default_rng(14).permutation(100)[:pool]
    tasks = sampler.sample(config["n_tasks"], n_way=5, n_train_per_class=config["n_train_per_class"], classes=classes)
    device = config.get("device", "cpu")
    pruner = IterativeFilterPruner(n_iterations=config["J"], lr=3e-2, n_threads=1, random_state=0, device=device)
    with tempfile.TemporaryDirectory() as folder:
        bank = PrunedModelBank(backbone, path=Path(folder) / "bank.sqlite")
        start = time.perf_counter()
        bank.build(tasks, pruner, X, labels, n_jobs=2 if device == "cpu" else 1, n_threads=1, tasks_at_once=config["tasks_at_once"],
                   share_work=config.get("share_work"), progress=False)
        wall = time.perf_counter() - start
        accuracy = [bank.record(t.task_id).metrics["test_accuracy"] for t in tasks]
        bank.close()
    from joblib import Parallel, delayed
    # loky reuses its workers: asking two jobs for their peak reaches the processes that pruned
    workers = [usage.ru_maxrss / 1024 for usage in
               Parallel(n_jobs=2)(delayed(resource.getrusage)(resource.RUSAGE_SELF) for _ in range(4))]
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True, kill_workers=True)  # else the process may wait on them at exit
    queue.put({**config, "wall_s": wall, "tasks_per_hour": 3600 * len(tasks) / wall,
               "peak_rss_mb": max(workers), "main_peak_rss_mb": _peak_rss_mb(),
               "accuracy_mean": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)),
               "accuracy": accuracy})


def run(configs):
    rows = []
    ctx = mp.get_context("spawn")
    for config in configs:
        queue = ctx.Queue()
        process = ctx.Process(target=_build, args=(config, queue))
        process.start()
        row = queue.get()
        process.join()
        rows.append(row)
        print(f"width {row['width']} J={row['J']} tasks_at_once={row['tasks_at_once']} "
              f"share_work={row.get('share_work')}: "
              f"{row['tasks_per_hour']:.0f} tasks/h ({row['wall_s']:.0f} s), peak {row['peak_rss_mb']:.0f} MB per worker ({row['main_peak_rss_mb']:.0f} main), "
              f"held-out {row['accuracy_mean']:.3f} ({row['accuracy_std']:.3f})", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-tasks", type=int, default=8)
    parser.add_argument("--stack", type=int, default=4, help="tasks_at_once of the stacked builds")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--iterations", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--n-train-per-class", type=int, default=400)
    parser.add_argument("--class-pool", type=int, default=None,
                        help="draw the tasks' classes from this many classes (default: all 100)")
    parser.add_argument("--device", default="cpu", help="cpu (two workers) or cuda (one process)")
    parser.add_argument("--out", type=Path, default=OUT / "many_tasks")
    args = parser.parse_args(argv)
    paths = ((1, False), (1, True), (args.stack, True))  # one at a time; shared work only; stacked + shared
    configs = [dict(width=w, J=J, n_tasks=args.n_tasks, n_train_per_class=args.n_train_per_class, tasks_at_once=k,
                    share_work=share, class_pool=args.class_pool, device=args.device)
               for w in args.widths for J in args.iterations for k, share in paths]
    rows = run(configs)
    import torch
    meta = {"command": "python benchmarks/bench_many_tasks.py " + " ".join(argv or sys.argv[1:]),
            "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "cores": mp.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    pool = f", classes drawn from {args.class_pool}" if args.class_pool else ""
    lines = [f"Bank builds of {args.n_tasks} real CIFAR-100 5-way IFP tasks{pool} ({args.n_train_per_class} training "
             f"images per class, r = 0.9, h = 0.3 J, lr 3e-2), n_jobs=2 with one torch thread each, on "
             f"{meta['cores']} cores; torch {meta['torch']}. `{meta['command']}`", "",
             "| width | J | tasks at once | shared work | tasks/hour | speed-up | peak RSS per worker (MB) | main process (MB) | held-out accuracy (std) |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = {}
    for r in rows:
        key = (r["width"], r["J"])
        base.setdefault(key, r["tasks_per_hour"])
        lines.append(f"| {r['width']} | {r['J']} | {r['tasks_at_once']} | {'yes' if r.get('share_work') else 'no'} | "
                     f"{r['tasks_per_hour']:.0f} | "
                     f"{r['tasks_per_hour'] / base[key]:.2f}x | {r['peak_rss_mb']:.0f} | {r['main_peak_rss_mb']:.0f} | "
                     f"{r['accuracy_mean']:.3f} ({r['accuracy_std']:.3f}) |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
