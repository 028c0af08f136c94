"""Beyond the paper: does MVP gain from starting its head at the neighbours' heads?

MVP transfers the neighbours' convolution weights but trains the new task's head from zero.
The neighbours also hold heads for the classes they share with the new task.
``MetaVotePruner(init_head="neighbors")`` maps those rows into the new task's channels
(:func:`metaprune.meta.voting.average_head`), starts the head there and centres its penalty
there. For every Group I and Group II test task of a finished reproduction and each shared-class
count c, with the run's own neighbours, learning rate and seeds, this fits MVP (N = the
preset's largest) three ways at 0, 10 and 100 fine-tuning iterations:

- ``trained``: the method, a head trained from zero on the sub-network's frozen features;
- ``neighbors``: the head trained from the neighbours' heads, penalty centred there;
- ``as is``: the neighbours' head itself (``head_epochs=0``), classes no neighbour has at zero.

It writes ``<results>/diagnostics_heads.json`` (every fit) and ``diagnostics_heads.md``: mean
held-out accuracy, and each variant against ``trained`` as paired per-task differences with
95% bootstrap intervals and sign tests. It reads held-out accuracy of test tasks but chooses
nothing.

Usage::

    python benchmarks/diagnose_heads.py --preset cpu --shared 3 4
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from metaprune.paired_statistics import compare_paired  # noqa: E402
from reproduction import runner  # noqa: E402

# (label, init_head, head_epochs or None for the preset's)
HEADS = [("trained", "trained", None), ("neighbors", "neighbors", None), ("as is", "neighbors", 0)]
ITERATIONS = (0, 10, 100)


def head_cells(cells, n_neighbors: int, shared, iterations=ITERATIONS) -> list:
    """The run's MVP cells with ``n_neighbors`` (Groups I and II), once per head start and length."""
    out = []
    for c in cells:
        if c["method"] != "mvp" or c["group"] not in ("I", "II") or c["n_neighbors"] != n_neighbors \
                or c["shared"] not in shared:
            continue
        for label, init_head, head_epochs in HEADS:
            for J in iterations:
                cell = dict(c, id=f"{c['id']}/head/{label}/{J}", iterations=J, start=label, init_head=init_head)
                if head_epochs is not None:
                    cell["head_epochs"] = head_epochs
                out.append(cell)
    return out


def summary(rows: list) -> dict:
    """Per (group, c, iterations): mean accuracy of each head start and its paired difference from ``trained``."""
    out = {}
    keys = sorted({(r["group"], r["shared"], r["iterations"]) for r in rows})
    for key in keys:
        acc = {label: {r["task"]: r["accuracy"] for r in rows if (r["group"], r["shared"], r["iterations"]) == key
                       and r["start"] == label} for label, _, _ in HEADS}
        if min(len(v) for v in acc.values()) < 2:
            continue
        out["/".join(map(str, key))] = {
            "group": key[0], "shared": key[1], "iterations": key[2], "n_tasks": len(acc["trained"]),
            "accuracy": {k: float(np.mean(list(v.values()))) for k, v in acc.items()},
            "versus_trained": {label: compare_paired(acc[label], acc["trained"], random_state=0).to_dict()
                               for label, _, _ in HEADS[1:]}}
    return out


def markdown(result: dict, preset, wall_s: float, command: str) -> str:
    lines = [f"# Heads from the neighbours (preset `{preset.name}`, beyond the paper)", "",
             f"`{command}`: MVP with N = {max(preset.neighbors)} neighbours, r = {preset.pruning_ratio}, the "
             f"run's learning rate and seeds; {wall_s / 60:.1f} min. Paired per-task differences from the "
             f"trained head: mean [95% bootstrap interval], wins/ties/losses, exact sign test p.", "",
             "| group | c | iterations | tasks | trained | neighbors | as is | neighbors - trained | "
             "as is - trained |", "|---|---|---|---|---|---|---|---|---|"]
    for entry in result.values():
        a = entry["accuracy"]
        cells = [runner.format_paired(entry["versus_trained"][label]) for label in ("neighbors", "as is")]
        lines.append(f"| {entry['group']} | {entry['shared']} | {entry['iterations']} | {entry['n_tasks']} | "
                     f"{a['trained']:.3f} | {a['neighbors']:.3f} | {a['as is']:.3f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args, preset, results, cache = runner.diagnostic_arguments(__doc__.split("\n\n")[0], argv, shared=True)
    shared = args.shared
    X, y, _, backbones = runner.load_run(preset, cache)
    run_cells = runner.rebuilt_evaluation_cells(preset, X, y, results, cache, backbones, shared)
    cells = head_cells(run_cells, max(preset.neighbors), shared)
    rows, wall = runner.run_diagnostic_cells(cells, preset, X, y, backbones, cache, args.threads,
                                             ("id", "task", "group", "start", "shared", "iterations", "accuracy",
                                              "init_head", "head_epochs"))
    result = summary(rows)
    command = "python benchmarks/diagnose_heads.py " + " ".join(argv if argv is not None else sys.argv[1:])
    runner._write_json(results / "diagnostics_heads.json", {"rows": rows, "summary": result, "wall_s": wall,
                                                             "command": command})
    text = markdown(result, preset, wall, command)
    (results / "diagnostics_heads.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
