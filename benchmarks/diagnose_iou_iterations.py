"""Diagnostic: do longer IFP runs find more class-specific channels? Deep IoU vs shared classes at J = 100, 200, 800.

The paper's Fig. 3 uses "more delicately pruned" models (J = 800) to show that tasks sharing
more classes keep more of the same deep channels. The committed ``cpu`` bank (J = 100) shows
it only weakly (0.136 at c = 0 to 0.183 at c = 4) and IFP's first event, before any training,
shows it strongly (0.648 to 0.824). This fits IFP, with the run's bank pruner (its learning
rate, r, h = 0.3 J, seed), at each J on a fixed set of tasks: the first ``--anchors`` centred
test tasks' training data and, around each, the first ``--per-c`` of the run's bank tasks for
every c. It then gives the mean deep-group IoU between every pair of those tasks by the
classes the pair shares (pairs across anchors give c = 0), beside:

- the same task pruned twice with two seeds (the anchors at seed + 1): the noise ceiling;
- the first-event selection of the same tasks (no training);
- random subsets of the same sizes.

Every fit is cached under ``<cache>/iou_iterations/`` (resumable); it writes
``<results>/diagnostics_iou_iterations.json`` and ``.md``. Training images only.

Usage::

    python benchmarks/diagnose_iou_iterations.py --preset cpu --iterations 100 200 800
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from diagnose_first_event import first_event_selections  # noqa: E402
from metaprune.analysis import iou_per_group  # noqa: E402
from metaprune.channels.selection import Selection  # noqa: E402
from metaprune.data.tasks import TaskSampler  # noqa: E402
from metaprune.paired_statistics import bootstrap_mean_ci  # noqa: E402
from reproduction import report, runner  # noqa: E402


def study_tasks(preset, sampler: TaskSampler, n_anchors: int, per_c: int) -> list:
    """The first ``n_anchors`` centred test tasks (their training images) and, around each, the
    first ``per_c`` of the run's bank tasks for every c of the preset."""
    tests = runner.test_tasks(preset, sampler)
    banks = runner.bank_tasks(preset, sampler, tests)
    anchors = runner.centred(preset, tests)[:n_anchors]
    tasks = []
    for anchor in anchors:
        tasks.append(anchor)
        for c in preset.shared:
            tasks += sorted(banks[(anchor.task_id, c)], key=lambda t: t.task_id)[:per_c]
    return tasks, anchors


def fitted_selection(preset, lrs: dict, backbone, task, X, y, n_iterations: int, seed: int, cache: Path) -> dict:
    """IFP's final selection on ``task`` at ``n_iterations`` (the bank's pruner otherwise), cached."""
    path = cache / f"J{n_iterations}" / f"{task.task_id}_seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    pruner = runner.bank_pruner(preset, lrs, "cpu").set_params(
        backbone=backbone, n_iterations=n_iterations, prune_every=runner.prune_every(preset, n_iterations),
        random_state=seed)
    X_train, y_train, _, _ = task.split(X, y)
    start = time.perf_counter()
    pruner.fit(X_train, y_train)
    out = {"selection": pruner.selection_.to_dict(), "fit_time_s": time.perf_counter() - start}
    runner._write_json(path, out)
    return out


def seed_iou(first: dict, second: dict, deep: list) -> list:
    """Mean deep-group IoU of the same tasks pruned with two seeds, one value per task."""
    out = []
    for t in first:
        iou = iou_per_group(Selection.from_dict(first[t]), Selection.from_dict(second[t]))
        out.append(float(np.mean([iou[g] for g in deep])))
    return out


def _mean_ci(values) -> dict:
    values = np.asarray(values, dtype=float)
    ci = bootstrap_mean_ci(values, n_resamples=2000, random_state=0) if len(values) >= 2 else (np.nan, np.nan)
    return {"mean": float(values.mean()), "ci": [float(ci[0]), float(ci[1])], "n": int(len(values))}


