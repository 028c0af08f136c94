"""The reproduction benchmark's smoke preset: every stage runs, results are complete, reruns resume."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert {c["verdict"] for c in out["claims"]} <= {"holds", "fails", "undecided"}
    paired = [c for c in out["claims"] if "paired" in c]
    assert paired and all(c["paired"]["ci_low"] <= c["paired"]["mean_difference"] <= c["paired"]["ci_high"]
                          and len(c["paired"]["tasks"]) == p["n_test_tasks"] for c in paired)
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


def _report():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from reproduction import report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return report


def test_bank_pair_overlap_groups_pairs_by_shared_classes_and_leaves_out_duplicates():
    report = _report()
    bank = {"sizes": {"layer1": 4, "layer4": 10},
            "selections": {"a": {"layer1": [0, 1], "layer4": [0, 1]}, "b": {"layer1": [0, 1], "layer4": [1, 2]},
                           "c": {"layer1": [2, 3], "layer4": [5, 6]}, "d": {"layer1": [0, 1], "layer4": [0, 1]}}}
    classes = {"a": [0, 1, 2], "b": [0, 1, 5], "c": [6, 7, 8], "d": [2, 1, 0]}  # d is a under another id
    out = report.bank_pair_overlap(bank, classes, deep=("layer4",))
    assert out["n_identical_pairs_left_out"] == 1
    assert {c: v["n_pairs"] for c, v in out["by_c"].items()} == {2: 2, 0: 3}
    assert out["by_c"][2]["iou"] == {"layer1": 1.0, "layer4": 1 / 3}  # (a, b) and (d, b)
    assert out["by_c"][0]["iou"]["layer1"] == 0.0 and out["by_c"][0]["iou"]["layer4"] == 0.0
    assert out["deep_by_c"][2]["mean"] == pytest.approx(1 / 3)
    assert out["chance_iou"] == {"layer1": pytest.approx(2 / 6), "layer4": pytest.approx(2 / 18)}


def test_accuracy_claims_are_judged_on_paired_task_differences():
    report = _report()
    preset = {"neighbors": [1, 10], "shared": [3], "iterations": 100, "limited_per_class": 100}
    rows = []
    for t, (mvp, ifp5, uni) in enumerate([(0.70, 0.60, 0.60), (0.80, 0.71, 0.70), (0.50, 0.40, 0.41),
                                          (0.60, 0.52, 0.50)]):
        rows += [dict(group="I", method="mvp", n_neighbors=10, shared=3, task=f"t{t}", accuracy=mvp, train_flops=1e9),
                 dict(group="I", method="ifp", multiple=5, task=f"t{t}", accuracy=ifp5, train_flops=5e10),
                 dict(group="I", method="uniform", task=f"t{t}", accuracy=uni, train_flops=1e9)]
    out = {c["claim"]: c for c in report.claims(rows, {}, preset)}
    ifp = out["Group I, c=3: MVP N=10 >= IFP 5x"]
    assert ifp["verdict"] == "holds" and ifp["paired"]["sign"]["wins"] == 4
    assert ifp["paired"]["mean_difference"] == pytest.approx(0.0925)
    # the per-task differences to uniform are 0.10, 0.10, 0.09, 0.10: all above the 0.05 margin
    assert out["Group I, c=3: MVP N=10 >= Uniform + 0.05"]["verdict"] == "holds"
    assert out["Efficiency: MVP training FLOPs <= 10% of IFP 5x"]["evidence"] == "2.0%"
    assert not any(c.startswith("Group II") for c in out)  # no cells, no claim


def _run_diagnostic(name, root, *extra):
    """Run ``benchmarks/diagnose_<name>.py`` (with ``extra`` options) on the smoke run in ``root``
    (it must succeed); returns its ``diagnostics_<name>.json`` and the run's preset."""
    results = root / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"diagnose_{name}.py"), "--preset", "smoke",
                           "--results", str(results), "--cache", str(root / "cache"), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (json.loads((results / f"diagnostics_{name}.json").read_text()),
            json.loads((results / "results.json").read_text())["plan"]["preset"])


