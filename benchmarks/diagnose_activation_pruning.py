"""Beyond the paper: channels chosen by activations alone, for the task itself and as a bank.

IFP's first event, on the unpruned pre-trained network, keeps deep channels that are much more
class-specific than IFP's final selection (``diagnostics_first_event.md``). Two uses of that,
each with the finished run's settings and seeds:

- ``own activations``: IFP with a single pruning event at iteration 0 (``prune_every = J``):
  the task's own top channels by mean activation, straight to the final size, then the same J
  training iterations as MVP and Uniform (no extra fine-tuning epoch). No bank. If it matches MVP, voting adds nothing
  over scoring the task's own images.
- ``activation bank``: the run's bank tasks pruned the same way with one SGD step and a trained
  head (no IFP schedule: a bank far cheaper to build), then MVP on it with the run's
  neighbours, N and c. Against MVP on the run's IFP bank it says whether the IFP bank's
  training is worth its cost, and whether class-specific votes make c and N matter.

Groups I and II, paired per-task differences against the run's own cells (MVP N = max, Uniform,
IFP 1x). It writes ``<results>/diagnostics_activation_pruning.json`` and ``.md``; the
activation bank is ``<cache>/activation_bank.sqlite`` (resumable).

Usage::

    python benchmarks/diagnose_activation_pruning.py --preset cpu --shared 3 4
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from metaprune import PrunedModelBank  # noqa: E402
from metaprune.paired_statistics import compare_paired  # noqa: E402
from reproduction import runner  # noqa: E402


def own_cells(run_cells: list) -> list:
    """The run's IFP 1x cells of Groups I and II with one pruning event at iteration 0."""
    return [dict(c, id=f"{c['id']}/own-activations", prune_every=c["iterations"], finetune_epochs=0,
                 arm="own activations", monitor=False)
            for c in run_cells if c["method"] == "ifp" and c["group"] in ("I", "II") and c.get("multiple") == 1]


def activation_bank_cells(run_cells: list, shared, neighbors) -> list:
    """The run's MVP cells of Groups I and II for ``shared`` and ``neighbors``, for the activation bank."""
    return [dict(c, id=f"{c['id']}/activation-bank", arm="activation bank") for c in run_cells
            if c["method"] == "mvp" and c["group"] in ("I", "II") and c["shared"] in shared
            and c["n_neighbors"] in neighbors]


def activation_pruner(preset, lrs: dict):
    """The bank pruner with one event and one SGD step: top activations at the final size."""
    return runner.bank_pruner(preset, lrs, "cpu").set_params(n_iterations=1, prune_every=1, finetune_epochs=0)


def comparisons(rows: list, run_rows: dict, preset) -> list:
    """Paired per-task differences of each new arm against the run's cells."""
    out = []
    own = {r["id"].rsplit("/", 1)[0]: r for r in rows if r["arm"] == "own activations"}
    act = {r["id"].rsplit("/", 1)[0]: r for r in rows if r["arm"] == "activation bank"}
    n_max = max(preset.neighbors)
    for group in ("I", "II"):
        mine = {r["task"]: r["accuracy"] for k, r in own.items() if r["group"] == group}

        def theirs(suffix):
            return {run_rows[k]["task"]: run_rows[k]["accuracy"] for k in run_rows
                    if k.startswith(f"{group}/") and k.endswith(suffix)}
        for label, suffix in (("Uniform", "/uniform"), ("IFP 1x", "/ifp/x1")):
            out.append({"group": group, "a": "own activations", "b": label, **_paired(mine, theirs(suffix))})
        for c in sorted({r["shared"] for r in act.values()}):
            out.append({"group": group, "a": "own activations", "b": f"MVP N={n_max} c={c} (IFP bank)",
                        **_paired(mine, theirs(f"/mvp/c{c}/N{n_max}"))})
            for n in sorted({r["n_neighbors"] for r in act.values()}):
                key = f"/mvp/c{c}/N{n}"
                a = {r["task"]: r["accuracy"] for k, r in act.items() if k.startswith(f"{group}/") and k.endswith(key)}
                out.append({"group": group, "a": f"MVP N={n} c={c} (activation bank)",
                            "b": f"MVP N={n} c={c} (IFP bank)", **_paired(a, theirs(key))})
    return [o for o in out if o["comparison"] is not None]


