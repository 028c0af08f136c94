"""One IFP task through Torch-Pruning's DependencyGraph vs metaprune's own surgery (issue 14).

The same ``IterativeFilterPruner`` fit (same schedule, channel scores, SGD steps and seed)
is run twice on one real CIFAR-100 5-way task with the shipped width-16 SimCLR backbone:
once with metaprune's channel surgery (:func:`metaprune.channels.surgery.shrink_`), once with
each pruning event carried out by Torch-Pruning (``torch-pruning`` on PyPI, a benchmark-only
dependency): for every channel group, the channels to drop are pruned from one convolution
that writes the group, and the DependencyGraph prunes every coupled layer (the residual
stream's other convolutions and BatchNorms, the next layers' inputs, the head). Both runs
are timed side by side, alternating, and the losses and held-out accuracy compared.
Results: ``benchmarks/results/torch_pruning.json`` and ``.md``.

    pip install torch-pruning && python benchmarks/bench_torch_pruning.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"


def torch_pruning_shrink(example_shape):
    """A drop-in for ``shrink_`` whose cuts are made by Torch-Pruning's DependencyGraph."""
    import torch
    import torch_pruning as tp
    from torch import nn

    def shrink(model, space, current, target):
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *example_shape))
        kept = target.positions_in(current)
        for group in space.names:
            drop = sorted(set(range(len(current[group]))) - set(int(i) for i in kept[group]))
            if not drop:
                continue
            root = next(model.get_submodule(name) for name, (out_group, _) in space.module_axes.items()
                        if out_group == group and isinstance(model.get_submodule(name), nn.Conv2d))
            graph.get_pruning_group(root, tp.prune_conv_out_channels, idxs=drop).prune()
        return model

    return shrink


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args(argv)

    import torch
    import torch_pruning as tp

    import metaprune.pruners.ifp as ifp_module
    from _cifar import cifar100_images, shipped_backbone
    from metaprune import IterativeFilterPruner
    from metaprune.data.tasks import TaskSampler

    torch.set_num_threads(1)
    X, labels = cifar100_images()
    backbone = shipped_backbone()
    task = TaskSampler(labels, n_test_per_class=100, random_state=14).sample(1, n_way=5)[0]
    Xtr, ytr, Xte, yte = task.split(X, labels)
    ours = ifp_module.shrink_
    theirs = torch_pruning_shrink(Xtr.shape[1:])
    runs = {"metaprune": [], "torch-pruning": []}
    for _ in range(args.repeats):
        for name, shrink in (("metaprune", ours), ("torch-pruning", theirs)):
            spent = [0.0]

            def timed(*a, shrink=shrink, spent=spent):
                t = time.perf_counter()
                out = shrink(*a)
                spent[0] += time.perf_counter() - t
                return out

            ifp_module.shrink_ = timed
            try:
                start = time.perf_counter()
                est = IterativeFilterPruner(backbone, n_iterations=args.iterations, n_threads=1, random_state=0).fit(Xtr, ytr)
                wall = time.perf_counter() - start
            finally:
                ifp_module.shrink_ = ours
            runs[name].append({"wall_s": wall, "surgery_s": spent[0], "accuracy": float(est.score(Xte, yte)), "n_params": est.n_params_,
                               "losses": [r["loss"] for r in est.history_]})
    a, b = runs["metaprune"][0], runs["torch-pruning"][0]
    result = {"torch_pruning": tp.__version__, "torch": torch.__version__, "task": task.task_id,
              "n_train": int(len(Xtr)), "n_iterations": args.iterations,
              "max_abs_loss_difference": float(np.max(np.abs(np.subtract(a["losses"], b["losses"])))),
              "runs": {k: [{kk: vv for kk, vv in r.items() if kk != "losses"} for r in v] for k, v in runs.items()}}
    wall = {k: float(np.median([r["wall_s"] for r in v])) for k, v in runs.items()}
    surgery = {k: float(np.median([r["surgery_s"] for r in v])) for k, v in runs.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "torch_pruning.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"One IFP fit (J = {args.iterations}, r = 0.9, lr 3e-2, seed 0) of CIFAR-100 task {task.task_id} "
             f"({len(Xtr)} training images, shipped width-16 SimCLR backbone), one torch thread, the two surgeries "
             f"alternating, {args.repeats} runs each; Torch-Pruning {tp.__version__}, torch {torch.__version__}. "
             f"`python benchmarks/bench_torch_pruning.py --repeats {args.repeats}`", "",
             "| surgery | median wall (s) | of it in the pruning events' surgery (s) | held-out accuracy | parameters |",
             "|---|---|---|---|---|"]
    for k, v in runs.items():
        lines.append(f"| {k} | {wall[k]:.1f} | {surgery[k]:.3f} | {v[0]['accuracy']:.3f} | {v[0]['n_params']} |")
    lines += ["", f"Time ratio Torch-Pruning / metaprune: {wall['torch-pruning'] / wall['metaprune']:.2f} for the "
                  f"whole fit, {surgery['torch-pruning'] / surgery['metaprune']:.1f} for the surgery alone. "
                  f"Largest difference between the two runs' per-iteration losses: "
                  f"{result['max_abs_loss_difference']:.2e}."]
    (OUT / "torch_pruning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