def test_init_diagnostic_splits_mvps_start_into_channels_and_weights(smoke):
    root, _ = smoke
    results = root / "results"
    out, p = _run_diagnostic("init", root)
    starts = [r["start"] for r in out["rows"]]
    assert starts.count("uniform") == p["n_test_tasks"]
    for label in ("mvp", "voted_pretrained", "uniform_averaged"):
        assert starts.count(label) == p["n_test_tasks"] * len(p["shared"])
    for c, d in out["decomposition"].items():
        e = {name: v["mean_difference"] for name, v in d["effects"].items()}
        # paired means add up exactly, whichever way the advantage is split
        assert e["MVP - Uniform (total)"] == pytest.approx(e["channels, with pre-trained weights"]
                                                           + e["weights, on voted channels"], abs=1e-12)
        assert e["MVP - Uniform (total)"] == pytest.approx(e["weights, on random channels"]
                                                           + e["channels, with averaged weights"], abs=1e-12)
    assert "## The advantage split two ways" in (results / "diagnostics_init.md").read_text()


def test_head_diagnostic_fits_each_head_start_at_each_length(smoke):
    root, _ = smoke
    results = root / "results"
    out, p = _run_diagnostic("heads", root)
    rows = out["rows"]
    # groups I and II, every c, three head starts, three lengths
    assert len(rows) == p["n_test_tasks"] * 2 * len(p["shared"]) * 3 * 3
    assert {r["iterations"] for r in rows} == {0, 10, 100}
    as_is = [r for r in rows if r["start"] == "as is"]
    assert as_is and all(r["head_epochs"] == 0 and r["init_head"] == "neighbors" for r in as_is)
    for entry in out["summary"].values():
        means = entry["accuracy"]
        d = entry["versus_trained"]["neighbors"]["mean_difference"]
        assert d == pytest.approx(means["neighbors"] - means["trained"], abs=1e-12)  # the same tasks paired
    assert "| group | c | iterations |" in (results / "diagnostics_heads.md").read_text()


def test_growing_bank_adds_each_stream_task_and_later_tasks_vote_with_it(smoke):
    root, _ = smoke
    from metaprune import PrunedModelBank
    n_stream = 4
    with PrunedModelBank.open(root / "cache" / "bank.sqlite", read_only=True) as bank:
        n_before = len(bank)
    # one test task's classes make the pool: every stream task has the same classes and data
    out, p = _run_diagnostic("growing_bank", root, "--stream", str(n_stream), "--pool-tests", "1")
    rows = out["rows"]
    assert len(rows) == n_stream * 7 and {r["arm"] for r in rows} == {"frozen", "growing", "related", "uniform"}
    n = max(p["neighbors"])
    by = {(r["arm"], r["position"], r["iterations"]): r for r in rows}
    for J in (0, p["iterations"]):
        # at the start both arms have the same bank: the same neighbours and the same fit
        assert by[("growing", 0, J)]["neighbors"] == by[("frozen", 0, J)]["neighbors"]
        assert by[("growing", 0, J)]["accuracy"] == by[("frozen", 0, J)]["accuracy"]
        for pos in range(n_stream):
            frozen, growing = by[("frozen", pos, J)], by[("growing", pos, J)]
            assert frozen["stream_neighbors"] == 0 and max(frozen["neighbor_shared"]) == 0  # pool classes left out
            # the control votes from the whole bank: its nearest tasks were built around the pool's test task
            assert by[("related", pos, J)]["stream_neighbors"] == 0 and max(by[("related", pos, J)]["neighbor_shared"]) > 0
            # identical earlier tasks are the nearest by prototypes, and share every class
            assert growing["stream_neighbors"] == min(pos, n)
            assert sorted(growing["neighbor_shared"], reverse=True)[:min(pos, n)] == [p["n_way"]] * min(pos, n)
    with PrunedModelBank.open(root / "cache" / "growing_bank.sqlite", read_only=True) as grown, \
            PrunedModelBank.open(root / "cache" / "bank.sqlite", read_only=True) as bank:
        assert len(bank) == n_before and len(grown) == n_before + n_stream  # the run's bank is never written
        assert grown.task_ids[-n_stream:] == sorted({r["task"] for r in rows})
    entry = out["summary"][str(p["iterations"])]
    assert entry["n_tasks"] == n_stream
    for b in ("frozen", "related"):
        assert entry[f"growing_minus_{b}"]["mean_difference"] == pytest.approx(
            entry["accuracy"]["growing"] - entry["accuracy"][b], abs=1e-12)


