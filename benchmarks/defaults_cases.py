"""The new user's cases of issue 19, with every hyperparameter at its default, old and new.

On real CIFAR-100 5-way tasks (the shipped SimCLR width-16 backbone, 200 training images per
class, 100 held-out images per class; tasks other than the ones the defaults were chosen on):

1. ``IterativeFilterPruner(backbone=bb, n_iterations=60, prune_every=20)`` at r = 0.5 and 0.9;
2. a bank of 4 such IFP tasks sharing two classes with the new task, then
   ``MetaVotePruner(bank, n_neighbors=3)`` vs ``UniformPruner(bb)``;

each with the defaults of this version and with the paper's values (the previous defaults,
:func:`metaprune.paper_parameters` learning rates). Writes ``benchmarks/results/defaults/cases.md``.

    python benchmarks/defaults_cases.py --n-tasks 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "defaults"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-tasks", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from _cifar import cifar100_images, shipped_backbone
    from metaprune import IterativeFilterPruner, MetaVotePruner, PrunedModelBank, UniformPruner, paper_parameters
    from metaprune.data.tasks import TaskSampler

    torch.set_num_threads(1)
    X, y = cifar100_images()
    bb = shipped_backbone()
    sampler = TaskSampler(y, n_test_per_class=100, random_state=190)  # not the selection tasks' seed (19)
    targets = sampler.sample(args.n_tasks, n_way=5, n_train_per_class=200, prefix="case")
    lrs = {"new defaults": {}, "paper (old defaults)": None}
    rows = []
    for label in lrs:
        def lr(cls):
            return {} if label == "new defaults" else {"lr": paper_parameters(cls)["lr"]}

        for i, task in enumerate(targets):
            Xtr, ytr, Xte, yte = task.split(X, y)
            row = {"defaults": label, "task": task.task_id}
            for ratio in (0.5, 0.9):
                ifp = IterativeFilterPruner(backbone=bb, n_iterations=60, prune_every=20, pruning_ratio=ratio,
                                            n_threads=1, random_state=0, **lr(IterativeFilterPruner)).fit(Xtr, ytr)
                row[f"ifp r={ratio}"] = float(ifp.score(Xte, yte))
            with tempfile.TemporaryDirectory() as folder:
                bank = PrunedModelBank(bb, path=Path(folder) / "bank.sqlite")
                neighbours = sampler.sharing(task, n_shared=2, n_tasks=4, n_train_per_class=200, prefix=f"nb{i}",
                                             random_state=np.random.default_rng([190, i]))
                bank.build(neighbours, IterativeFilterPruner(n_iterations=60, prune_every=20, n_threads=1,
                                                             random_state=0, **lr(IterativeFilterPruner)),
                           X, y, progress=False)
                mvp = MetaVotePruner(bank, n_neighbors=3, n_threads=1, random_state=0,
                                     **lr(MetaVotePruner)).fit(Xtr, ytr)
                row["mvp"] = float(mvp.score(Xte, yte))
                bank.close()
            uniform = UniformPruner(bb, n_threads=1, random_state=0, **lr(UniformPruner)).fit(Xtr, ytr)
            row["uniform"] = float(uniform.score(Xte, yte))
            rows.append(row)
            print(json.dumps(row), flush=True)
    columns = ["ifp r=0.5", "ifp r=0.9", "mvp", "uniform"]
    lines = [f"Held-out accuracy (5-way, chance 0.2) of {args.n_tasks} CIFAR-100 tasks, mean (min-max); "
             f"`python benchmarks/defaults_cases.py --n-tasks {args.n_tasks}`. IFP: n_iterations=60, "
             f"prune_every=20; MVP: n_neighbors=3 with a bank of 4 IFP tasks (same settings) sharing two "
             f"classes with the task; everything else at its default.", "",
             "| defaults | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label in lrs:
        sel = [r for r in rows if r["defaults"] == label]
        cells = [f"{np.mean([r[c] for r in sel]):.3f} ({min(r[c] for r in sel):.2f}-{max(r[c] for r in sel):.2f})"
                 for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cases.md").write_text("\n".join(lines) + "\n")
    (OUT / "cases.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
