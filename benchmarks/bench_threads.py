"""Where speed collapses on a busy machine: each phase with 1 and 2 torch threads, quiet and loaded.

Phases, on the shipped width-16 SimCLR backbone and 32x32 images (random pixels: speed does
not depend on the values):

- ``features``: eval-mode penultimate features of the full network, 512 images, batches of 256
  (head training, prototypes, first-event channel scores);
- ``pruned_steps``: 20 SGD steps (batch 128) of the network physically pruned to r = 0.9;
- ``full_steps``: 3 SGD steps (batch 128) of the full network (IFP's first iterations, mask mode);
- ``pretrain_steps``: 2 SimCLR-sized steps (2 views x 128 images) of the full network;
- ``head``: L-BFGS head on 1,000 frozen 128-d features, 5 classes.

"loaded" runs one competing CPU-bound process (a Python busy loop) for the whole phase, so
one of the two cores is gone: 2x slower is the floor. Every phase is timed 3 times and the
minimum kept. Then whole fits (IFP and MVP at r = 0.9, 60 iterations on 500 images; one
SimCLR pre-training epoch) before and after ``n_threads="auto"``, quiet and loaded.
Results: ``benchmarks/results/threads.json`` and ``.md``.

Usage::

    python benchmarks/bench_threads.py [--out benchmarks/results/threads]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import metaprune
from metaprune.backbone.penultimate import penultimate_features
from metaprune.channels.filter_space import FilterSpace
from metaprune.pruners.linear_head import fit_linear_head
from metaprune.backbone.resnet import load_backbone
from metaprune.channels.selection import Selection
from metaprune.channels.surgery import extract

RESULTS = Path(__file__).resolve().parent / "results"
CHECKPOINT = Path(metaprune.__file__).resolve().parent / "checkpoints" / "cifar100_resnet18_w16_simclr.safetensors"


def _sgd_steps(module, n_steps, batch):
    rng = torch.Generator().manual_seed(0)
    X = torch.randn(batch, 3, 32, 32, generator=rng)
    y = torch.randint(0, 5, (batch,), generator=rng)
    opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
    module.train()
    for _ in range(n_steps):
        opt.zero_grad()
        nn.functional.cross_entropy(module(X), y).backward()
        opt.step()


def phases(backbone):
    space = FilterSpace.from_model(backbone)
    rng = np.random.default_rng(0)
    pruned = extract(backbone, Selection({g.name: rng.choice(g.size, n, replace=False)
                                          for g, n in zip(space, space.n_keep(0.9).values())}, space), space)
    pruned.fc = nn.Linear(pruned.fc.in_features, 5)
    full = extract(backbone, Selection.full(space), space)
    full.fc = nn.Linear(full.fc.in_features, 5)
    images = np.random.default_rng(0).standard_normal((512, 3, 32, 32)).astype(np.float32)
    features = np.random.default_rng(0).standard_normal((1000, 128)).astype(np.float32)
    labels = np.arange(1000) % 5
    return {
        "features": lambda: penultimate_features(backbone, images, batch_size=256),
        "pruned_steps": lambda: _sgd_steps(pruned, 20, 128),
        "full_steps": lambda: _sgd_steps(full, 3, 128),
        "pretrain_steps": lambda: _sgd_steps(full, 2, 256),
        "head": lambda: fit_linear_head(features, labels, 5, l2=1e-3, max_epochs=10, device="cpu"),
    }


def fits(backbone):
    """Whole fits with ``n_threads`` None (torch's default pool: the behaviour before "auto") or "auto"."""
    from metaprune import IterativeFilterPruner, MetaVotePruner, PrunedModelBank
    from metaprune.backbone.pretrain import SimSiamPretrainer
    from metaprune.data.tasks import Task

    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 3, 32, 32)).astype(np.float32)
    y = np.arange(500) % 5
    common = dict(pruning_ratio=0.9, batch_size=128, lr=1e-2, random_state=0)
    torch.set_num_threads(os.cpu_count())
    bank = PrunedModelBank(backbone).build(
        [Task(f"t{i}", (0, 1, 2, 3, 4), np.arange(i, 500, 2), []) for i in range(2)],
        IterativeFilterPruner(n_iterations=20, prune_every=10, **common), X, y, progress=False)

    def run(make):
        return lambda n_threads: make(n_threads).fit(X, y)

    return {
        "IFP fit (60 it)": run(lambda t: IterativeFilterPruner(backbone, n_iterations=60, prune_every=20,
                                                               finetune_epochs=0, n_threads=t, **common)),
        "MVP fit (60 it)": run(lambda t: MetaVotePruner(bank, n_neighbors=2, n_iterations=60, n_threads=t,
                                                        **{k: v for k, v in common.items() if k != "pruning_ratio"})),
        "pre-training epoch": lambda t: SimSiamPretrainer(
            backbone=backbone, method="simclr", epochs=1, batch_size=128, verbose=0, random_state=0,
            n_threads=t).fit(X),
    }