def test_iou_diagnostic_fits_each_task_at_each_length_once(smoke):
    root, _ = smoke
    results = root / "results"
    args = ("--iterations", "2", "4", "--anchors", "1", "--per-c", "1")
    out, p = _run_diagnostic("iou_iterations", root, *args)
    n_tasks = 1 + len(p["shared"])
    assert len(out["tasks"]) == n_tasks and out["anchors"] == out["tasks"][:1]
    fits = sorted((root / "cache" / "iou_iterations").rglob("*.json"))
    assert len(fits) == 2 * (n_tasks + 1)  # every task at each J, and the anchor at a second seed
    for J in ("2", "4"):
        entry = out["by_iterations"][J]
        assert entry["same_task_two_seeds"]["n"] == 1
        pairs = sum(v["n_pairs"] for v in entry["overlap"]["by_c"].values())
        assert pairs + entry["overlap"]["n_identical_pairs_left_out"] == n_tasks * (n_tasks - 1) // 2
    # a rerun reads every fit from the cache
    stamps = [f.stat().st_mtime_ns for f in fits]
    again, _ = _run_diagnostic("iou_iterations", root, *args)
    assert [f.stat().st_mtime_ns for f in fits] == stamps and again["by_iterations"] == out["by_iterations"]
    assert "| same task, two seeds |" in (results / "diagnostics_iou_iterations.md").read_text()


def test_activation_diagnostic_prunes_once_for_each_task_and_for_a_cheap_bank(smoke):
    root, _ = smoke
    from metaprune import PrunedModelBank
    out, p = _run_diagnostic("activation_pruning", root)
    rows = out["rows"]
    own = [r for r in rows if r["arm"] == "own activations"]
    act = [r for r in rows if r["arm"] == "activation bank"]
    assert len(own) == p["n_test_tasks"] * 2  # Groups I and II, IFP 1x each
    n_centred = p["n_centred_tasks"] or p["n_test_tasks"]
    assert len(act) == n_centred * 2 * len(p["shared"]) * len(p["neighbors"])
    with PrunedModelBank.open(root / "cache" / "activation_bank.sqlite", read_only=True) as bank, \
            PrunedModelBank.open(root / "cache" / "bank.sqlite", read_only=True) as ifp_bank:
        assert sorted(bank.task_ids) == sorted(ifp_bank.task_ids)  # the run's bank tasks, pruned the cheap way
        n_keep = bank.filter_space.n_keep(p["pruning_ratio"])
        for t in bank.task_ids[:3]:
            rec = bank.record(t, weights=False)
            assert rec.metrics["n_iter"] == 1
            assert {g: len(v) for g, v in rec.selection.to_dict().items()} == dict(n_keep)
    for o in out["comparisons"]:
        assert o["comparison"]["mean_difference"] == pytest.approx(o["mean_a"] - o["mean_b"], abs=1e-12)
    assert {o["b"] for o in out["comparisons"]} >= {"Uniform", "IFP 1x"}


def test_first_event_selections_are_ifps_own_first_event():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from diagnose_first_event import first_event_selections
    from metaprune import IterativeFilterPruner
    from metaprune.backbone.resnet import cifar_resnet18
    from metaprune.channels.filter_space import FilterSpace
    from metaprune.data.loaders import load_digits_images
    from metaprune.data.preprocessing import ImageToTensor
    from metaprune.data.tasks import TaskSampler

    data = load_digits_images()
    X = ImageToTensor().fit_transform(data.images)
    tasks = TaskSampler(data.labels, n_test_per_class=20, random_state=0).sample(2, n_way=3, random_state=1)
    torch.manual_seed(0)
    backbone = cifar_resnet18(width=4, in_channels=1, num_classes=10)
    space = FilterSpace.from_model(backbone)
    pruner = IterativeFilterPruner(backbone, pruning_ratio=0.75, n_iterations=4, prune_every=2, batch_size=32,
                                   head_epochs=1, random_state=0)
    schedule = pruner._schedule(space)
    counts = {"first": {g: int(n[0]) for g, n in schedule.items()}}
    got, n_images = first_event_selections(pruner._prepared_backbone(), space, tasks, X, counts, space.units)
    assert n_images == len(np.unique(np.concatenate([t.train_index for t in tasks])))
    for task in tasks:
        X_train, y_train, _, _ = task.split(X, data.labels)
        at, selection = pruner.fit(X_train, y_train).pruning_path_[0]
        assert at == 0
        assert {g: list(v) for g, v in selection.to_dict().items()} == got["first"][task.task_id]


def test_mvp_gets_its_own_rate_from_a_validation_bank(smoke):
    root, _ = smoke
    results = root / "results"
    plan = json.loads((results / "plan.json").read_text())
    p, lrs = plan["preset"], plan["learning_rates"]
    assert lrs["mvp"] in p["mvp_lr_grid"] and len(lrs["validation_accuracy"]["mvp"]) == len(p["mvp_lr_grid"])
    cells = list(csv.DictReader((results / "cells.csv").open()))
    tuning = [c for c in cells if c["id"].startswith("tune/mvp/")]
    assert len(tuning) == p["n_validation_tasks"] * len(p["mvp_lr_grid"])
    evaluated = [c for c in cells if c["stage"] != "tune"]
    assert all(float(c["lr"]) == lrs["mvp"] for c in evaluated if c["method"] == "mvp")
    assert all(float(c["lr"]) == lrs["oneshot"] for c in evaluated if c["method"] == "uniform")


