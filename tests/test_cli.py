import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from metaprune import IterativeFilterPruner, PrunedModelBank
from metaprune.models import cifar_resnet18, save_backbone


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "metaprune", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_demo_runs_end_to_end_and_writes_results(tmp_path):
    out = tmp_path / "demo"
    proc = run("demo", "--out", str(out), "--bank-tasks", "3", "--test-tasks", "1", "--pretrain-epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "| MVP (30 it) |" in proc.stdout and "| Uniform (30 it) |" in proc.stdout
    result = json.loads((out / "demo_results.json").read_text())
    assert {r["method"] for r in result["rows"]} == {"MVP (30 it)", "IFP (30 it)", "IFP (150 it)", "Uniform (30 it)"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in result["rows"])
    assert (out / "demo.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    backbone = cifar_resnet18(width=2, in_channels=1, num_classes=3)
    save_backbone(backbone, root / "backbone.safetensors", metadata={"made_by": "test"})
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    y = np.arange(40) % 2
    ifp = IterativeFilterPruner(backbone, pruning_ratio=0.5, n_iterations=2, prune_every=1, batch_size=16,
                                head_epochs=1, random_state=0)
    bank = PrunedModelBank(backbone, path=root / "bank.sqlite")
    bank.add("task-a", X, y, ifp)
    bank.close()
    ifp.fit(X, y).save(root / "pruned.safetensors")
    return root


def test_inspect_bank_pruned_network_and_backbone(files):
    proc = run("inspect", str(files / "bank.sqlite"))
    assert proc.returncode == 0, proc.stderr
    assert "1 tasks" in proc.stdout and "task-a" in proc.stdout
    proc = run("inspect", str(files / "pruned.safetensors"))
    assert proc.returncode == 0 and "kept channels" in proc.stdout and "layer4=8" in proc.stdout
    proc = run("inspect", str(files / "backbone.safetensors"))
    assert proc.returncode == 0 and '"made_by": "test"' in proc.stdout


def test_errors_are_one_line_with_exit_code_2(files, tmp_path):
    missing = run("inspect", str(tmp_path / "nope.sqlite"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "no such file" in missing.stderr
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    bad = run("inspect", str(junk))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    wrong = run("demo", "--bank-tasks", "many")
    assert wrong.returncode == 2 and "invalid int value" in wrong.stderr
    assert run("frobnicate").returncode == 2
