"""Beyond the paper (b): a bank that grows. Does MVP improve as its bank collects the tasks it pruned?

A deployment prunes tasks one after another; each MVP-pruned task can join the bank and vote
for the tasks after it. This runs a stream of new tasks through MVP twice, with the finished
run's bank, learning rate and seeds:

- ``frozen``: the bank as built (the run's IFP-pruned training tasks);
- ``growing``: the same bank plus every earlier stream task, each stored as MVP pruned it
  (``PrunedModelBank.add_fitted`` on a copy of the run's bank; the run's own bank is not changed);
- ``related``: the control, the run's whole bank frozen, with the IFP-pruned bank tasks that do
  share classes with the stream (built around the pool's test tasks, c = the preset's values).

The stream's tasks draw their classes from a small pool (the classes of the first
``--pool-tests`` test tasks), so later stream tasks share classes with earlier ones; bank tasks
that hold any pool class are left out of both arms, so at the start no bank task shares a class
with the stream, as for a new deployment. Neighbours are chosen by class prototypes (Hungarian
matching, Group III's similarity), which works whether or not classes are shared. Every stream
task is fitted at 0 iterations (the voted sub-network with a trained head: what the bank's votes
alone give) and at the preset's J, and Uniform is fitted as the reference.

The question is whether ``growing - frozen`` rises with the stream position (the bank's age),
and whether a grown bank of MVP-pruned tasks does as well as a bank of related IFP-pruned tasks
built in advance (``growing - related``):
the report gives the paired differences over the stream's thirds (95% bootstrap intervals, sign
tests), their Spearman correlation with the position, and how many of the N neighbours were
earlier stream tasks and how many classes they shared.

It writes ``<results>/diagnostics_growing_bank.json`` and ``.md``. Stream tasks train on
training images only; held-out images only score them.

Usage::

    python benchmarks/diagnose_growing_bank.py --preset cpu --stream 30
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from metaprune import PrunedModelBank  # noqa: E402
from metaprune.data.tasks import Task, TaskSampler  # noqa: E402
from metaprune.paired_statistics import compare_paired  # noqa: E402
from reproduction import runner  # noqa: E402

ARMS = ("frozen", "growing", "related")


def stream_tasks(preset, sampler: TaskSampler, tests: list, n_tasks: int, pool_tests: int) -> tuple:
    """``n_tasks`` new tasks whose classes come from the first ``pool_tests`` test tasks' classes.

    Returns ``(tasks, pool)``; each task has ``preset.n_way`` classes drawn from ``pool`` with
    its own seed, its training images from the training pools and its test images held out.
    """
    pool = np.unique(np.concatenate([t.classes for t in tests[:pool_tests]]))
    if len(pool) < preset.n_way:
        raise ValueError(f"the pool of {len(pool)} classes is smaller than a task ({preset.n_way} classes)")
    tasks = []
    for i in range(n_tasks):
        rng = np.random.default_rng([preset.seed, 11, i])
        classes = np.sort(rng.choice(pool, size=preset.n_way, replace=False))
        tasks.append(sampler.sample(1, n_way=preset.n_way, classes=classes, prefix=f"stream{i:02d}",
                                    random_state=rng)[0])
    return tasks, pool


def stream_cells(preset, tasks: list, lrs: dict, excluded: list, n_neighbors: int) -> list:
    """Per stream task, in stream order: MVP in each arm at 0 and J iterations, then Uniform."""
    mvp_lr = lrs.get("mvp", lrs["oneshot"])
    cells = []
    for position, task in enumerate(tasks):
        for arm in ARMS:
            for J in (0, preset.iterations):
                cells.append(runner._cell(f"growing/{task.task_id}/{arm}/J{J}", "mvp", task, group="growing",
                                          arm=arm, position=position, iterations=J, lr=mvp_lr,
                                          n_neighbors=n_neighbors, similarity="prototype",
                                          exclude=None if arm == "related" else excluded))
        cells.append(runner._cell(f"growing/{task.task_id}/uniform", "uniform", task, group="growing",
                                  arm="uniform", position=position, iterations=preset.iterations,
                                  lr=lrs["oneshot"]))
    return cells


def run_stream(cells: list, preset, X, y, backbones: dict, bank_path: Path, growing_path: Path,
               n_threads: int) -> list:
    """Fit the cells in order; after a stream task's J-iteration growing fit, store it in the growing bank."""
    keys = ("id", "task", "arm", "position", "iterations", "accuracy", "neighbors", "stream_neighbors",
            "neighbor_shared", "fit_time_s")
    rows, stream_ids = [], set()
    for cell in cells:
        path = growing_path if cell["arm"] == "growing" else bank_path
        estimator, row = runner.fit_cell(cell, preset, X, y, backbones, str(path), "cpu", n_threads)
        if cell["method"] == "mvp":
            estimator.bank.close()
            ids = [t for t, _ in row["neighbors"]]
            classes = set(cell["task"]["classes"])
            row["stream_neighbors"] = sum(t in stream_ids for t in ids)
            row["neighbor_shared"] = [len(classes & set(map(int, c))) for c in _classes(path, ids)]
        rows.append({k: row.get(k) for k in keys})
        note = f" ({row['stream_neighbors']} stream neighbours)" if cell["arm"] == "growing" else ""
        print(f"{row['id']}: {row['accuracy']:.3f}{note}", flush=True)
        if cell["arm"] == "growing" and cell["iterations"] == preset.iterations:
            task = Task.from_dict(cell["task"])
            X_train, y_train, _, _ = task.split(X, y)
            with PrunedModelBank.open(growing_path) as bank:
                bank.add_fitted(task.task_id, estimator, X_train, y_train)
            stream_ids.add(task.task_id)
    return rows


