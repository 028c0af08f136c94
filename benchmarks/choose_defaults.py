"""Measure the learning rates the pruners' defaults are chosen from (issue 19).

For each data set the package ships or reads (scikit-learn digits, CIFAR-100, Fashion-MNIST),
with a backbone pre-trained by the package itself (the shipped CIFAR-100 SimCLR checkpoint;
for digits and Fashion-MNIST one made here with ``metaprune pretrain``'s defaults), this fits
every pruner with all its defaults except the learning rate, over a grid of learning rates,
on a few seeded 5-way *selection* tasks, and scores each fit on the task's held-out images:

- IFP at the defaults (r = 0.9, J = 200, h = 60) and at a short budget (J = 60, h = 20) at
  r = 0.9 and r = 0.5;
- Uniform at the default 100 iterations and at 30;
- MVP (``n_neighbors=3``) at 100 and 30 iterations, with a bank of IFP tasks (built at the
  best IFP learning rate) sharing two classes with each selection task.

The larger images cost more, so CIFAR-100 drops the r = 0.5 budget and Fashion-MNIST keeps
only the default budgets (``CONFIGS``).

Every fit is one line of ``<out>/cells.jsonl``; a run started again skips the cells already
there. ``--report`` writes ``<out>/table.md`` (mean held-out accuracy per learning rate) and
the learning rate that maximises the mean over data sets and budgets.

    python benchmarks/choose_defaults.py --datasets digits cifar100 fashion-mnist --threads 1
    python benchmarks/choose_defaults.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
N_SELECTION_TASKS = 3
OUT = Path(__file__).resolve().parent / "results" / "defaults"

# (name, method, fit parameters): every other parameter is the estimator's default
IFP_CONFIGS = (("ifp-J200-r0.9", {}),
               ("ifp-J60-r0.9", {"n_iterations": 60, "prune_every": 20}),
               ("ifp-J60-r0.5", {"n_iterations": 60, "prune_every": 20, "pruning_ratio": 0.5}))
ONESHOT_CONFIGS = (("J100", {}), ("J30", {"n_iterations": 30}))
# the configurations measured per data set (the larger images cost more: fewer budgets there)
CONFIGS = {"digits": ("ifp-J200-r0.9", "ifp-J60-r0.9", "ifp-J60-r0.5", "J100", "J30"),
           "cifar100": ("ifp-J200-r0.9", "ifp-J60-r0.9", "J100", "J30"),
           "fashion-mnist": ("ifp-J200-r0.9", "J100")}


def dataset_setup(name, cache: Path, threads):
    """Preprocessed images, labels, backbone and the task sampler's pool sizes of one data set."""
    from metaprune.backbone.resnet import backbone_metadata, load_backbone
    from metaprune.cli.jobs_build import pretrain_backbone
    from metaprune.data.loaders import default_cifar100_path, load_cifar100, load_digits_images, \
        load_fashion_mnist
    from metaprune.data.preprocessing import CIFAR100_MEAN, CIFAR100_STD, ImageToTensor
    import metaprune

    if name == "cifar100":
        data = load_cifar100(default_cifar100_path())
        backbone_path = Path(metaprune.__file__).parent / "checkpoints" / "cifar100_resnet18_w16_simclr.safetensors"
        mean, std = CIFAR100_MEAN, CIFAR100_STD
        sizes = dict(n_test_per_class=100, n_train_per_class=200)
    else:
        if name == "digits":
            data, pretrain_data, epochs = load_digits_images(), None, 30
            sizes = dict(n_test_per_class=60, n_train_per_class=None)  # ~120 training images per class
        else:
            data = load_fashion_mnist()
            rng = np.random.default_rng(0)
            pretrain_data, epochs = data.subset(np.sort(rng.choice(len(data), 6000, replace=False))), 15
            sizes = dict(n_test_per_class=100, n_train_per_class=200)
        backbone_path = cache / f"{name}_w8_simclr.safetensors"
        if not backbone_path.is_file():
            print(f"[{name}] pre-training the backbone (width 8, SimCLR, {epochs} epochs)", flush=True)
            pretrain_backbone(pretrain_data or data, backbone_path, epochs=epochs, data_name=name,
                              n_threads=threads, verbose=0)
        meta = backbone_metadata(backbone_path)
        mean, std = meta["mean"], meta["std"]
    X = ImageToTensor(mean=mean, std=std).fit_transform(data.images).astype(np.float32)
    backbone = load_backbone(backbone_path)
    return np.ascontiguousarray(X), np.asarray(data.labels, dtype=np.int64), backbone, sizes