def _paired(a: dict, b: dict) -> dict:
    common = set(a) & set(b)
    if len(common) < 2:
        return {"comparison": None}
    return {"mean_a": float(np.mean([a[t] for t in common])), "mean_b": float(np.mean([b[t] for t in common])),
            "comparison": compare_paired(a, b, random_state=0).to_dict()}


def markdown(result: list, preset, build_s: float, wall_s: float, command: str) -> str:
    lines = [f"# Channels chosen by activations alone (preset `{preset.name}`, beyond the paper)", "",
             f"`{command}`: r = {preset.pruning_ratio}, J = {preset.iterations}, the run's learning rates and "
             f"seeds. *own activations*: IFP with one event at iteration 0 (the task's top channels by mean "
             f"activation, then J fine-tuning iterations); *activation bank*: the run's bank tasks pruned that way "
             f"with one SGD step ({build_s / 60:.1f} min to build), MVP on it with the run's neighbours. "
             f"{wall_s / 60:.1f} min of fits. Paired per-task differences a - b: mean [95% bootstrap interval], "
             f"wins/ties/losses, exact sign test p.", "",
             "| group | a | b | mean a | mean b | a - b |", "|---|---|---|---|---|---|"]
    for o in result:
        lines.append(f"| {o['group']} | {o['a']} | {o['b']} | {o['mean_a']:.3f} | {o['mean_b']:.3f} | "
                     f"{runner.format_paired(o['comparison'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args, preset, results, cache = runner.diagnostic_arguments(
        __doc__.split("\n\n")[0], argv, shared=True,
        extra=(("--neighbors", dict(type=int, nargs="+", help="N values (default: the preset's)")),))
    neighbors = args.neighbors or list(preset.neighbors)
    X, y, sampler, backbones = runner.load_run(preset, cache)
    run_cells = runner.rebuilt_evaluation_cells(preset, X, y, results, cache, backbones, args.shared)
    lrs = runner.choose_learning_rates(preset, runner.load_rows(results))
    banks = runner.bank_tasks(preset, sampler, runner.test_tasks(preset, sampler))
    tasks = [t for (_, c), ts in banks.items() if c in args.shared for t in ts]
    path = cache / "activation_bank.sqlite"
    start = time.perf_counter()
    with (PrunedModelBank.open(path) if path.is_file() else
          PrunedModelBank(runner._backbone(backbones["ssl"]), path=path)) as bank:
        bank.build([t for t in tasks if t.task_id not in bank], activation_pruner(preset, lrs), X, y,
                   n_jobs=1, n_threads=args.threads, progress=False)
    build_s = time.perf_counter() - start
    cells = own_cells(run_cells) + activation_bank_cells(run_cells, args.shared, neighbors)
    keys = ("id", "task", "group", "arm", "shared", "n_neighbors", "accuracy", "fit_time_s")
    rows, wall = runner.run_diagnostic_cells([c for c in cells if c["arm"] == "own activations"], preset, X, y,
                                             backbones, cache, args.threads, keys)
    more, wall2 = runner.run_diagnostic_cells([c for c in cells if c["arm"] == "activation bank"], preset, X, y,
                                              backbones, cache, args.threads, keys, bank_path=path)
    rows += more
    result = comparisons(rows, runner.load_rows(results), preset)
    command = "python benchmarks/diagnose_activation_pruning.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    runner._write_json(results / "diagnostics_activation_pruning.json",
                       {"command": command, "rows": rows, "comparisons": result, "build_s": build_s,
                        "wall_s": wall + wall2})
    text = markdown(result, preset, build_s, wall + wall2, command)
    (results / "diagnostics_activation_pruning.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