def _classes(bank_path: Path, task_ids: list) -> list:
    with PrunedModelBank.open(bank_path, read_only=True) as bank:
        return [bank.record(t, weights=False).classes for t in task_ids]


def _compare(rows: list, tasks: list) -> dict:
    """Accuracy of each arm over ``tasks``, growing - frozen and growing - related paired, and the
    neighbours' provenance."""
    arm = {a: {r["task"]: r for r in rows if r["arm"] == a and r["task"] in tasks} for a in ARMS}
    accuracy = {a: {t: arm[a][t]["accuracy"] for t in tasks} for a in ARMS}
    return {"accuracy": {a: float(np.mean(list(v.values()))) for a, v in accuracy.items()},
            **{f"growing_minus_{b}": compare_paired(accuracy["growing"], accuracy[b], random_state=0).to_dict()
               for b in ("frozen", "related")},
            "stream_neighbors": float(np.mean([arm["growing"][t]["stream_neighbors"] for t in tasks])),
            "neighbor_shared": {a: float(np.mean([np.mean(arm[a][t]["neighbor_shared"]) for t in tasks]))
                                for a in ARMS}}


def summary(rows: list, n_parts: int = 3) -> dict:
    """Per J: growing - frozen over the whole stream and its ``n_parts`` consecutive parts, and the
    difference's Spearman correlation with the stream position."""
    out = {}
    for J in sorted({r["iterations"] for r in rows if r["arm"] in ARMS}):
        at_J = [r for r in rows if r["iterations"] == J and r["arm"] in ARMS]
        position = {r["task"]: r["position"] for r in at_J}
        tasks = sorted(position, key=position.get)
        whole = _compare(at_J, tasks)
        parts = []
        for chunk in np.array_split(np.arange(len(tasks)), max(1, min(n_parts, len(tasks) // 2))):
            parts.append({"positions": [int(chunk[0]), int(chunk[-1])], **_compare(at_J, [tasks[i] for i in chunk])})
        acc = {a: {r["task"]: r["accuracy"] for r in at_J if r["arm"] == a} for a in ARMS}
        rho = spearmanr(np.arange(len(tasks)), [acc["growing"][t] - acc["frozen"][t] for t in tasks])
        out[str(J)] = {"iterations": J, "n_tasks": len(tasks), **whole, "parts": parts,
                       "spearman_position": {"rho": float(rho.statistic), "p_value": float(rho.pvalue)}}
    uniform = [r["accuracy"] for r in rows if r["arm"] == "uniform"]
    if uniform:
        out["uniform"] = float(np.mean(uniform))
    return out


def markdown(result: dict, preset, n_stream: int, pool: list, n_bank: tuple, n_neighbors: int, wall_s: float,
             command: str) -> str:
    """The report; ``n_bank`` is ``(bank tasks without a pool class, all bank tasks)``."""
    entries = [e for k, e in result.items() if k != "uniform"]
    lines = [
        f"# A bank that grows (preset `{preset.name}`, beyond the paper)", "",
        f"`{command}`: {n_stream} stream tasks of {preset.n_way} classes drawn from a pool of {len(pool)} test "
        f"classes; frozen and growing start from the run's {n_bank[0]} bank tasks that hold no pool class, the "
        f"growing arm adds each stream task as MVP pruned it (J = {preset.iterations}); related votes from all "
        f"{n_bank[1]} bank tasks, frozen. MVP N = {n_neighbors}, prototype "
        f"similarity, r = {preset.pruning_ratio}, the run's MVP learning rate; {wall_s / 60:.1f} min. Uniform over "
        f"the stream: {result.get('uniform', float('nan')):.3f}.", "",
        "Paired per-task differences: mean [95% bootstrap interval], wins/ties/losses, exact sign test p. "
        "*stream nbrs*: of the N neighbours, how many were earlier stream tasks; *shared*: mean classes a "
        "neighbour shares with the task (frozen / related / growing).", "",
        "| iterations | positions | frozen | related | growing | growing - frozen | growing - related | stream nbrs "
        "| shared (frozen / related / growing) |",
        "|---|---|---|---|---|---|---|---|---|"]
    for entry in entries:
        for e, where in [(part, "{}-{}".format(*part["positions"])) for part in entry["parts"]] + [(entry, "all")]:
            shared = e["neighbor_shared"]
            acc = e["accuracy"]
            lines.append(f"| {entry['iterations']} | {where} | {acc['frozen']:.3f} | {acc['related']:.3f} | "
                         f"{acc['growing']:.3f} | {runner.format_paired(e['growing_minus_frozen'])} | "
                         f"{runner.format_paired(e['growing_minus_related'])} | {e['stream_neighbors']:.1f} | "
                         f"{shared['frozen']:.2f} / {shared['related']:.2f} / {shared['growing']:.2f} |")
    lines += ["", "Spearman correlation of growing - frozen with the stream position: " + "; ".join(
        f"J = {e['iterations']}: rho = {e['spearman_position']['rho']:+.2f} "
        f"(p = {e['spearman_position']['p_value']:.2g})" for e in entries) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args, preset, results, cache = runner.diagnostic_arguments(
        __doc__.split("\n\n")[0], argv, shared=False,
        extra=(("--stream", dict(type=int, default=30, help="stream tasks (default 30)")),
               ("--pool-tests", dict(type=int, default=3, help="test tasks whose classes make the pool (default 3)")),
               ("--neighbors", dict(type=int, help="N (default: the preset's largest)"))))
    X, y, sampler, backbones = runner.load_run(preset, cache)
    tests = runner.test_tasks(preset, sampler)
    tasks, pool = stream_tasks(preset, sampler, tests, args.stream, args.pool_tests)
    lrs = runner.choose_learning_rates(preset, runner.load_rows(results))
    bank_path = cache / "bank.sqlite"
    with PrunedModelBank.open(bank_path, read_only=True) as bank:
        excluded = [t for t in bank.task_ids if np.isin(bank.record(t, weights=False).classes, pool).any()]
        n_bank = (len(bank) - len(excluded), len(bank))
    growing_path = cache / "growing_bank.sqlite"
    shutil.copyfile(bank_path, growing_path)  # a fresh copy: the run's bank is never written
    n_neighbors = args.neighbors or max(preset.neighbors)
    cells = stream_cells(preset, tasks, lrs, excluded, n_neighbors)
    start = time.perf_counter()
    rows = run_stream(cells, preset, X, y, backbones, bank_path, growing_path, args.threads)
    wall = time.perf_counter() - start
    result = summary(rows)
    command = "python benchmarks/diagnose_growing_bank.py " + " ".join(argv if argv is not None else sys.argv[1:])
    runner._write_json(results / "diagnostics_growing_bank.json",
                       {"command": command, "pool": [int(c) for c in pool], "n_bank": list(n_bank), "rows": rows,
                        "summary": result, "wall_s": wall})
    text = markdown(result, preset, len(tasks), pool, n_bank, n_neighbors, wall, command)
    (results / "diagnostics_growing_bank.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
