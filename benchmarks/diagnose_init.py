"""Diagnostic for the cpu reproduction: how good is each one-shot starting point before fine-tuning?

For every test task of a finished reproduction, fits MVP (N = max, every c) and the uniform
baseline with ``n_iterations=0`` (sub-network + new head + BatchNorm recalibration only), with
the run's own settings, and writes ``<results>/diagnostics_init.json`` and prints a table. This
reads held-out accuracy of test tasks but chooses nothing: it explains the run's numbers.

Usage::

    python benchmarks/diagnose_init.py --preset cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reproduction import runner  # noqa: E402
from reproduction.presets import get_preset  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    results = args.results or HERE / "results" / f"reproduce_{preset.name}"
    cache = args.cache or HERE.parent / "runs" / f"reproduce_{preset.name}"
    rows = runner.load_rows(results)
    X, y = runner.load_data(preset)
    cells = [dict(c, id=c["id"] + "/init", iterations=0) for c in _evaluation_cells(preset, y, results, cache)
             if c["id"].startswith("I/") and (c["method"] == "uniform" or (
                 c["method"] == "mvp" and c["n_neighbors"] == max(preset.neighbors)))]
    backbones = runner.backbone_paths(preset, cache, X.shape[1], len(np.unique(y)))
    out = []
    for cell in cells:
        row = runner.run_cell(cell, preset, X, y, backbones, str(cache / "bank.sqlite"), "cpu", 1)
        tuned = rows.get(cell["id"][: -len("/init")], {}).get("accuracy")
        out.append({"id": row["id"], "task": row["task"], "method": row["method"], "shared": row.get("shared"),
                    "accuracy_at_0_iterations": row["accuracy"], "accuracy_after_fine_tuning": tuned})
        print(f"{row['id']}: {row['accuracy']:.3f} at 0 iterations, {tuned} after fine-tuning", flush=True)
    runner._write_json(results / "diagnostics_init.json", out)
    for key in sorted({(r["method"], r["shared"]) for r in out}, key=str):
        sel = [r for r in out if (r["method"], r["shared"]) == key]
        print(f"{key[0]:8s} c={key[1]}: {np.mean([r['accuracy_at_0_iterations'] for r in sel]):.3f} at 0 it, "
              f"{np.mean([r['accuracy_after_fine_tuning'] for r in sel]):.3f} after ({len(sel)} tasks)")
    return 0


def _evaluation_cells(preset, y, results, cache):
    """The run's experiment cells, rebuilt from its seeds, bank and tuning cells."""
    from metaprune import PrunedModelBank
    from metaprune.data.tasks import TaskSampler
    sampler = TaskSampler(y, n_test_per_class=preset.n_test_per_class, random_state=preset.seed)
    tests = runner.test_tasks(preset, sampler)
    banks = runner.bank_tasks(preset, sampler, tests)
    with PrunedModelBank.open(cache / "bank.sqlite", read_only=True) as bank:
        ids = list(bank.task_ids)
    lrs = runner.choose_learning_rates(preset, runner.load_rows(results))
    return runner.evaluation_cells(preset, sampler, tests, banks, ids, lrs)


if __name__ == "__main__":
    sys.exit(main())
