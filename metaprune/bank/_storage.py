"""The bank's file: transactions, reads, writes and integrity of one SQLite database (WAL journal).

The tables and the row types are described in :mod:`._schema`; the SQL that coordinates
concurrent builds lives in :mod:`._storage_builds`. One task is one transaction: a reader
(another connection, another process) sees either all of a task or none of it, and a writer
killed mid-task loses only that task. Every read checks each row against its digest.

This module knows nothing of torch or estimators: it moves :class:`TaskRow` values (text
and bytes) in and out of the file and guarantees their integrity.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

from . import _storage_builds as builds
from ._schema import (BLOB_TABLES, FORMAT, SCHEMA_VERSION, TEXT_COLUMNS, TaskRow, TaskText, check_bank,
                      initialise_if_empty, now, row_digest)
from ._sql import placeholders, raise_translated, select_in

__all__ = ["SCHEMA_VERSION", "FORMAT", "TaskRow", "TaskText", "BankStorage"]  # the row types re-exported


class BankStorage:
    """Transactions, schema and integrity of one bank database (file or in memory).

    Use the constructors :meth:`open`, :meth:`create_or_open`, :meth:`in_memory` and
    :meth:`from_image`. A storage object may be shared between threads (calls are
    serialised by a lock); each process opens its own.

    Parameters
    ----------
    connection : sqlite3.Connection
        An autocommit connection (``isolation_level=None``).
    name : str
        The file path (or ``":memory:"``), for messages.
    read_only : bool
        Refuse every write.
    """

    def __init__(self, connection: sqlite3.Connection, name: str, read_only: bool = False):
        self._conn = connection
        self.name = name
        self.read_only = bool(read_only)
        self._lock = threading.RLock()
        self._writes = 0
        self.closed = False
        with self._sql():
            self._conn.execute("PRAGMA synchronous = FULL")  # a committed task survives even a power loss
            if read_only:
                self._conn.execute("PRAGMA query_only = ON")
            self.meta = check_bank(self._conn, self.name)

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False, timeout=60.0)

    @classmethod
    def open(cls, path, read_only: bool = False) -> "BankStorage":
        """Open an existing bank file.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ValueError
            If the file is not a metaprune bank, is damaged, or has an unknown schema version.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no bank file at {path}")
        conn = cls._connect(f"{path.absolute().as_uri()}?mode=rw", uri=True)
        try:
            return cls(conn, str(path), read_only)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def create_or_open(cls, path, meta: dict, backbone_weights: bytes) -> "BankStorage":
        """Create a bank file at ``path``, or open the bank already there.

        A missing file, an empty file, or an SQLite database without any table is
        initialised with ``meta`` and ``backbone_weights`` in one transaction (a creation
        killed half-way leaves an empty database, which the next call initialises). Any
        other existing file is opened as a bank (and rejected if it is not one); it is never
        modified here.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot create a bank at {path}: the folder {path.parent} "
                                    f"does not exist")
        conn = cls._connect(f"{path.absolute().as_uri()}?mode=rwc", uri=True)
        try:
            initialise_if_empty(conn, str(path), meta, backbone_weights, wal=True)
            return cls(conn, str(path))
        except BaseException:
            conn.close()
            raise

    @classmethod
    def in_memory(cls, meta: dict, backbone_weights: bytes) -> "BankStorage":
        """A new bank that lives in memory only."""
        conn = cls._connect(":memory:")
        initialise_if_empty(conn, ":memory:", meta, backbone_weights, wal=False)
        return cls(conn, ":memory:")

    @classmethod
    def from_image(cls, image: bytes, read_only: bool = True) -> "BankStorage":
        """An in-memory bank from the bytes of :meth:`image` (an SQLite database image)."""
        conn = cls._connect(":memory:")
        try:
            conn.deserialize(bytes(image))
            return cls(conn, ":memory:", read_only)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise_translated(exc, "the bank image")
            raise

    def image(self) -> bytes:
        """The whole database as bytes (used to send an in-memory bank to another process)."""
        with self._sql():
            return self._conn.serialize()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()
            self.closed = True

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _sql(self):
        """Serialise access and turn SQLite's corruption errors into clear ValueErrors."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise_translated(exc, self.name)

    @contextmanager
    def _read_transaction(self):
        """One consistent snapshot for several SELECTs (joins an enclosing snapshot)."""
        with self._sql() as conn:
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextmanager
    def snapshot(self):
        """Hold one read snapshot: every read inside sees the same committed tasks."""
        with self._read_transaction():
            yield

    def version(self) -> tuple:
        """A token that changes whenever any connection commits a change (for caches)."""
        with self._sql() as conn:
            return self._writes, conn.execute("PRAGMA data_version").fetchone()[0]

    # -- reads ----------------------------------------------------------------------------------
    def label_kind(self) -> str | None:
        """``"int"`` or ``"str"`` once a task is stored, else None."""
        with self._sql() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'label_kind'").fetchone()
        return None if row is None else row[0]

    def input_shape(self) -> tuple | None:
        """``(C, H, W)`` of the images the bank's tasks were pruned on, once a task states it."""
        with self._sql() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'input_shape'").fetchone()
        if row is None:
            return None
        try:
            shape = json.loads(row[0])
            return tuple(int(v) for v in shape)
        except (ValueError, TypeError):
            raise ValueError(f"{self.name}: the stored image shape {row[0][:40]!r} is not a list of ints; "
                             f"the bank file is damaged") from None

    def backbone_weights(self) -> tuple:
        """``(blob, sha256)`` of the pre-trained weights."""
        with self._sql() as conn:
            row = conn.execute("SELECT weights, sha256 FROM backbone WHERE id = 1").fetchone()
        if row is None:
            raise ValueError(f"{self.name} is an incomplete metaprune bank: it holds no backbone weights")
        return row

    def task_ids(self) -> list:
        """All task ids, in insertion order."""
        with self._sql() as conn:
            return [r[0] for r in conn.execute("SELECT task_id FROM tasks ORDER BY seq")]

    def existing(self, task_ids: Iterable) -> set:
        """The subset of ``task_ids`` that is stored."""
        task_ids = list(task_ids)
        with self._sql() as conn:
            return {r[0] for r in select_in(conn, "SELECT task_id FROM tasks", task_ids)}

    def read(self, task_ids: Sequence | None = None, blobs: Sequence = ()) -> list:
        """Verified text columns (and raw blobs) of tasks, in one snapshot.

        Parameters
        ----------
        task_ids : sequence of str, optional
            Tasks to read, in the order wanted (repeats allowed); None reads every task in
            insertion order.
        blobs : sequence of {"weights", "prototypes"}
            Blob tables to fetch as well.

        Returns
        -------
        list of (TaskText, dict)
            The dict maps each name in ``blobs`` to the stored bytes (None for a task stored
            without prototypes). Blobs are not verified here: their digests are in the text.

        Raises
        ------
        KeyError
            If a task id is not stored.
        ValueError
            If a row does not match its digest (the file is damaged).
        """
        unknown = [b for b in blobs if b not in BLOB_TABLES]
        if unknown:
            raise ValueError(f"unknown blob tables {unknown}")
        columns = ", ".join(TEXT_COLUMNS)
        with self._read_transaction() as conn:
            if task_ids is None:
                rows = conn.execute(f"SELECT {columns}, digest FROM tasks ORDER BY seq").fetchall()
                wanted = [r[0] for r in rows]
            else:
                wanted = list(task_ids)
                unique = list(dict.fromkeys(wanted))
                rows = list(select_in(conn, f"SELECT {columns}, digest FROM tasks", unique))
            by_id = {r[0]: r for r in rows}
            missing = [t for t in dict.fromkeys(wanted) if t not in by_id]
            if missing:
                more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
                raise KeyError(f"no task {missing[0]!r} in the bank{more}")
            blob_values = {name: dict(select_in(conn, f"SELECT task_id, blob FROM {name}", list(by_id)))
                           for name in blobs}
        texts = {}
        for task_id, row in by_id.items():
            if row_digest(row[:-1]) != row[-1]:
                raise ValueError(f"{self.name}: the stored fields of task {task_id!r} do not match their "
                                 f"digest; the bank file is damaged or was modified outside metaprune")
            texts[task_id] = TaskText(*row[:-1])
        return [(texts[t], {name: blob_values[name].get(t) for name in blobs}) for t in wanted]

    def integrity_problems(self) -> list:
        """SQLite's own page-level check: an empty list when the file is sound."""
        with self._sql() as conn:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        return [] if result == ["ok"] else result

    # -- writes ---------------------------------------------------------------------------------
    def write(self, rows: Sequence, replace: bool = False, skip_existing: bool = False) -> list:
        """Store tasks in ONE transaction: all of them or, on any error, none.

        Parameters
        ----------
        rows : sequence of TaskRow
        replace : bool
            Overwrite stored tasks with the same id (they keep their position).
        skip_existing : bool
            Silently leave out rows whose id is already stored.

        Returns
        -------
        list of str
            Ids written.

        Raises
        ------
        ValueError
            If the bank is read-only, an id repeats, an id is stored already (and neither
            ``replace`` nor ``skip_existing``), or a row's label kind differs from the bank's.
        """
        rows = list(rows)
        ids = [r.task_id for r in rows]
        if len(set(ids)) != len(ids):
            repeated = sorted({t for t in ids if ids.count(t) > 1})
            raise ValueError(f"task ids repeat within one write: {repeated}")
        with self._write_transaction() as conn:
            return self._write_locked(conn, rows, replace, skip_existing)

    @contextmanager
    def _write_transaction(self, changes_tasks: bool = True):
        """One ``BEGIN IMMEDIATE`` transaction: committed whole, or rolled back on any error."""
        if self.read_only:
            raise ValueError(f"{self.name} was opened read-only; open it with read_only=False to add tasks")
        with self._sql() as conn:
            if conn.in_transaction:
                raise ValueError("cannot write to the bank inside a snapshot() block")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                if conn.in_transaction:  # the block may have rolled back itself
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if changes_tasks:
                self._writes += 1

    def _write_locked(self, conn, rows, replace, skip_existing) -> list:
        kind = conn.execute("SELECT value FROM meta WHERE key = 'label_kind'").fetchone()
        kind = None if kind is None else kind[0]
        for row in rows:
            if row.label_kind not in ("int", "str"):
                raise ValueError(f"task {row.task_id!r}: label kind must be 'int' or 'str', "
                                 f"got {row.label_kind!r}")
            if kind is None:
                kind = row.label_kind
                conn.execute("INSERT INTO meta (key, value) VALUES ('label_kind', ?)", (kind,))
            elif row.label_kind != kind:
                raise ValueError(f"task {row.task_id!r} has {row.label_kind} class labels but this bank's "
                                 f"labels are {kind}s (fixed by its first task); labels must be one global "
                                 f"kind of class id")
        _check_input_shape(conn, rows)
        existing = {r[0] for r in select_in(conn, "SELECT task_id FROM tasks", [r.task_id for r in rows])}
        if skip_existing:
            rows = [r for r in rows if r.task_id not in existing]
            existing = set()
        elif existing and not replace:
            raise ValueError(f"task(s) {sorted(existing)[:5]} are already in the bank; pass replace=True to "
                             f"overwrite, or use new task ids")
        created = now()
        texts = [row.text(created) for row in rows]
        values = [(*t.values(), t.digest()) for t in texts]
        new = [v for v in values if v[0] not in existing]
        old = [v for v in values if v[0] in existing]
        columns = ", ".join(TEXT_COLUMNS)
        conn.executemany(f"INSERT INTO tasks ({columns}, digest) VALUES ({placeholders(TEXT_COLUMNS)}, ?)", new)
        assignments = ", ".join(f"{c} = ?" for c in TEXT_COLUMNS[1:])
        conn.executemany(f"UPDATE tasks SET {assignments}, digest = ? WHERE task_id = ?",
                         [(*v[1:], v[0]) for v in old])
        conn.executemany("INSERT OR REPLACE INTO weights (task_id, blob) VALUES (?, ?)",
                         [(r.task_id, r.weights) for r in rows])
        conn.executemany("INSERT OR REPLACE INTO prototypes (task_id, blob) VALUES (?, ?)",
                         [(r.task_id, r.prototypes) for r in rows if r.prototypes is not None])
        conn.executemany("DELETE FROM prototypes WHERE task_id = ?",
                         [(r.task_id,) for r in rows if r.prototypes is None and r.task_id in existing])
        builds.release_claims(conn, [r.task_id for r in rows])
        return [r.task_id for r in rows]

    # -- builders (the SQL is in _storage_builds) ------------------------------------------------
    def begin_build(self, owner: str, designs: dict, alive) -> list:
        """Register a running build and the task design it builds, in one transaction.

        Returns the conflicts ``(task_id, recorded design, stored)``
        (:func:`._storage_builds.register_build`): empty when the build is registered;
        otherwise nothing was changed.
        """
        with self._write_transaction(changes_tasks=False) as conn:
            return builds.register_build(conn, owner, designs, alive)

    def claim(self, owner: str, task_id: str, alive) -> str:
        """Claim one task for a build: ``"claimed"``, ``"stored"`` (done already) or ``"busy"``
        (a live build is pruning it)."""
        with self._write_transaction(changes_tasks=False) as conn:
            return builds.claim_task(conn, owner, task_id, alive)

    def claims(self) -> dict:
        """Task id -> the build that claims it now (empty for a file no build has opened)."""
        with self._sql() as conn:
            return builds.current_claims(conn)

    def beat(self, owner: str) -> None:
        """Refresh a build's heartbeat."""
        with self._write_transaction(changes_tasks=False) as conn:
            builds.refresh_heartbeat(conn, owner)

    def end_build(self, owner: str) -> None:
        """Unregister a build and free the tasks it still claims (it stopped, finished or failed)."""
        with self._write_transaction(changes_tasks=False) as conn:
            builds.unregister_build(conn, owner)


def _check_input_shape(conn, rows) -> None:
    """Every task's image shape is the bank's, fixed by the first task that states one."""
    stored = conn.execute("SELECT value FROM meta WHERE key = 'input_shape'").fetchone()
    shape = None if stored is None else json.loads(stored[0])
    for row in rows:
        if row.input_shape is None:
            continue
        theirs = json.loads(row.input_shape)
        if shape is None:
            shape = theirs
            conn.execute("INSERT INTO meta (key, value) VALUES ('input_shape', ?)", (json.dumps(shape),))
        elif theirs != shape:
            raise ValueError(f"task {row.task_id!r} was pruned on images of shape {tuple(theirs)} but this "
                             f"bank's tasks use {tuple(shape)} (fixed by its first task); one bank serves "
                             f"one image size")
