"""PrunedModelBank: storage round trip, crash safety, concurrency, untrusted files, parallel builds."""

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone

from _bank_worker import PRUNER, committed, setup
from metaprune import IterativeFilterPruner
from metaprune.bank import PrunedModelBank, TaskRecord
from metaprune.bank._records import pruner_config
from metaprune.bank._storage import TaskText
from metaprune.backbone.penultimate import class_prototypes
from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18, fingerprint, spec_of
from metaprune.data.tasks import Task
from metaprune.channels.transfer import expand_state

WORKER = Path(__file__).with_name("_bank_worker.py")
ROOT = Path(__file__).resolve().parents[1]
X, Y, BACKBONE, TASKS, _ = setup(n_tasks=8)
OTHER_BACKBONE = cifar_resnet18(width=2, in_channels=1, num_classes=10)  # other random weights


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pruner(backbone=None, **params):
    return IterativeFilterPruner(backbone, **{**PRUNER, **params})


def _data(task):
    return task.split(X, Y)  # X_train, y_train, X_test, y_test


@pytest.fixture(scope="module")
def fitted():
    """Pruners fitted on the first three tasks (on the bank's backbone)."""
    out = {}
    for task in TASKS[:3]:
        X_train, y_train, _, _ = _data(task)
        out[task.task_id] = _pruner(BACKBONE).fit(X_train, y_train)
    return out


def _store_fitted(bank, fitted, ids=None):
    for task in TASKS[:3]:
        if ids is None or task.task_id in ids:
            bank.add_fitted(task.task_id, fitted[task.task_id], *_data(task))
    return bank


