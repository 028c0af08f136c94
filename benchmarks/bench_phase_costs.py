"""Where one IFP fit's time goes, phase by phase, and the most any many-task scheme can gain (issue 14).

One real CIFAR-100 5-way IFP fit (the shipped width-16 SimCLR backbone, 2,000 training
images, r = 0.9, h = 0.3 J, batch 128, one torch thread) is split into what it spends:

- the **shareable** passes, which depend only on the images (the pre-trained penultimate
  features for the head and the first event's channel scores on the unpruned network):
  :func:`metaprune.fit_many` computes these once per image;
- the **training steps** of each pruning phase, at that phase's channel counts (from the
  estimator's own schedule), timed alone and per task inside a grouped stack of K networks
  (:func:`metaprune.channels.stacking.stack_networks`, the stacked engine's network);
- the later events' scoring passes on the pruned network, which no other task can reuse.

From these it prints a bound: even if the shareable passes cost nothing and every phase
after the first cost nothing, a fit still pays the first phase's steps at the cheaper of
alone and stacked; the fit's wall time divided by that is the most a many-task scheme can
speed it up. Results: ``benchmarks/results/phase_costs.{json,md}``.

    python benchmarks/bench_phase_costs.py --iterations 100 200
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cifar import cifar100_images, shipped_backbone  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "phase_costs"


def _median_step_time(module, X, y, n_stacked=1, repeats=12, warmup=3):
    """Median seconds of one SGD step (forward, backward, momentum update) of ``module``."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    module.train()
    times = []
    for _ in range(warmup + repeats):
        start = time.perf_counter()
        optimizer.zero_grad()
        out = module(X)
        loss = loss_fn(out.reshape(-1, out.shape[-1]), y.repeat(n_stacked))
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[warmup:]))


def measure(J, n_stacked, X_task, y_task, rng):
    from metaprune import IterativeFilterPruner
    from metaprune.backbone.penultimate import penultimate_features
    from metaprune.channels.filter_space import FilterSpace, head_name
    from metaprune.channels.scores import channel_scores
    from metaprune.channels.selection import Selection
    from metaprune.channels.stacking import stack_networks
    from metaprune.channels.surgery import extract
    from metaprune.pruners.schedule import pruning_iterations

    backbone = shipped_backbone()
    pruner = IterativeFilterPruner(backbone, n_iterations=J, lr=3e-2, n_threads=1, random_state=0)
    pruner.fit(X_task[::10], y_task[::10])  # warm the allocator and the kernels
    fits = []
    for _ in range(2):
        start = time.perf_counter()
        pruner.fit(X_task, y_task)
        fits.append(time.perf_counter() - start)
    fit_s = float(np.median(fits))
    n_steps = len(pruner.history_)
    events = pruning_iterations(J, pruner._prune_every())

    module = pruner._prepared_backbone()
    module.set_submodule(head_name(module), nn.Linear(module.get_submodule(head_name(module)).in_features, 5))
    space = FilterSpace.from_model(module)
    X = torch.from_numpy(X_task)
    start = time.perf_counter()
    penultimate_features(module, X_task)
    channel_scores(module, X, space, batch_size=pruner.score_batch_size)
    shared_s = time.perf_counter() - start

    schedule = pruner._schedule(space)
    batch = X[:pruner.batch_size].contiguous()
    labels = torch.as_tensor(y_task[:pruner.batch_size]) % 5
    stacked_batch = batch.repeat(1, n_stacked, 1, 1).contiguous()
    phases = []
    for e, at in enumerate(events):
        ends = events[e + 1] if e + 1 < len(events) else n_steps
        counts = {g: int(schedule[g][e]) for g in space.names}

        def random_net():
            chosen = {g.name: np.sort(rng.choice(g.size, counts[g.name], replace=False)) for g in space}
            return extract(module, Selection(chosen, space), space)

        alone = _median_step_time(random_net(), batch, labels)
        stacked = _median_step_time(stack_networks([random_net() for _ in range(n_stacked)]), stacked_batch,
                                    labels, n_stacked) / n_stacked
        scoring = 0.0
        if e > 0:
            net = random_net()
            start = time.perf_counter()
            channel_scores(net, X, space, batch_size=pruner.score_batch_size)
            scoring = time.perf_counter() - start
        fraction = float(np.mean([counts[g.name] / g.size for g in space]))
        phases.append({"from": int(at), "to": int(ends), "steps": int(ends - at), "channel_fraction": fraction,
                       "step_alone_s": alone, "step_stacked_per_task_s": stacked, "event_scoring_s": scoring})
    first = phases[0]
    floor_s = first["steps"] * min(first["step_alone_s"], first["step_stacked_per_task_s"])
    return {"J": J, "n_stacked": n_stacked, "fit_s": fit_s, "n_steps": n_steps, "shared_s": shared_s,
            "phases": phases, "first_phase_floor_s": floor_s, "max_speedup": fit_s / floor_s}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--stack", type=int, default=4)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from metaprune.data.tasks import TaskSampler

    X, labels = cifar100_images()
    task = TaskSampler(labels, n_test_per_class=100, random_state=14).sample(1, n_way=5, n_train_per_class=400)[0]
    X_task, y_task = np.ascontiguousarray(X[task.train_index]), labels[task.train_index]
    rng = np.random.default_rng(0)
    rows = []
    for J in args.iterations:
        row = measure(J, args.stack, X_task, y_task, rng)
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"command": "python benchmarks/bench_phase_costs.py " + " ".join(argv or sys.argv[1:]),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.processor() or platform.machine(), "threads": 1}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"Phase costs of one IFP fit: real CIFAR-100 5-way task, 2,000 training images, width-16 SimCLR "
             f"backbone, r = 0.9, h = 0.3 J, batch 128, one torch thread; torch {meta['torch']} "
             f"({meta['cpu_capability']}). `{meta['command']}`", ""]
    for row in rows:
        lines += [f"## J = {row['J']}: fit {row['fit_s']:.1f} s ({row['n_steps']} steps incl. the fine-tuning "
                  f"epoch); shareable passes {row['shared_s']:.1f} s", "",
                  f"| iterations | channels kept (mean over groups) | step alone (ms) | step per task in a stack of "
                  f"{row['n_stacked']} (ms) | phase alone (s) | event scoring (s) |",
                  "|---|---|---|---|---|---|"]
        for p in row["phases"]:
            lines.append(f"| {p['from']}-{p['to'] - 1} | {p['channel_fraction']:.3f} | {1e3 * p['step_alone_s']:.1f} | "
                         f"{1e3 * p['step_stacked_per_task_s']:.1f} | {p['steps'] * p['step_alone_s']:.1f} | "
                         f"{p['event_scoring_s']:.2f} |")
        lines += ["", f"Bound: with the shareable passes and every later phase free, a fit still spends "
                  f"{row['first_phase_floor_s']:.1f} s in its first phase, so no many-task scheme built from "
                  f"these steps can speed a fit up more than **{row['max_speedup']:.2f}x**.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