def timed(fn, repeats=3):
    fn()  # warm-up (allocator, oneDNN primitive caches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(RESULTS / "threads"))
    args = parser.parse_args(argv)
    backbone = load_backbone(CHECKPOINT)
    work = phases(backbone)
    rows = []
    for loaded in (False, True):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
        try:
            time.sleep(0.5 if loaded else 0)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                for name, fn in work.items():
                    seconds = timed(fn)
                    rows.append({"phase": name, "threads": threads, "loaded": loaded, "seconds": round(seconds, 4)})
                    print(f"{name:15s} threads={threads} loaded={loaded!s:5s} {seconds:8.3f} s", flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    fit_rows = []
    for loaded in (False, True):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
        try:
            time.sleep(0.5 if loaded else 0)
            for name, fit in fits(backbone).items():
                for setting in (None, "auto"):
                    torch.set_num_threads(os.cpu_count())  # torch's default: one thread per core
                    seconds = timed(lambda: fit(setting), repeats=2)
                    fit_rows.append({"fit": name, "n_threads": str(setting), "loaded": loaded,
                                     "seconds": round(seconds, 3)})
                    print(f"{name:20s} n_threads={setting!s:5s} loaded={loaded!s:5s} {seconds:8.3f} s", flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    t = {(r["phase"], r["threads"], r["loaded"]): r["seconds"] for r in rows}
    lines = ["# Threads and load, per phase", "",
             f"`python benchmarks/bench_threads.py` on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
             f"torch {torch.__version__}; seconds, minimum of 3. *loaded*: one competing busy process.", "",
             "| phase | 1 thread quiet | 2 threads quiet | 1 thread loaded | 2 threads loaded | 2T loaded / 2T quiet | "
             "1T loaded / 1T quiet |", "|---|---|---|---|---|---|---|"]
    for name in work:
        q1, q2, l1, l2 = (t[(name, n, b)] for b in (False, True) for n in (1, 2))
        lines.append(f"| {name} | {q1:.3f} | {q2:.3f} | {l1:.3f} | {l2:.3f} | {l2 / q2:.1f}x | {l1 / q1:.1f}x |")
    f = {(r["fit"], r["n_threads"], r["loaded"]): r["seconds"] for r in fit_rows}
    lines += ["", "Whole fits, before (`n_threads=None`: torch's pool of one thread per core) and after "
              "(`n_threads=\"auto\"`); seconds, minimum of 2.", "",
              "| fit | before quiet | before loaded | after quiet | after loaded | before loaded/quiet | "
              "after loaded / after quiet | after quiet / before quiet |", "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["fit"] for r in fit_rows):
        bq, bl, aq, al = (f[(name, s, b)] for s in ("None", "auto") for b in (False, True))
        lines.append(f"| {name} | {bq:.2f} | {bl:.2f} | {aq:.2f} | {al:.2f} | {bl / bq:.2f}x | {al / aq:.2f}x | "
                     f"{aq / bq:.2f} |")
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"torch": torch.__version__, "cores": os.cpu_count(), "rows": rows,
                                                    "fits": fit_rows}, indent=1))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