def _equal_states(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def _subprocess(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ready(*processes):
    """Wait until each worker has imported everything (it prints "ready")."""
    for process in processes:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()


def _go(process):
    process.stdin.write("go\n")
    process.stdin.flush()


# -- round trip -------------------------------------------------------------------------------------

def test_every_stored_field_round_trips_through_a_file(tmp_path, fitted):
    path = tmp_path / "bank.sqlite"
    a, b, c = TASKS[0], TASKS[1], TASKS[3]
    X_a, y_a, X_a_test, y_a_test = _data(a)
    X_c, y_c, _, _ = _data(c)
    with PrunedModelBank(BACKBONE, path) as bank:
        assert bank.label_kind is None and len(bank) == 0
        # add() fits a clone with the bank's backbone, whatever backbone the pruner had
        bank.add(a.task_id, X_a, y_a, _pruner(OTHER_BACKBONE), X_a_test, y_a_test)
        bank.add_fitted(b.task_id, fitted[b.task_id], *_data(b))
        unfitted = _pruner(BACKBONE).fit(X_c, y_c)
        bank.add_fitted(c.task_id, unfitted, None, None)  # stored without prototypes nor test metric

    bank = PrunedModelBank.open(path)
    assert bank.task_ids == [a.task_id, b.task_id, c.task_id] and len(bank) == 3 and b.task_id in bank
    assert bank.fingerprint == fingerprint(BACKBONE) and fingerprint(bank.backbone) == fingerprint(BACKBONE)
    assert bank.spec == spec_of(BACKBONE) and bank.filter_space == FilterSpace.from_model(BACKBONE)
    assert bank.label_kind == "int" and bank.path == str(path) and not bank.read_only

    # a task added through add(): the same as fitting a clone on the bank's backbone directly
    direct = _pruner(BACKBONE).fit(X_a, y_a)
    rec = bank.record(a.task_id)
    assert isinstance(rec, TaskRecord) and rec.task_id == a.task_id
    assert rec.classes.tolist() == list(a.classes) and rec.classes.dtype == np.int64
    assert rec.selection == direct.selection_
    assert _equal_states(dict(rec.state), direct.net_.module_.state_dict())  # weights, BN statistics, head
    assert set(rec.head) == {"fc.weight", "fc.bias"} and rec.head["fc.weight"].shape[0] == 3
    proto_classes, protos = class_prototypes(BACKBONE, X_a, y_a)
    np.testing.assert_array_equal(rec.prototypes, protos)
    assert rec.metrics["test_accuracy"] == pytest.approx(direct.score(X_a_test, y_a_test))
    assert {k: rec.metrics[k] for k in ("n_iter", "n_params", "flops", "n_train", "n_test")} == {
        "n_iter": direct.n_iter_, "n_params": direct.n_params_, "flops": direct.flops_, "n_train": len(y_a),
        "n_test": len(y_a_test)}
    assert rec.metrics["fit_time"] > 0 and rec.metrics["train_flops"] == direct.train_flops_
    assert dict(rec.config) == pruner_config(direct) and "backbone" not in rec.config
    assert rec.estimator == "metaprune.pruners.ifp.IterativeFilterPruner"
    assert rec.backbone_fingerprint == bank.fingerprint and rec.created
    images = torch.from_numpy(X_a_test)
    np.testing.assert_allclose(bank.pruned_module(a.task_id)(images).detach().numpy(),
                               direct.net_.module_(images).detach().numpy(), rtol=1e-5, atol=1e-6)

    # a task added through add_fitted()
    rec_b = bank.record(b.task_id)
    assert rec_b.selection == fitted[b.task_id].selection_
    assert _equal_states(dict(rec_b.state), fitted[b.task_id].net_.module_.state_dict())
    assert bank.record(c.task_id).prototypes is None and "test_accuracy" not in bank.record(c.task_id).metrics

    # the vectorised queries
    ids = bank.task_ids
    sels = bank.selections(ids)
    assert sels == [rec.selection, rec_b.selection, unfitted.selection_]
    votes = bank.vote_counts(ids)
    for g in bank.filter_space:
        assert votes[g.name].dtype == np.int64 and len(votes[g.name]) == g.size
        masks = [s.masks(bank.filter_space)[g.name] for s in sels]
        np.testing.assert_array_equal(votes[g.name], np.sum(masks, axis=0))
    assert _equal_states(bank.pruned_states([b.task_id])[0], dict(rec_b.state))
    values, present = bank.expanded_weights([b.task_id])[0]
    ref_values, ref_present = expand_state(dict(rec_b.state), rec_b.selection, bank.filter_space)
    assert _equal_states(values, ref_values) and _equal_states(present, ref_present)
    protos_all = bank.prototypes()
    assert protos_all[2] is None and protos_all[0][0].tolist() == proto_classes.tolist()
    np.testing.assert_array_equal(protos_all[0][1], protos)
    classes, incidence = bank.class_incidence()
    assert classes.tolist() == sorted(set(a.classes) | set(b.classes) | set(c.classes))
    expected = np.array([[k in t.classes for k in classes] for t in (a, b, c)])
    np.testing.assert_array_equal(incidence, expected)
    assert bank.class_incidence()[1] is incidence  # cached ...
    with pytest.raises(ValueError):
        incidence[0, 0] = True  # ... and read-only
    with pytest.raises(KeyError, match="nope"):
        bank.selections(["nope"])
    bank.verify()
    bank.close()


def test_pruned_tasks_are_the_selections_and_states_read_in_one_go(fitted, monkeypatch):
    bank = _store_fitted(PrunedModelBank(BACKBONE), fitted)
    ids = list(reversed(bank.task_ids))
    reads, read = [], bank._storage.read
    monkeypatch.setattr(bank._storage, "read", lambda *args, **kw: reads.append(args) or read(*args, **kw))
    pairs = bank.pruned_tasks(ids)
    assert len(reads) == 1  # one snapshot of every task's row and weights
    monkeypatch.undo()
    assert [s for s, _ in pairs] == bank.selections(ids) == [fitted[t].selection_ for t in ids]
    assert all(_equal_states(state, ref) for (_, state), ref in zip(pairs, bank.pruned_states(ids)))
    for task_id, (_, state) in zip(ids, pairs):
        assert _equal_states(state, fitted[task_id].net_.module_.state_dict())
    with pytest.raises(KeyError, match="nope"):
        bank.pruned_tasks(["nope"])
    with pytest.raises(ValueError, match="sequence of task ids"):
        bank.pruned_tasks(ids[0])


def test_a_record_without_weights_reads_no_blob(tmp_path, fitted):
    from metaprune.cli.jobs import describe_file

    path = tmp_path / "bank.sqlite"
    bank = _store_fitted(PrunedModelBank(BACKBONE, path), fitted)
    task_id = bank.task_ids[0]
    full = bank.record(task_id)

    def no_blobs(action, table, column, database, trigger):  # SQLite refuses any read of a blob table
        blob = action == sqlite3.SQLITE_READ and table in ("weights", "prototypes")
        return sqlite3.SQLITE_DENY if blob else sqlite3.SQLITE_OK

    bank._storage._conn.set_authorizer(no_blobs)
    light = bank.record(task_id, weights=False)
    assert light.state is None and light.prototypes is None and "weights not read" in repr(light)
    assert light.classes.tolist() == full.classes.tolist() and light.selection == full.selection
    assert dict(light.metrics) == dict(full.metrics) and dict(light.config) == dict(full.config)
    assert (light.estimator, light.backbone_fingerprint, light.created) == (
        full.estimator, full.backbone_fingerprint, full.created)
    with pytest.raises(ValueError, match="read without its weights"):
        light.head  # noqa: B018
    with pytest.raises(ValueError):  # the authorizer does refuse blob reads
        bank.record(task_id)
    bank.close()

    conn = sqlite3.connect(path)  # a file whose task blobs are gone: metrics and classes stay readable
    with conn:
        conn.execute("DELETE FROM weights")
        conn.execute("DELETE FROM prototypes")
    conn.close()
    with PrunedModelBank.open(path, read_only=True) as bank:
        assert [bank.record(t, weights=False).metrics["n_params"] for t in bank.task_ids] == [
            fitted[t].n_params_ for t in bank.task_ids]
        with pytest.raises(ValueError, match="weights of task"):
            bank.record(task_id)
    lines = describe_file(path)  # the inspect job lists every task without its weights
    assert all(any(line.startswith(f"  {t}: classes") for line in lines) for t in fitted)


def test_bank_is_shared_by_clones_and_travels_read_only(tmp_path, fitted):
    class Holder(BaseEstimator):
        def __init__(self, bank=None):
            self.bank = bank

    memory = _store_fitted(PrunedModelBank(BACKBONE), fitted, ids=[TASKS[0].task_id])
    assert memory.path is None and clone(memory) is memory and clone(Holder(memory)).bank is memory
    copy = pickle.loads(pickle.dumps(memory))  # an in-memory bank travels as its SQLite image
    assert copy.read_only and copy.task_ids == memory.task_ids
    assert copy.selections(copy.task_ids) == memory.selections(memory.task_ids)
    with pytest.raises(ValueError, match="read-only"):
        copy.add_fitted("new", fitted[TASKS[1].task_id], None, None)

    path = tmp_path / "bank.sqlite"
    on_disk = _store_fitted(PrunedModelBank(BACKBONE, path), fitted, ids=[TASKS[0].task_id])
    reopened = pickle.loads(pickle.dumps(on_disk))  # a file bank travels as its path
    assert reopened.read_only and reopened.path == str(path) and reopened.task_ids == on_disk.task_ids
    with pytest.raises(ValueError, match="read-only"):
        reopened.build(TASKS[:1], _pruner(), X, Y)
    assert len(PrunedModelBank.open(path)) == 1


def test_label_kind_is_fixed_by_the_first_task(fitted):
    bank = _store_fitted(PrunedModelBank(BACKBONE), fitted, ids=[TASKS[0].task_id])
    X_train, y_train, _, _ = _data(TASKS[1])
    named = _pruner(BACKBONE).fit(X_train, np.array([f"digit-{v}" for v in y_train]))
    with pytest.raises(ValueError, match="str class labels but this bank's labels are ints"):
        bank.add_fitted("named", named, X_train, np.array([f"digit-{v}" for v in y_train]))
    assert bank.task_ids == [TASKS[0].task_id]

    str_bank = PrunedModelBank(BACKBONE).add_fitted("named", named, X_train, [f"digit-{v}" for v in y_train])
    assert str_bank.label_kind == "str"
    classes, incidence = str_bank.class_incidence()
    assert classes.tolist() == sorted(f"digit-{v}" for v in set(y_train)) and incidence.all()
    assert str_bank.record("named").classes.tolist() == named.classes_.tolist()
    with pytest.raises(ValueError, match="int class labels but this bank's labels are strs"):
        str_bank.add_fitted("ints", fitted[TASKS[0].task_id], None, None)


def test_other_backbone_or_existing_id_is_refused_and_nothing_is_lost(tmp_path, fitted):
    path = tmp_path / "bank.sqlite"
    bank = _store_fitted(PrunedModelBank(BACKBONE, path), fitted, ids=[TASKS[0].task_id, TASKS[1].task_id])
    first, second = TASKS[0].task_id, TASKS[1].task_id
    before = bank.record(first)
    X_train, y_train, _, _ = _data(TASKS[2])
    foreign = _pruner(OTHER_BACKBONE).fit(X_train, y_train)
    with pytest.raises(ValueError, match="fitted on another backbone .* nothing was stored"):
        bank.add_fitted("foreign", foreign, X_train, y_train)
    with pytest.raises(ValueError, match="fitted on another backbone"):
        bank.add_fitted(first, foreign, X_train, y_train, replace=True)
    with pytest.raises(ValueError, match=f"task '{first}' is already in the bank; pass replace=True"):
        bank.add_fitted(first, fitted[TASKS[2].task_id], X_train, y_train)
    with pytest.raises(ValueError, match="already in the bank"):
        bank.add(first, X_train, y_train, _pruner())

    bank = PrunedModelBank.open(path)
    assert bank.task_ids == [first, second]
    after = bank.record(first)
    assert after.selection == before.selection and _equal_states(dict(after.state), dict(before.state))
    assert after.created == before.created

    bank.add_fitted(first, fitted[TASKS[2].task_id], X_train, y_train, replace=True)
    assert bank.task_ids == [first, second]  # replaced in place
    assert bank.record(first).selection == fitted[TASKS[2].task_id].selection_
    assert bank.record(first).classes.tolist() == list(TASKS[2].classes)
    assert bank.class_incidence()[1][0].sum() == 3


# -- opening files --------------------------------------------------------------------------------

def test_opening_something_that_is_not_a_bank_is_a_clear_error(tmp_path, fitted):
    with pytest.raises(FileNotFoundError):
        PrunedModelBank.open(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x)")
    for path, message in ((text, "is damaged or is not a metaprune bank"), (other, "not a metaprune bank")):
        content = path.read_bytes()
        with pytest.raises(ValueError, match=message):
            PrunedModelBank.open(path)
        with pytest.raises(ValueError, match=message):
            PrunedModelBank(BACKBONE, path)  # never initialises over a foreign file
        assert path.read_bytes() == content

    path = tmp_path / "bank.sqlite"
    _store_fitted(PrunedModelBank(BACKBONE, path), fitted, ids=[TASKS[0].task_id]).close()
    with pytest.raises(ValueError, match="bank of another backbone"):
        PrunedModelBank(OTHER_BACKBONE, path)
    assert PrunedModelBank(BACKBONE, path).task_ids == [TASKS[0].task_id]  # same backbone: reopened
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ValueError, match="schema version '99'; .* reads schema version 1 only"):
        PrunedModelBank.open(path)


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickle_payload_in_the_file_raises_and_runs_no_code(tmp_path, fitted):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    path = tmp_path / "bank.sqlite"
    _store_fitted(PrunedModelBank(BACKBONE, path), fitted, ids=[TASKS[0].task_id, TASKS[1].task_id]).close()
    first, second = TASKS[0].task_id, TASKS[1].task_id

    def tamper(sql, *args):
        with sqlite3.connect(path) as conn:
            conn.execute(sql, args)

    def reseal(task_id, **fields):
        """Rewrite a row's text and digest as an informed attacker would (digests match)."""
        with sqlite3.connect(path) as conn:
            columns = [c for c in TaskText.__dataclass_fields__]
            row = dict(zip(columns, conn.execute(f"SELECT {', '.join(columns)} FROM tasks WHERE task_id = ?",
                                                 (task_id,)).fetchone()))
            row.update(fields)
            assignments = ", ".join(f"{c} = ?" for c in row)
            conn.execute(f"UPDATE tasks SET {assignments}, digest = ? WHERE task_id = ?",
                         (*row.values(), TaskText(**row).digest(), task_id))

    from metaprune.bank._codec import sha256_hex

    tamper("UPDATE weights SET blob = ? WHERE task_id = ?", payload, first)
    with pytest.raises(ValueError, match="do not match their stored SHA-256"):
        PrunedModelBank.open(path).record(first)
    reseal(first, weights_sha256=sha256_hex(payload))  # digests now agree with the payload
    with pytest.raises(ValueError, match="not a valid safetensors payload"):
        PrunedModelBank.open(path).pruned_states([first])
    tamper("UPDATE prototypes SET blob = ? WHERE task_id = ?", payload, second)
    reseal(second, prototypes_sha256=sha256_hex(payload))
    with pytest.raises(ValueError, match="prototypes of task .* not a valid safetensors payload"):
        PrunedModelBank.open(path).prototypes([second])
    reseal(second, selection=payload.decode("latin-1"))
    with pytest.raises(ValueError, match="selection of task .* is not valid JSON"):
        PrunedModelBank.open(path).selections([second])
    tamper("UPDATE backbone SET weights = ?, sha256 = ?", payload, sha256_hex(payload))
    with pytest.raises(ValueError, match="backbone weights .* not a valid safetensors payload"):
        PrunedModelBank.open(path).backbone
    tamper("UPDATE meta SET value = ? WHERE key = 'spec'", payload.decode("latin-1"))
    with pytest.raises(ValueError, match="architecture .* is not valid JSON"):
        PrunedModelBank.open(path)
    assert not marker.exists()


def test_corrupted_bytes_raise_a_clear_error(tmp_path, fitted):
    path = tmp_path / "bank.sqlite"
    bank = _store_fitted(PrunedModelBank(BACKBONE, path), fitted)
    first, second, third = bank.task_ids
    blob = bank._storage.read([first], blobs=("weights",))[0][1]["weights"]
    bank.close()  # checkpoints the WAL into the file
    pristine = path.read_bytes()

    def corrupt(offset, data):
        raw = bytearray(pristine)
        raw[offset:offset + len(data)] = data
        path.write_bytes(bytes(raw))

    chunk = next(blob[i:i + 32] for i in range(len(blob) - 32, 0, -32) if pristine.count(blob[i:i + 32]) == 1)
    corrupt(pristine.index(chunk), b"\x07" * 16)  # damage tensor values inside a weights blob
    bank = PrunedModelBank.open(path)
    with pytest.raises(ValueError, match=f"weights of task '{first}' .* do not match their stored SHA-256"):
        bank.pruned_states([first])
    assert bank.selections([second])[0] == fitted[second].selection_  # the rest stays readable
    with pytest.raises(ValueError, match="damaged"):
        bank.verify()
    bank.close()

    corrupt(0, b"garbage!" * 4)  # the file header
    with pytest.raises(ValueError, match="is damaged or is not a metaprune bank"):
        PrunedModelBank.open(path)

    page_size = int.from_bytes(pristine[16:18], "big")
    path.write_bytes(pristine)
    conn = sqlite3.connect(path)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
    conn.close()
    corrupt((root - 1) * page_size, os.urandom(page_size))  # the page holding the tasks table
    with pytest.raises(ValueError, match="damaged"):
        bank = PrunedModelBank.open(path)
        bank.task_ids, bank.class_incidence()


# -- builds ---------------------------------------------------------------------------------------

def test_build_is_resumable_and_keeps_results_that_finished_before_an_error():
    bank = PrunedModelBank(BACKBONE).build(TASKS[:2], _pruner(), X, Y, progress=False)
    created = {t: bank.record(t).created for t in bank.task_ids}
    train = TASKS[2].train_index
    bad_index = train[Y[train] == TASKS[2].classes[0]]  # a one-class task: its fit fails
    bad = Task("bad", TASKS[2].classes, bad_index, TASKS[2].test_index)
    with pytest.raises(ValueError, match="at least 2 classes"):
        bank.build([*TASKS[2:4], bad, TASKS[4]], _pruner(), X, Y, progress=False)
    assert bank.task_ids == [t.task_id for t in TASKS[:4]]  # stored one by one as they finished
    assert {t: bank.record(t).created for t in bank.task_ids[:2]} == created  # not refitted
    bank.build(TASKS[:5], _pruner(), X, Y, progress=False)
    assert bank.task_ids == [t.task_id for t in TASKS[:5]]
    assert "test_accuracy" in bank.record(TASKS[4].task_id).metrics

    renamed = Task(TASKS[5].task_id, TASKS[5].classes, TASKS[5].train_index, TASKS[5].test_index)
    clash = Task(TASKS[0].task_id, TASKS[5].classes, TASKS[5].train_index, TASKS[5].test_index)
    with pytest.raises(ValueError, match="is stored with the classes"):
        bank.build([renamed, clash], _pruner(), X, Y, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        bank.build(TASKS[5:6], _pruner(), X[:50], Y[:50], progress=False)
    assert len(bank) == 5


def test_threaded_build_stores_the_same_selections_as_a_serial_build():
    serial = PrunedModelBank(BACKBONE).build(TASKS[:4], _pruner(), X, Y, progress=False)
    threaded = PrunedModelBank(BACKBONE).build(TASKS[:4], _pruner(), X, Y, n_jobs=2, backend="threading",
                                               progress=False)
    ids = serial.task_ids
    assert sorted(threaded.task_ids) == sorted(ids) and threaded.selections(ids) == serial.selections(ids)
    assert all(np.allclose(a[1], b[1]) for a, b in zip(threaded.prototypes(ids), serial.prototypes(ids)))


def test_dask_build_stores_the_same_selections_as_a_serial_build(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = PrunedModelBank(BACKBONE).build(TASKS[:4], _pruner(), X, Y, progress=False)
    path = tmp_path / "bank.sqlite"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        PrunedModelBank(BACKBONE, path).build(TASKS[:4], _pruner(), X, Y, backend="dask", progress=False)
    bank = PrunedModelBank.open(path)
    ids = serial.task_ids
    assert sorted(bank.task_ids) == sorted(ids)
    assert bank.selections(ids) == serial.selections(ids)
    assert [r.tolist() for r in bank.class_incidence()[0]] == serial.class_incidence()[0].tolist()


# -- crash safety and concurrency -----------------------------------------------------------------

def test_a_build_killed_with_sigkill_keeps_finished_tasks_and_resumes(tmp_path):
    path = tmp_path / "bank.sqlite"
    process = _subprocess("build", path, 8, 0.05)
    deadline = time.monotonic() + 60
    seen = []
    while len(seen) < 2 and process.poll() is None and time.monotonic() < deadline:
        seen = committed(path)
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate()
    assert process.returncode == -signal.SIGKILL, err
    assert len(seen) >= 2, err

    bank = PrunedModelBank.open(path)
    stored = bank.task_ids
    assert stored[:len(seen)] == seen and len(stored) < 8  # every task finished before the kill, no more
    bank.verify()  # each of them complete
    created = {t: bank.record(t).created for t in stored}
    bank.close()

    bank = PrunedModelBank(BACKBONE, path).build(TASKS, _pruner(), X, Y, progress=False)  # re-run: resumes
    assert sorted(bank.task_ids) == sorted(t.task_id for t in TASKS)
    assert {t: bank.record(t).created for t in stored} == created
    bank.verify()


def test_ctrl_c_during_a_task_stops_the_build_and_never_stores_that_task(tmp_path):
    # skorch's fit swallows KeyboardInterrupt: the half-trained task used to be stored as complete
    full = _pruner(BACKBONE).fit(*_data(TASKS[0])[:2]).n_iter_
    path = tmp_path / "bank.sqlite"
    process = _subprocess("build", path, 8, 0.05)
    deadline = time.monotonic() + 60
    seen = []
    while not seen and process.poll() is None and time.monotonic() < deadline:
        seen = committed(path)
        time.sleep(0.01)
    time.sleep(0.12)  # into the next task's training steps
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode in (-signal.SIGINT, 1, 130) and "KeyboardInterrupt" in err, err
    bank = PrunedModelBank.open(path)
    assert seen and 1 <= len(bank) < 8
    assert [bank.record(t).metrics["n_iter"] for t in bank.task_ids] == [full] * len(bank)
    bank.close()


def test_readers_in_other_processes_only_ever_see_complete_tasks(tmp_path, fitted):
    path = tmp_path / "bank.sqlite"
    n_tasks = 15
    readers = [_subprocess("read", path, n_tasks, 60) for _ in range(2)]
    for reader in readers:  # wait until both have imported everything
        assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
    bank = PrunedModelBank(BACKBONE, path)
    tasks = TASKS[:3]
    for k in range(n_tasks):
        task = tasks[k % 3]
        bank.add_fitted(f"{task.task_id}-copy{k}", fitted[task.task_id], *_data(task))
        time.sleep(0.05)
    for reader in readers:
        out, err = reader.communicate(timeout=90)
        assert reader.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["sizes"][-1] == n_tasks and summary["checked"] == n_tasks
        assert len(summary["sizes"]) > 2  # it read while tasks were being written


# -- several builders on one file -------------------------------------------------------------------

def _summary(process, timeout=180):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_concurrent_identical_builds_share_the_tasks_and_each_reports_what_it_added(tmp_path):
    path = tmp_path / "bank.sqlite"
    n_tasks = 6
    builders = [_subprocess("build", path, n_tasks, 0.05, 0, 1) for _ in range(2)]
    _ready(*builders)
    for builder in builders:
        _go(builder)
    summaries = [_summary(b) for b in builders]
    ids = {t.task_id for t in setup(n_tasks)[3]}
    added = [set(s["added"]) for s in summaries]
    assert not added[0] & added[1] and added[0] | added[1] == ids  # no task pruned twice, none left out
    assert all(added)  # both did part of the work
    for s, mine in zip(summaries, added):  # each accounts for every task exactly once
        others = set(s["already_stored"]) | set(s["left_to_others"])
        assert not mine & others and mine | others == ids
    bank = PrunedModelBank.open(path)
    assert sorted(bank.task_ids) == sorted(ids)
    full = _pruner(BACKBONE).fit(*_data(TASKS[0])[:2]).n_iter_
    assert [bank.record(t).metrics["n_iter"] for t in bank.task_ids] == [full] * n_tasks
    assert bank._storage.claims() == {}  # every claim released
    bank.verify()


def test_a_build_of_another_design_is_refused_before_any_work(tmp_path):
    path = tmp_path / "bank.sqlite"
    first, other = _subprocess("build", path, 4, 0.1, 0, 1), _subprocess("build", path, 4, 0.1, 1, 1)
    _ready(first, other)  # seed 1: other classes under the same ids
    _go(first)
    deadline = time.monotonic() + 60
    while not committed(path, table="designs") and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the first build has registered its design
    _go(other)
    _, err = other.communicate(timeout=120)
    assert first.poll() is None, "the first build ended before the second was refused"
    assert other.returncode == 1 and "is built for another task design: task 'task-0000' is " in err, err
    assert "nothing was pruned" in err and err.count("ValueError: ") == 1
    summary = _summary(first)
    bank = PrunedModelBank.open(path)
    ours = {t.task_id: list(t.classes) for t in setup(4)[3]}
    assert set(summary["added"]) == set(ours) == set(bank.task_ids)
    assert {t: bank.record(t).classes.tolist() for t in bank.task_ids} == ours  # only the first design
    # refused also once the first build is over: those ids are stored with the first design
    X_, y_, backbone, tasks_1, pruner = setup(4, seed=1)
    with pytest.raises(ValueError, match="task 'task-0000' is stored with the classes"):
        bank.build(tasks_1, pruner, X_, y_, progress=False)
    bank.close()


def test_claims_of_a_dead_builder_are_taken_over_and_a_live_one_keeps_its_task():
    from metaprune.bank._builders import Builder, is_alive

    bank = PrunedModelBank(BACKBONE)
    storage = bank._storage
    designs = {t.task_id: "{}" for t in TASKS[:3]}
    me, other = str(Builder.this_process()), str(Builder.this_process())
    dead = str(Builder(Builder.this_process().host, 2**22 + 12345, "gone"))  # above any pid_max
    assert storage.begin_build(dead, designs, is_alive) == []
    assert storage.claim(dead, "task-0000", lambda owner, beat: True) == "claimed"
    assert storage.begin_build(other, designs, is_alive) == [] and storage.claim(other, "task-0001", is_alive) == "claimed"
    assert storage.claims() == {"task-0001": other}  # the dead builder and its claim are gone
    assert storage.begin_build(me, designs, is_alive) == []
    assert storage.claim(me, "task-0000", is_alive) == "claimed"  # taken over from the dead builder
    assert storage.claim(me, "task-0001", is_alive) == "busy"  # a live builder holds it
    other_design = {**designs, "task-0002": '{"classes": [0]}'}
    conflicts = storage.begin_build(str(Builder.this_process()), other_design, is_alive)
    assert [c[0] for c in conflicts] == ["task-0002"]  # a live build runs the recorded design
    storage.end_build(other)
    assert storage.claims() == {"task-0000": me}
    storage.end_build(me)
    assert storage.claims() == {}
    assert storage.begin_build(me, other_design, is_alive) == []  # no live build, nothing stored: replaced
    assert not is_alive(me, time.time() - 1000) and is_alive(me, time.time())


def test_a_bank_serves_one_image_size_and_says_which(fitted):
    bank = _store_fitted(PrunedModelBank(BACKBONE), fitted)
    assert bank.input_shape == (1, 8, 8)
    X16 = np.repeat(np.repeat(X, 2, axis=2), 2, axis=3)  # the same digits at 16x16
    from metaprune import MetaVotePruner
    task = TASKS[3]
    X_train, y_train = task.split(X16, Y)[:2]
    with pytest.raises(ValueError, match=r"shape \(1, 16, 16\) but the bank \(in memory\) was built on "
                                         r"images of shape \(1, 8, 8\)"):
        MetaVotePruner(bank, n_neighbors=2, n_iterations=1).fit(X_train, y_train)
    with pytest.raises(ValueError, match=r"3-channel|shape \(3, 8, 8\)"):
        MetaVotePruner(bank, n_neighbors=2, n_iterations=1).fit(np.repeat(_data(task)[0], 3, axis=1), y_train)
    wide = _pruner(BACKBONE).fit(X_train, y_train)  # pruned on 16x16 images
    with pytest.raises(ValueError, match=r"images of shape \(1, 16, 16\) but this bank's tasks use \(1, 8, 8\)"):
        bank.add_fitted("wide", wide, X_train, y_train)
    assert len(bank) == 3


def test_an_mvp_pruned_task_joins_a_bank_even_after_its_own_bank_closed(tmp_path, fitted):
    """A growing bank: the task MVP pruned is stored (selection, weights, config) and votes next time.

    The MVP estimator keeps its (closed) bank as a parameter: its repr and the stored config
    must not touch the closed connection."""
    from metaprune import MetaVotePruner
    task = TASKS[3]
    X_train, y_train = _data(task)[:2]
    voters = _store_fitted(PrunedModelBank(BACKBONE, tmp_path / "voters.sqlite"), fitted)
    mvp = MetaVotePruner(voters, n_neighbors=2, n_iterations=2, batch_size=16, head_epochs=1, random_state=0,
                         n_threads=1).fit(X_train, y_train)
    voters.close()
    assert voters.closed and "closed" in repr(voters) and "voters.sqlite" in repr(voters)
    assert "MetaVotePruner" in repr(mvp)
    with PrunedModelBank(BACKBONE, tmp_path / "growing.sqlite") as growing:
        _store_fitted(growing, fitted)
        growing.add_fitted("mvp-task", mvp, X_train, y_train)
        rec = growing.record("mvp-task")
        assert growing.task_ids[-1] == "mvp-task" and len(growing) == 4
        assert rec.selection == mvp.selection_ and rec.estimator == "metaprune.pruners.oneshot.MetaVotePruner"
        assert _equal_states(dict(rec.state), mvp.net_.module_.state_dict())
        assert rec.config["n_neighbors"] == 2 and "closed" in rec.config["bank"]
        # the stored MVP task is a neighbour like any other: the same task again votes with a task of
        # all its classes (the MVP task, or a tie)
        shared = {t: len(set(growing.record(t, weights=False).classes) & set(task.classes))
                  for t in growing.task_ids}
        assert shared["mvp-task"] == len(task.classes) > max(shared[t] for t in growing.task_ids[:3])
        again = MetaVotePruner(growing, n_neighbors=1, n_iterations=0, head_epochs=1, random_state=0,
                               n_threads=1).fit(X_train, y_train)
        assert again.neighbors_[0][0] == "mvp-task"
