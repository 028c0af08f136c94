"""The reproduction benchmark's smoke preset: every stage runs, results are complete, reruns resume."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(results, cache, *extra):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--preset", "smoke",
                           "--results", str(results), "--cache", str(cache), *extra],
                          capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1",
                                                                            **__import__("os").environ})


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    proc = run(root / "results", root / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


def test_smoke_run_writes_every_cell_and_the_report(smoke):
    root, _ = smoke
    results = root / "results"
    out = json.loads((results / "results.json").read_text())
    plan = out["plan"]
    assert plan["preset"]["name"] == "smoke" and plan["preset"]["seed"] == 0
    assert out["n_cells"]["done"] == plan["n_cells"] > 0
    assert set(plan["versions"]) >= {"torch", "skorch", "scikit-learn", "metaprune", "python"}
    p = plan["preset"]
    # bank: max(N) tasks per (test task, c)
    assert out["bank"]["n_tasks"] == p["n_test_tasks"] * max(p["neighbors"]) * len(p["shared"])
    cells = list(csv.DictReader((results / "cells.csv").open()))
    experiment = [c for c in cells if c["stage"] != "tune"]
    assert len(experiment) == plan["n_cells"]
    for c in cells:  # an accuracy is a whole number of the cell's test images right, out of all of them
        per_class = p["n_validation_per_class"] if c["stage"] == "tune" else p["n_test_per_class"]
        right = float(c["accuracy"]) * int(c["n_test"])
        assert int(c["n_test"]) == per_class * p["n_way"] and right == pytest.approx(round(right), abs=1e-6)
    # random-init backbones, 3-way tasks (chance 1/3): measured mean 0.59, cells 0.28-0.82
    assert sum(float(c["accuracy"]) for c in cells) / len(cells) > 0.45
    mvp = [c for c in experiment if c["method"] == "mvp" and c["group"] == "I"]
    assert len(mvp) == p["n_test_tasks"] * len(p["neighbors"]) * len(p["shared"])
    # every MVP cell voted with exactly its neighbours: N tasks sharing c classes with its test task
    for path in (results / "cells").glob("I__*__mvp__*.json"):
        row = json.loads(path.read_text())
        assert len(row["neighbors"]) == row["n_neighbors"]
        assert all(n.startswith(f"bank-{row['task']}-c{row['shared']}-") for n, _ in row["neighbors"])
        assert all(score == row["shared"] for _, score in row["neighbors"])
    # Group III: no voting task shares a class with the test task
    bank = json.loads((results / "bank.json").read_text())
    for path in (results / "cells").glob("III__*.json"):
        row = json.loads(path.read_text())
        assert all(not set(bank["classes"][n]) & set(row["classes"]) for n, _ in row["neighbors"])
    # Group II uses the limited number of training images, Group I all of them
    limited = [c for c in experiment if c["group"] == "II"]
    assert {int(c["n_train"]) for c in limited} == {p["limited_per_class"] * p["n_way"]}
    assert out["claims"] and all(isinstance(c["holds"], bool) for c in out["claims"])
    assert out["study"]["iou"] and out["study"]["recall"]
    summary = (results / "summary.md").read_text()
    assert "## Group I" in summary and "## Efficiency" in summary and "missing" not in summary
    for fig in ("fig_groups.png", "fig_study_backbones.png", "fig_study_overlap.png", "fig_efficiency.png"):
        assert (results / fig).stat().st_size > 5000


def test_smoke_rerun_resumes_without_refitting(smoke):
    root, _ = smoke
    results = root / "results"
    before = {p.name: p.read_text() for p in (results / "cells").glob("*.json")}
    proc = run(results, root / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cells to run" not in proc.stdout  # every cell was cached
    after = {p.name: p.read_text() for p in (results / "cells").glob("*.json")}
    assert after == before
