"""Ctrl-C and SIGTERM stop every long job cleanly: nothing half-trained is stored or written,
what finished is kept, the CLI exits 130 with one line (real subprocesses, real signals)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _bank_worker import committed
from metaprune import PrunedModelBank
from metaprune.runtime.interrupts import terminate_as_interrupt
from metaprune.backbone.resnet import cifar_resnet18, save_backbone

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 60


def _start(*args, script=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, *( [str(script)] if script else ["-m", "metaprune"]), *map(str, args)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # a signal reaches this process only, as `kill PID` does


def _wait_for(condition, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _wait_for_output(process, phrase, timeout=300):
    """Read the process's stderr (raw, without blocking on a line) until ``phrase`` appears."""
    import select

    seen, deadline = b"", time.monotonic() + timeout
    while phrase.encode() not in seen:
        assert process.poll() is None and time.monotonic() < deadline, seen.decode(errors="replace")[-2000:]
        if select.select([process.stderr], [], [], 0.1)[0]:
            seen += os.read(process.stderr.fileno(), 65536)


def _interrupted(process, signum, command):
    """Send ``signum``; check exit 130 and a last stderr line saying so."""
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith(f"metaprune {command}: interrupted"), err
    return out, err


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("interrupts") / "backbone.safetensors"
    save_backbone(cifar_resnet18(width=2, in_channels=1, num_classes=10), path)
    return path


def test_terminate_as_interrupt_raises_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("n_jobs, signum", [(1, signal.SIGTERM), (2, signal.SIGINT)])
def test_build_bank_stopped_mid_task_keeps_finished_tasks_only(backbone_file, tmp_path, n_jobs, signum):
    bank_path = tmp_path / "bank.sqlite"
    process = _start("build-bank", "--backbone", backbone_file, "--data", "digits", "--bank", bank_path,
                     "--n-tasks", 8, "--n-way", 3, "--n-test-per-class", 20, "--n-train-per-class", 30,
                     "--iterations", ITERATIONS, "--batch-size", 32, "--n-jobs", n_jobs, "--threads", 1, "--quiet")
    _wait_for(lambda: len(committed(bank_path)) >= 1, process)
    time.sleep(0.3)  # into the next task's training
    _interrupted(process, signum, "build-bank")
    with PrunedModelBank.open(bank_path) as bank:
        assert 1 <= len(bank) < 8
        records = [bank.record(t) for t in bank.task_ids]
        assert all(r.config["n_iterations"] == ITERATIONS for r in records)
        assert len({r.metrics["n_iter"] for r in records}) == 1  # every stored task ran its whole schedule
        assert records[0].metrics["n_iter"] >= ITERATIONS
        assert bank._storage.claims() == {}  # the stopped build released its tasks
        bank.verify()


def test_prune_stopped_mid_fit_writes_no_network(backbone_file, tmp_path):
    out = tmp_path / "pruned.safetensors"
    process = _start("prune", "--method", "ifp", "--backbone", backbone_file, "--data", "digits",
                     "--classes", "1,2,3", "--iterations", 100000, "--batch-size", 32, "--threads", 1,
                     "--out", out)
    _wait_for_output(process, "%|")  # its progress bar: imports done, the SGD steps running
    _interrupted(process, signal.SIGTERM, "prune")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_pretrain_stopped_keeps_its_last_checkpoint_and_resumes(tmp_path):
    ckpt, out = tmp_path / "ckpt.safetensors", tmp_path / "backbone.safetensors"
    epochs = 12
    args = ["pretrain", "--data", "digits", "--width", 2, "--epochs", epochs, "--batch-size", 256,
            "--checkpoint", ckpt, "--out", out, "--threads", 1, "--quiet"]
    process = _start(*args)
    _wait_for(ckpt.is_file, process)
    _interrupted(process, signal.SIGTERM, "pretrain")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temp file
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        epoch = json.loads(f.metadata()["state"])["epoch"]
    assert 1 <= epoch < epochs
    process = _start(*args, "--resume")
    stdout, err = process.communicate(timeout=300)
    assert process.returncode == 0 and out.is_file(), err
    assert "resumed from the checkpoint" in stdout


def test_reproduction_stopped_keeps_whole_cells_and_exits_130(tmp_path):
    results, cache = tmp_path / "results", tmp_path / "cache"
    process = _start("--preset", "smoke", "--results", results, "--cache", cache,
                     script=ROOT / "benchmarks" / "reproduce.py")
    _wait_for(lambda: len(list((results / "cells").glob("*.json"))) >= 1 if (results / "cells").is_dir() else False,
              process, timeout=300)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("reproduce: interrupted (stopped by signal SIGTERM)"), err
    cells = list((results / "cells").glob("*.json"))
    assert cells and all(isinstance(json.loads(c.read_text())["accuracy"], float) for c in cells)
    assert not [p for p in (results / "cells").iterdir() if p.suffix != ".json"]  # no half-written file