def test_validation_bank_never_sees_a_validation_or_test_image():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from metaprune.data.tasks import TaskSampler
    from reproduction import runner
    from reproduction.presets import get_preset

    preset = get_preset("smoke", n_validation_tasks=2)
    X, y = runner.load_data(preset)
    sampler = TaskSampler(y, n_test_per_class=preset.n_test_per_class, random_state=preset.seed)
    validation = runner.validation_tasks(preset, sampler, y)
    banks = runner.validation_bank_tasks(preset, sampler, y)
    held_out = np.concatenate([t.test_index for t in validation] + [sampler.test_pools[c] for c in sampler.classes])
    for task in validation:
        around = banks[(task.task_id, preset.mvp_tuning_shared)]
        assert len(around) == max(preset.neighbors)
        for t in around:
            assert len(set(t.classes) & set(task.classes)) == preset.mvp_tuning_shared
            assert not np.isin(t.train_index, held_out).any()
            assert (y[t.train_index][:, None] == np.asarray(t.classes)).any(1).all()


@pytest.mark.parametrize("name", ["cpu", "cpu-paper", "cpu-paper-r96", "cpu-paper-paper-lr", "paper"])
def test_each_cifar_preset_plans_a_leak_free_bank_and_its_cells(name):
    """The plan of every CIFAR-100 preset, built on CIFAR-shaped labels (100 classes x 500) without data."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from metaprune.data.tasks import TaskSampler
    from reproduction import runner
    from reproduction.presets import get_preset

    preset = get_preset(name)
    y = np.repeat(np.arange(100), 500)
    sampler = TaskSampler(y, n_test_per_class=preset.n_test_per_class, random_state=preset.seed)
    tests = runner.test_tasks(preset, sampler)
    banks = runner.bank_tasks(preset, sampler, tests)
    n_centred = preset.n_centred_tasks or preset.n_test_tasks
    assert len(tests) == preset.n_test_tasks and len(banks) == n_centred * len(preset.shared)
    held_out = np.concatenate([t.test_index for t in tests])
    for (target, c), around in banks.items():
        target_classes = next(t.classes for t in tests if t.task_id == target)
        assert len(around) == max(preset.neighbors)
        assert all(len(set(t.classes) & set(target_classes)) == c for t in around)
        assert not any(np.isin(t.train_index, held_out).any() for t in around)
    ids = [t.task_id for ts in banks.values() for t in ts]
    lrs = {"ifp_full": 1e-2, "ifp_limited": 1e-2, "oneshot": 1e-2, "mvp": 3e-3}
    cells = runner.evaluation_cells(preset, sampler, tests, banks, ids, lrs)
    mvp_c = [c for c in cells if c["method"] == "mvp" and c["group"] in ("I", "II")]
    assert len(mvp_c) == 2 * n_centred * len(preset.shared) * len(preset.neighbors)
    assert all(len(ids) - len(c["exclude"]) == c["n_neighbors"] for c in mvp_c)  # only its own neighbours vote
    if preset.mvp_lr_grid is not None:
        val = runner.validation_bank_tasks(preset, sampler, y)
        assert sum(map(len, val.values())) == preset.n_validation_tasks * max(preset.neighbors)
        assert not any(np.isin(t.train_index, held_out).any() for ts in val.values() for t in ts)


def test_a_missing_checkpoint_stops_a_run_unless_the_preset_allows_random_weights(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from reproduction import runner
    from reproduction.presets import get_preset

    missing = get_preset("cpu", backbone="not_pretrained_yet.safetensors")
    with pytest.raises(SystemExit, match=r"preset 'cpu': backbone checkpoint not_pretrained_yet.safetensors not "
                                         r"found .*pre-train it first"):
        runner.backbone_paths(missing, tmp_path, 3, 100)
    assert not list(tmp_path.iterdir())  # stopped before writing anything
    allowed = get_preset("cpu", backbone="not_pretrained_yet.safetensors", random_if_missing=True)
    paths = runner.backbone_paths(allowed, tmp_path, 3, 100)
    assert Path(paths["ssl"]).name == "random_ssl_w16.safetensors" and Path(paths["sup"]).parent.name == "checkpoints"
