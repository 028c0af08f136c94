"""Tiny shared set-up for the bank tests, and the subprocesses they start.

    python tests/_bank_worker.py build PATH N_TASKS DELAY [SEED [WAIT]]
        build N_TASKS tasks (sampled with SEED) into PATH, slowly; print "ready" once imported,
        with WAIT=1 wait for a line on stdin before starting; print what it added (JSON)
    python tests/_bank_worker.py read PATH N_TASKS TIMEOUT  read PATH while another process writes

``setup`` gives the same data, backbone, tasks and pruner in every process (all seeded), so a
build started in a subprocess can be resumed by the test itself.
"""

import json
import signal
import sys
import time
import traceback

import numpy as np
import torch
from skorch.callbacks import Callback
from sklearn.datasets import load_digits

from metaprune import IterativeFilterPruner
from metaprune.backbone.resnet import cifar_resnet18
from metaprune.data.tasks import TaskSampler

PRUNER = dict(pruning_ratio=0.5, n_iterations=2, prune_every=1, head_epochs=1, batch_size=32, random_state=0)


def committed(path, column="task_id", table="tasks"):
    """``column`` of every row of ``table`` committed so far in the bank file at ``path``, read
    through a separate read-only connection (empty while the file is missing or being created)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return [r[0] for r in conn.execute(f"SELECT {column} FROM {table} ORDER BY rowid")]
    except sqlite3.Error:
        return []


def setup(n_tasks=8, n_way=3, width=2, seed=0):
    """``(X, y, backbone, tasks, pruner)``: digits 8x8, a tiny CIFAR ResNet-18, n-way tasks."""
    X, y = load_digits(return_X_y=True)
    X = (X.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    torch.manual_seed(seed)
    backbone = cifar_resnet18(width=width, in_channels=1, num_classes=10)
    sampler = TaskSampler(y, n_test_per_class=20, random_state=seed)
    tasks = sampler.sample(n_tasks, n_way=n_way, n_train_per_class=30)
    return X, y, backbone, tasks, IterativeFilterPruner(**PRUNER)


class Sleep(Callback):
    """Slow every training step down (so a test can kill a build in the middle)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_batch_end(self, net, **kwargs):
        time.sleep(self.seconds)


def build(path, n_tasks, delay, seed=0, wait=False):
    """Build the tasks sampled with ``seed`` (the backbone is always seed 0's)."""
    from metaprune.bank import PrunedModelBank

    X, y, backbone, _, pruner = setup(n_tasks)
    tasks = setup(n_tasks, seed=seed)[3]
    pruner.set_params(callbacks=[Sleep(delay)])
    print("ready", flush=True)
    if wait:
        sys.stdin.readline()
    bank = PrunedModelBank(backbone, path).build(tasks, pruner, X, y, progress=False)
    summary = bank.last_build
    print(json.dumps({"added": summary.added, "already_stored": summary.already_stored,
                      "left_to_others": summary.left_to_others}), flush=True)


def read(path, n_tasks, timeout):
    """Poll the bank until it holds ``n_tasks``; check every task seen is complete; print a summary."""
    from metaprune.bank import PrunedModelBank

    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    while True:  # the writer creates the file after we start
        try:
            bank = PrunedModelBank.open(path, read_only=True)
            break
        except (FileNotFoundError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    sizes, checked = [], set()
    while time.monotonic() < deadline:
        with bank.snapshot():
            ids = bank.task_ids
            classes, incidence = bank.class_incidence()
            assert incidence.shape == (len(ids), len(classes)), (incidence.shape, len(ids))
            states = bank.pruned_states(ids)
            assert len(states) == len(ids) == len(bank.prototypes())
        for task_id in ids:
            if task_id not in checked:  # a task, once visible, is whole: every field decodes and fits
                record = bank.record(task_id)
                assert record.prototypes is not None and "test_accuracy" in record.metrics
                bank.pruned_module(task_id)
                checked.add(task_id)
        if not sizes or sizes[-1] != len(ids):
            sizes.append(len(ids))
        if len(ids) >= n_tasks:
            break
        time.sleep(0.005)
    print(json.dumps({"sizes": sizes, "checked": len(checked)}), flush=True)


if __name__ == "__main__":
    mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    # Ctrl-C raises KeyboardInterrupt as in a terminal, even where the test run was started in the
    # background (a non-interactive shell starts background jobs with SIGINT ignored, inherited here)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if mode == "build":
            build(path, n, float(sys.argv[4]), *(int(a) for a in sys.argv[5:7]))
        else:
            read(path, n, float(sys.argv[4]))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
