"""Diagnostic for a finished reproduction: where does MVP's head start over Uniform come from?

For every Group I test task and shared-class count c, fits four one-shot starting points with
``n_iterations=0`` (sub-network + new head + BatchNorm recalibration only), with the run's own
settings and seeds:

- Uniform: random channels, pre-trained weights (the baseline);
- MVP: voted channels, weights averaged over the neighbours (the method);
- voted channels, pre-trained weights (``init_weights="pretrained"``);
- random channels, averaged weights where a neighbour kept them (``init_channels="uniform"``).

It writes ``<results>/diagnostics_init.json`` (every fit) and ``diagnostics_init.md``: the
accuracies, and MVP's advantage over Uniform split both ways into what the chosen channels
and what the averaged weights add, each a paired per-task difference with its 95% bootstrap
interval and sign test. It reads held-out accuracy of test tasks but chooses nothing: it
explains the run's numbers.

Usage::

    python benchmarks/diagnose_init.py --preset cpu
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from metaprune.paired_statistics import compare_paired  # noqa: E402
from reproduction import runner  # noqa: E402

# (label, init_channels, init_weights) of the MVP fits; Uniform is the fourth starting point
ABLATIONS = [("mvp", "voted", "averaged"), ("voted_pretrained", "voted", "pretrained"),
             ("uniform_averaged", "uniform", "averaged")]
LABELS = {"uniform": "Uniform: random channels, pre-trained weights",
          "mvp": "MVP: voted channels, averaged weights",
          "voted_pretrained": "voted channels, pre-trained weights",
          "uniform_averaged": "random channels, averaged weights"}
# each effect is a paired difference (a, b): what changes from b to a
EFFECTS = [("MVP - Uniform (total)", "mvp", "uniform"),
           ("channels, with pre-trained weights", "voted_pretrained", "uniform"),
           ("weights, on voted channels", "mvp", "voted_pretrained"),
           ("weights, on random channels", "uniform_averaged", "uniform"),
           ("channels, with averaged weights", "mvp", "uniform_averaged")]


def diagnostic_cells(cells, n_neighbors: int) -> list:
    """The 0-iteration cells: Uniform once per task, the three MVP starting points per (task, c)."""
    out = []
    for c in cells:
        if not c["id"].startswith("I/"):
            continue
        if c["method"] == "uniform":
            out.append(dict(c, id=c["id"] + "/init", iterations=0, start="uniform"))
        elif c["method"] == "mvp" and c["n_neighbors"] == n_neighbors:
            for label, channels, weights in ABLATIONS:
                out.append(dict(c, id=f"{c['id']}/init/{label}", iterations=0, start=label, init_channels=channels,
                                init_weights=weights))
    return out


def decomposition(rows: list, shared) -> dict:
    """Per c: mean accuracy of each starting point and the paired effects."""
    out = {}
    for c in shared:
        acc = {"uniform": {r["task"]: r["accuracy"] for r in rows if r["start"] == "uniform"}}
        for label, _, _ in ABLATIONS:
            acc[label] = {r["task"]: r["accuracy"] for r in rows if r["start"] == label and r["shared"] == c}
        if min(len(v) for v in acc.values()) < 2:
            continue
        out[c] = {"accuracy": {k: float(np.mean(list(v.values()))) for k, v in acc.items()},
                  "effects": {name: compare_paired(acc[a], acc[b], random_state=0).to_dict()
                              for name, a, b in EFFECTS}}
    return out


def markdown(result: dict, preset, n_tasks: int, wall_s: float) -> str:
    shared = sorted(result, key=int)
    lines = [f"# Where MVP's start comes from (preset `{preset.name}`, 0 iterations)", "",
             f"`python benchmarks/diagnose_init.py --preset {preset.name}`: {n_tasks} Group I test tasks, every "
             f"starting point fitted with `n_iterations=0` (new head on frozen features, BatchNorm recalibrated), "
             f"N = {max(preset.neighbors)} neighbours, r = {preset.pruning_ratio}; {wall_s / 60:.1f} min.", "",
             "## Held-out accuracy at 0 iterations", "",
             "| starting point | " + " | ".join(f"c = {c}" for c in shared) + " |",
             "|---|" + "---|" * len(shared)]
    for key, label in LABELS.items():
        lines.append(f"| {label} | " + " | ".join(f"{result[c]['accuracy'][key]:.3f}" for c in shared) + " |")
    lines += ["", "## The advantage split two ways", "",
              "Paired per-task differences: mean [95% bootstrap interval], wins/ties/losses, exact sign test p.", "",
              "| effect | " + " | ".join(f"c = {c}" for c in shared) + " |", "|---|" + "---|" * len(shared)]
    for name, _, _ in EFFECTS:
        cells = [runner.format_paired(result[c]["effects"][name]) for c in shared]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args, preset, results, cache = runner.diagnostic_arguments(__doc__.split("\n\n")[0], argv, shared=True)
    shared = args.shared
    X, y, _, backbones = runner.load_run(preset, cache)
    run_cells = runner.rebuilt_evaluation_cells(preset, X, y, results, cache, backbones, shared)
    cells = [c for c in diagnostic_cells(run_cells, max(preset.neighbors))
             if c["start"] == "uniform" or c["shared"] in shared]
    rows, wall = runner.run_diagnostic_cells(cells, preset, X, y, backbones, cache, args.threads,
                                             ("id", "task", "start", "shared", "accuracy", "init_channels",
                                              "init_weights"))
    result = decomposition(rows, shared)
    runner._write_json(results / "diagnostics_init.json", {"rows": rows, "decomposition": result, "wall_s": wall})
    text = markdown(result, preset, len({r["task"] for r in rows}), wall)
    (results / "diagnostics_init.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
