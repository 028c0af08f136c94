"""Diagnostic: how much of an IFP selection is the task, and how much the seed?

Fits the bank's own pruner (the preset's IFP, J = ``bank_iterations``) on ``--tasks`` bank
tasks of a reproduction with ``--seeds`` random states each, and measures per group the IoU
between two seeds' selections of the same task. Set beside the IoU between *different*
bank tasks sharing c classes (``results.json``, ``study.bank_pairs``) and the IoU of two
random subsets, it tells whether the bank's selections carry a task signal that voting
could use. Writes ``<results>/diagnostics_seed_noise.json`` and ``.md``.

Usage::

    python benchmarks/diagnose_selection_noise.py --preset cpu
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from metaprune.meta.voting import iou_per_group  # noqa: E402
from metaprune.paired_statistics import bootstrap_mean_ci  # noqa: E402
from reproduction import runner  # noqa: E402
from reproduction.presets import get_preset  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--tasks", type=int, default=8, help="bank tasks (the first of each test task's c = 1 set)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    results = args.results or HERE / "results" / f"reproduce_{preset.name}"
    cache = HERE.parent / "runs" / f"reproduce_{preset.name}"
    X, y, sampler, backbones = runner.load_run(preset, cache)
    tests = runner.test_tasks(preset, sampler)
    banks = runner.bank_tasks(preset, sampler, tests)
    tasks = [banks[(t.task_id, min(preset.shared))][0] for t in runner.centred(preset, tests)][: args.tasks]
    lrs = runner.choose_learning_rates(preset, runner.load_rows(results))
    backbone = runner._backbone(backbones["ssl"])
    start = time.perf_counter()
    per_task = {}
    for task in tasks:
        X_train, y_train, _, _ = task.split(X, y)
        selections = []
        for seed in range(args.seeds):
            pruner = runner.bank_pruner(preset, lrs, "cpu").set_params(backbone=backbone, random_state=seed,
                                                                        n_threads=args.threads)
            selections.append(pruner.fit(X_train, y_train).selection_)
        pairs = [iou_per_group(a, b) for a, b in itertools.combinations(selections, 2)]
        per_task[task.task_id] = {g: float(np.mean([p[g] for p in pairs])) for g in pairs[0]}
        print(task.task_id, {g: round(v, 3) for g, v in per_task[task.task_id].items()}, flush=True)
    wall = time.perf_counter() - start
    groups = list(next(iter(per_task.values())))
    deep = [g for g in groups if g.startswith(("layer3", "layer4"))]
    deep_per_task = [float(np.mean([v[g] for g in deep])) for v in per_task.values()]
    summary = {"per_group": {g: float(np.mean([v[g] for v in per_task.values()])) for g in groups},
               "deep_mean": float(np.mean(deep_per_task)),
               "deep_ci": list(bootstrap_mean_ci(deep_per_task, random_state=0)) if len(deep_per_task) > 1 else None}
    study = json.loads((results / "results.json").read_text()).get("study", {}).get("bank_pairs", {})
    out = {"tasks": list(per_task), "seeds": args.seeds, "per_task": per_task, "summary": summary, "wall_s": wall,
           "bank_pairs": study.get("deep_by_c"), "chance_iou": study.get("chance_iou")}
    runner._write_json(results / "diagnostics_seed_noise.json", out)
    lines = [f"# Seed noise of IFP selections (preset `{preset.name}`)", "",
             f"`python benchmarks/diagnose_selection_noise.py --preset {preset.name}`: {len(tasks)} bank tasks, "
             f"{args.seeds} seeds each, the bank's pruner (IFP J = {preset.bank_iterations}, r = "
             f"{preset.pruning_ratio}); {wall / 60:.1f} min on {args.threads} thread(s).", "",
             "| group | same task, two seeds | two random subsets |", "|---|---|---|"]
    chance = study.get("chance_iou") or {}
    lines += [f"| {g} | {summary['per_group'][g]:.3f} | {chance.get(g, float('nan')):.3f} |" for g in groups]
    ci = summary["deep_ci"]
    lines += ["", f"Deep groups ({', '.join(deep)}): same task, two seeds {summary['deep_mean']:.3f}"
              + (f" [95% CI over tasks {ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + "."]
    if study.get("deep_by_c"):
        lines.append("Different bank tasks, same seed, by shared classes c: " + ", ".join(
            f"c={c} {v['mean']:.3f}" for c, v in sorted(study["deep_by_c"].items(), key=lambda kv: int(kv[0]))) + ".")
    (results / "diagnostics_seed_noise.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