def run(datasets, out: Path, threads: int):
    import torch
    from metaprune import IterativeFilterPruner, MetaVotePruner, PrunedModelBank, UniformPruner
    from metaprune.data.tasks import TaskSampler

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    cache.mkdir(exist_ok=True)
    cells_path = out / "cells.jsonl"
    done = set()
    if cells_path.exists():
        done = {json.loads(line)["cell"] for line in cells_path.read_text().splitlines() if line.strip()}

    def record(row):
        with open(cells_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        done.add(row["cell"])
        print(f"{row['cell']}: {row['accuracy']:.3f} ({row['fit_time_s']:.1f} s)", flush=True)

    for name in datasets:
        X, labels, backbone, sizes = dataset_setup(name, cache, threads)
        sampler = TaskSampler(labels, n_test_per_class=sizes["n_test_per_class"], random_state=19)
        tasks = sampler.sample(N_SELECTION_TASKS, n_way=5, n_train_per_class=sizes["n_train_per_class"],
                               prefix="select")

        def fit_cell(cell, estimator, task):
            if cell in done:
                return
            X_tr, y_tr, X_te, y_te = task.split(X, labels)
            start = time.perf_counter()
            estimator.fit(X_tr, y_tr)
            record({"cell": cell, "dataset": name, "task": task.task_id, "method": method, "config": config,
                    "lr": lr, "accuracy": float(estimator.score(X_te, y_te)),
                    "fit_time_s": time.perf_counter() - start, "train_flops": int(estimator.train_flops_)})

        ifp_configs = [(c, p) for c, p in IFP_CONFIGS if c in CONFIGS[name]]
        oneshot_configs = [(c, p) for c, p in ONESHOT_CONFIGS if c in CONFIGS[name]]
        for config, params in ifp_configs:
            method = "ifp"
            for lr in LRS:
                for task in tasks:
                    fit_cell(f"{name}/{config}/lr{lr:g}/{task.task_id}",
                             IterativeFilterPruner(backbone, lr=lr, n_threads=threads, random_state=0, **params),
                             task)
        for config, params in oneshot_configs:
            method = "uniform"
            for lr in LRS:
                for task in tasks:
                    fit_cell(f"{name}/uniform-{config}/lr{lr:g}/{task.task_id}",
                             UniformPruner(backbone, lr=lr, n_threads=threads, random_state=0, **params), task)
        rows = [json.loads(line) for line in cells_path.read_text().splitlines()]
        best_ifp = best_lr([r for r in rows if r["dataset"] == name and r["config"] == "ifp-J200-r0.9"])
        bank = PrunedModelBank(backbone, path=cache / f"{name}_bank_lr{best_ifp:g}.sqlite")
        bank_tasks = [t for i, target in enumerate(tasks)
                      for t in sampler.sharing(target, n_shared=2, n_tasks=3, n_train_per_class=sizes["n_train_per_class"],
                                               prefix=f"bank{i}", random_state=np.random.default_rng([19, i]))]
        print(f"[{name}] bank of {len(bank_tasks)} IFP tasks at lr={best_ifp:g}", flush=True)
        bank.build(bank_tasks, IterativeFilterPruner(lr=best_ifp, random_state=0), X, labels, n_jobs=1,
                   n_threads=threads, progress=False)
        for config, params in oneshot_configs:
            method = "mvp"
            for lr in LRS:
                for task in tasks:
                    fit_cell(f"{name}/mvp-{config}/lr{lr:g}/{task.task_id}",
                             MetaVotePruner(bank, n_neighbors=3, lr=lr, n_threads=threads, random_state=0, **params),
                             task)
        bank.close()


def best_lr(rows) -> float:
    """The learning rate with the largest mean accuracy (ties: the smaller rate)."""
    means = {}
    for r in rows:
        means.setdefault(r["lr"], []).append(r["accuracy"])
    return max(sorted(means), key=lambda lr: np.mean(means[lr]))


def report(out: Path):
    rows = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines() if line.strip()]
    columns = sorted({(r["dataset"], r["config"]) for r in rows})
    lines = ["Mean held-out accuracy of the selection tasks (5-way; chance 0.2), per learning rate; "
             "every other parameter at the estimator's default. Made by `python benchmarks/choose_defaults.py`.", ""]
    chosen = {}
    for method in ("ifp", "uniform", "mvp"):
        cols = [c for c in columns if any(r["method"] == method and (r["dataset"], r["config"]) == c for r in rows)]
        if not cols:
            continue
        lines += [f"## {method}", "",
                  "| lr | " + " | ".join(f"{d} {c}" for d, c in cols) + " | mean | worst shortfall |",
                  "|---" * (len(cols) + 3) + "|"]
        table = {}
        for lr in LRS:
            cells = []
            for d, c in cols:
                acc = [r["accuracy"] for r in rows
                       if (r["method"], r["dataset"], r["config"], r["lr"]) == (method, d, c, lr)]
                cells.append(np.mean(acc) if acc else np.nan)
            if not all(np.isnan(cells)):
                table[lr] = np.array(cells)
        best = np.nanmax(np.stack(list(table.values())), axis=0)  # per column, over the rates
        mean = {lr: float(np.nanmean(v)) for lr, v in table.items()}
        shortfall = {lr: float(np.nanmax(best - v)) for lr, v in table.items()}
        for lr, cells in table.items():
            lines.append(f"| {lr:g} | " + " | ".join("-" if np.isnan(v) else f"{v:.3f}" for v in cells)
                         + f" | **{mean[lr]:.3f}** | {shortfall[lr]:.3f} |")
        # the rate that is never far from the best one of any column (then: the best mean)
        chosen[method] = min(sorted(table), key=lambda lr: (round(shortfall[lr], 3), -mean[lr]))
        n_tasks = len({r["task"] for r in rows if r["method"] == method})
        lines += ["", f"Chosen: lr = {chosen[method]:g}, the smallest worst shortfall (accuracy below the best "
                      f"rate of a column, over all columns); mean {mean[chosen[method]]:.3f}. "
                      f"{n_tasks} selection tasks per data set, each column their mean.", ""]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    (out / "chosen.json").write_text(json.dumps(chosen, indent=1) + "\n")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "cifar100", "fashion-mnist"])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="only write the table from the cells so far")
    args = parser.parse_args(argv)
    if not args.report:
        run(args.datasets, args.out, args.threads)
    report(args.out)


if __name__ == "__main__":
    sys.exit(main())
