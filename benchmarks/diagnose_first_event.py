"""Diagnostic: are IFP's channels task-specific already at its first pruning event?

The paper's Fig. 3 says pairs of tasks sharing more classes keep more of the same channels in
the deep groups. On the committed ``cpu`` bank that holds only weakly (deep IoU 0.136 at
c = 0 to 0.183 at c = 4). IFP's first event prunes the *unpruned* pre-trained network by
each channel's mean activation on the task's images, before any training, so it shows what
the pre-trained features alone say about the task. For every bank task of the run this
computes that first-event selection exactly as IFP does (the per-image scores of the
unpruned network, averaged over the task's training images, top channels per group kept to
the schedule's first count), then the IoU between every pair of bank tasks by the number of
classes c they share, beside the same numbers for the bank's final selections and for
random subsets of the same sizes.

It writes ``<results>/diagnostics_first_event.json`` and ``.md``. It uses training images
only.

Usage::

    python benchmarks/diagnose_first_event.py --preset cpu
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reproduction import report, runner  # noqa: E402


def first_event_selections(backbone, space, tasks, X, counts: dict, units: dict, batch_size=256) -> tuple:
    """Each task's top channels by mean activation on its images, for each entry of ``counts``.

    ``counts`` maps a name to channels kept per group; with IFP's first-event counts this is
    the selection after IFP's first event. Returns ``({name: {task_id: selection dict}}, n_images)``.
    """
    from metaprune.channels.scores import channel_scores
    from metaprune.pruners.ifp import keep_top_scored

    images = np.unique(np.concatenate([t.train_index for t in tasks]))
    per_image = channel_scores(backbone, torch.from_numpy(np.ascontiguousarray(X[images])), space,
                               batch_size=batch_size, per_image=True)
    row_of = np.full(len(X), -1)
    row_of[images] = np.arange(len(images))
    out = {name: {} for name in counts}
    for t in tasks:
        rows = row_of[t.train_index]
        scores = {g.name: per_image[g.name][rows].mean(0) for g in space}
        for name, kept in counts.items():
            out[name][t.task_id] = {g.name: keep_top_scored(np.arange(g.size), scores[g.name], kept[g.name],
                                                            units[g.name]).tolist() for g in space}
    return out, len(images)


def markdown(first: dict, top: dict, final: dict, preset, n_tasks: int, n_images: int, wall_s: float, command: str) -> str:
    cs = sorted(set(first["deep_by_c"]) | set(final.get("deep_by_c", {})), key=int)

    def cell(d, c):
        e = d.get("deep_by_c", {}).get(c)
        return "" if e is None else f"{e['mean']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}] ({e['n_pairs']} pairs)"

    def chance(d):
        deep = d["deep"]
        return float(np.mean([d["chance_iou"][g] for g in deep]))

    lines = [f"# IFP's first pruning event vs its final selection (preset `{preset.name}`)", "",
             f"`{command}`: {n_tasks} bank tasks, first-event selections from the unpruned backbone's "
             f"per-image scores on {n_images} training images ({wall_s:.0f} s). Mean IoU over the deep groups "
             f"({', '.join(first['deep'])}) between pairs of bank tasks sharing c classes, 95% bootstrap interval "
             f"over pairs (pairs share tasks, so it is optimistic); identical class sets left out.", "",
             "The middle column keeps the top-scored channels at the final size in one step (no training): "
             "what the pre-trained activations alone would choose.", "",
             f"| c | IFP's first event (before training) | top activations at the final size | IFP's final "
             f"selection (bank, J = {preset.bank_iterations}) |", "|---|---|---|---|"]
    for c in cs:
        lines.append(f"| {c} | {cell(first, c)} | {cell(top, c)} | {cell(final, c)} |")
    lines.append(f"| random subsets | {chance(first):.3f} | {chance(top):.3f} | "
                 f"{chance(final) if final else float('nan'):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args, preset, results, cache = runner.diagnostic_arguments(__doc__.split("\n\n")[0], argv, shared=False)
    torch.set_num_threads(args.threads)
    from metaprune.channels.filter_space import FilterSpace
    X, y, sampler, backbones = runner.load_run(preset, cache)
    banks = runner.bank_tasks(preset, sampler, runner.test_tasks(preset, sampler))
    tasks = list({t.task_id: t for ts in banks.values() for t in ts}.values())
    lrs = runner.choose_learning_rates(preset, runner.load_rows(results))
    pruner = runner.bank_pruner(preset, lrs, "cpu")
    backbone = runner._backbone(backbones["ssl"])
    space = FilterSpace.from_model(backbone)
    schedule = pruner._schedule(space)
    counts = {"first_event": {g: int(n[0]) for g, n in schedule.items()},
              "top_final_size": {g: int(n[-1]) for g, n in schedule.items()}}
    start = time.perf_counter()
    module = pruner.set_params(backbone=backbone)._prepared_backbone()  # the network IFP's first event scores
    selections, n_images = first_event_selections(module, space, tasks, X, counts, space.units)
    wall = time.perf_counter() - start
    classes = {t.task_id: [int(c) for c in t.classes] for t in tasks}
    first, top = (report.bank_pair_overlap({"sizes": dict(space.sizes), "selections": selections[name]}, classes)
                  for name in ("first_event", "top_final_size"))
    final = report.bank_pair_overlap(report.bank_selections(results, None), classes)
    command = "python benchmarks/diagnose_first_event.py " + " ".join(argv if argv is not None else sys.argv[1:])
    runner._write_json(results / "diagnostics_first_event.json",
                       {"command": command, "counts": counts, "first_event": first, "top_final_size": top,
                        "final": final,
                        "n_images": n_images, "wall_s": wall})
    text = markdown(first, top, final, preset, len(tasks), n_images, wall, command)
    (results / "diagnostics_first_event.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