def markdown(result: dict, preset, n_tasks: int, n_anchors: int, wall_s: float, command: str) -> str:
    columns = ["first event"] + [f"J = {J}" for J in result["iterations"]]
    overlaps = [result["first_event"]] + [result["by_iterations"][str(J)]["overlap"] for J in result["iterations"]]
    cs = sorted({int(c) for o in overlaps for c in o.get("deep_by_c", {})})

    def cell(o, c):
        e = o.get("deep_by_c", {}).get(c, o.get("deep_by_c", {}).get(str(c)))
        return "" if e is None else f"{e['mean']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}] ({e['n_pairs']})"

    lines = [f"# Deep IoU vs shared classes at J = {', '.join(map(str, result['iterations']))} (preset `{preset.name}`)",
             "", f"`{command}`: {n_tasks} tasks ({n_anchors} centred test tasks' training data and their bank "
             f"tasks), IFP as the run's bank prunes (r = {preset.pruning_ratio}, h = 0.3 J, its learning rate) at "
             f"each J; {wall_s / 60:.1f} min of fitting in this invocation. Mean IoU over the deep groups "
             f"({', '.join(result['deep'])}) between pairs of tasks sharing c classes, 95% bootstrap interval over "
             f"pairs (pairs share tasks: optimistic), number of pairs in brackets.", "",
             "| c | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for c in cs:
        lines.append(f"| {c} | " + " | ".join(cell(o, c) for o in overlaps) + " |")
    seeds = [""] + [result["by_iterations"][str(J)].get("same_task_two_seeds") for J in result["iterations"]]
    lines.append("| same task, two seeds | " + " | ".join(
        "" if not s else f"{s['mean']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] ({s['n']})" for s in seeds) + " |")
    lines.append("| random subsets | " + " | ".join(
        f"{np.mean([o['chance_iou'][g] for g in o['deep']]):.3f}" for o in overlaps) + " |")
    lines += ["", "Mean IFP fit time per task (s): " + ", ".join(
        f"J = {J}: {result['by_iterations'][str(J)]['fit_time_s']:.0f}" for J in result["iterations"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args, preset, results, cache = runner.diagnostic_arguments(
        __doc__.split("\n\n")[0], argv, shared=False,
        extra=(("--iterations", dict(type=int, nargs="+", default=[100, 200, 800], help="IFP's J values")),
               ("--anchors", dict(type=int, default=3, help="centred test tasks (default 3)")),
               ("--per-c", dict(type=int, default=2, help="bank tasks per anchor and c (default 2)"))))
    torch.set_num_threads(args.threads)
    from metaprune.channels.filter_space import FilterSpace
    X, y, sampler, backbones = runner.load_run(preset, cache)
    tasks, anchors = study_tasks(preset, sampler, args.anchors, args.per_c)
    lrs = runner.choose_learning_rates(preset, runner.load_rows(results))
    backbone = runner._backbone(backbones["ssl"])
    space = FilterSpace.from_model(backbone)
    classes = {t.task_id: [int(c) for c in t.classes] for t in tasks}
    sizes = dict(space.sizes)

    pruner = runner.bank_pruner(preset, lrs, "cpu")
    schedule = pruner._schedule(space)
    first, _ = first_event_selections(pruner.set_params(backbone=backbone)._prepared_backbone(), space, tasks, X,
                                      {"first": {g: int(n[0]) for g, n in schedule.items()}}, space.units)
    result = {"iterations": list(args.iterations), "tasks": [t.task_id for t in tasks],
              "anchors": [t.task_id for t in anchors],
              "first_event": report.bank_pair_overlap({"sizes": sizes, "selections": first["first"]}, classes),
              "by_iterations": {}}
    result["deep"] = result["first_event"]["deep"]
    start = time.perf_counter()
    fits_dir = cache / "iou_iterations"
    for J in args.iterations:
        fits = {t.task_id: fitted_selection(preset, lrs, backbone, t, X, y, J, preset.seed, fits_dir) for t in tasks}
        repeats = {t.task_id: fitted_selection(preset, lrs, backbone, t, X, y, J, preset.seed + 1, fits_dir)
                   for t in anchors}
        print(f"J = {J}: {len(fits)} + {len(repeats)} fits ready ({time.perf_counter() - start:.0f} s)", flush=True)
        selections = {t: f["selection"] for t, f in fits.items()}
        result["by_iterations"][str(J)] = {
            "overlap": report.bank_pair_overlap({"sizes": sizes, "selections": selections}, classes),
            "same_task_two_seeds": _mean_ci(seed_iou({t: selections[t] for t in repeats},
                                                     {t: f["selection"] for t, f in repeats.items()},
                                                     result["deep"])),
            "fit_time_s": float(np.mean([f["fit_time_s"] for f in fits.values()]))}
    wall = time.perf_counter() - start
    command = "python benchmarks/diagnose_iou_iterations.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result.update(command=command, wall_s=wall)
    runner._write_json(results / "diagnostics_iou_iterations.json", result)
    text = markdown(result, preset, len(tasks), len(anchors), wall, command)
    (results / "diagnostics_iou_iterations.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
