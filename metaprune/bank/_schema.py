"""The bank file's layout: its tables, the rows they hold, and how a bank file is made and recognised.

Layout (schema version 1)::

    meta(key, value)                 format, schema_version, fingerprint, spec, filter_space,
                                     label_kind (set by the first task), created, metaprune_version
    backbone(id = 1, weights, sha256) pre-trained weights, safetensors bytes
    tasks(seq, task_id, classes, selection, metrics, config, estimator, backbone_fingerprint,
          created, weights_sha256, prototypes_sha256, digest)     JSON / text, insertion order = seq
    weights(task_id, blob)           pruned state dict (incl. BatchNorm statistics and head)
    prototypes(task_id, blob)        class prototypes (absent for a task stored without)
    designs(task_id, design)         the task each id was built for (JSON), recorded by builds
    builders(owner, heartbeat)       running builds ("host:pid:token") and their last heartbeat
    claims(task_id, owner)           tasks a running build is pruning now

The last three tables coordinate builders (:mod:`._storage_builds`); a file made before they
existed gets them when a build first opens it (older metaprune versions ignore them).

Small text columns and large blobs live in separate tables, so scanning every task's
classes never reads a weight page. ``digest`` is the SHA-256 of a row's text columns
(which include the blobs' digests) and is checked on every read.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone

from ._codec import sha256_hex
from ._sql import raise_translated

__all__ = ["SCHEMA_VERSION", "FORMAT", "BLOB_TABLES", "BUILD_SCHEMA", "TEXT_COLUMNS", "TaskText", "TaskRow",
           "row_digest", "now", "initialise_if_empty", "check_bank"]

SCHEMA_VERSION = 1
FORMAT = "metaprune.bank"
_REQUIRED_META = ("format", "schema_version", "fingerprint", "spec", "filter_space")
_TABLES = ("meta", "backbone", "tasks", "weights", "prototypes")
BLOB_TABLES = ("weights", "prototypes")  # the tables of task blobs, by the names reads use
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE backbone (
        id INTEGER PRIMARY KEY CHECK (id = 1), weights BLOB NOT NULL, sha256 TEXT NOT NULL)""",
    """CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL UNIQUE,
        classes TEXT NOT NULL,
        selection TEXT NOT NULL,
        metrics TEXT NOT NULL,
        config TEXT NOT NULL,
        estimator TEXT NOT NULL,
        backbone_fingerprint TEXT NOT NULL,
        created TEXT NOT NULL,
        weights_sha256 TEXT NOT NULL,
        prototypes_sha256 TEXT,
        digest TEXT NOT NULL)""",
    "CREATE TABLE weights (task_id TEXT PRIMARY KEY, blob BLOB NOT NULL)",
    "CREATE TABLE prototypes (task_id TEXT PRIMARY KEY, blob BLOB NOT NULL)",
)
BUILD_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS designs (task_id TEXT PRIMARY KEY, design TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS builders (owner TEXT PRIMARY KEY, heartbeat REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (task_id TEXT PRIMARY KEY, owner TEXT NOT NULL)",
)


@dataclass(frozen=True)
class TaskText:
    """The text columns of one stored task (verified against their digest).

    All JSON values are still text; :mod:`metaprune.bank._records` decodes them.
    """

    task_id: str
    classes: str
    selection: str
    metrics: str
    config: str
    estimator: str
    backbone_fingerprint: str
    created: str
    weights_sha256: str
    prototypes_sha256: str | None

    def values(self) -> tuple:
        """The columns, in table order."""
        return tuple(getattr(self, name) for name in TEXT_COLUMNS)

    def digest(self) -> str:
        """SHA-256 of all columns (the value stored in ``tasks.digest``)."""
        return row_digest(self.values())


TEXT_COLUMNS = tuple(f.name for f in fields(TaskText))  # the tasks table's columns but seq and digest


def row_digest(values: Sequence) -> str:
    """SHA-256 of text values, each length-prefixed (so no two different rows encode alike)."""
    return sha256_hex("".join("-," if v is None else f"{len(v)}:{v}," for v in values))


@dataclass(frozen=True)
class TaskRow:
    """One task, encoded: JSON text and safetensors bytes, ready to be written.

    This is what pruning workers return to the process that writes the bank (plain
    strings and bytes, cheap to send between processes).
    """

    task_id: str
    label_kind: str
    classes: str
    selection: str
    metrics: str
    config: str
    estimator: str
    backbone_fingerprint: str
    weights: bytes
    weights_sha256: str
    prototypes: bytes | None = None
    prototypes_sha256: str | None = None
    input_shape: str | None = None  # JSON [C, H, W] of the images it was pruned on

    def text(self, created: str) -> TaskText:
        """The row's text columns, stamped with its write time."""
        return TaskText(self.task_id, self.classes, self.selection, self.metrics, self.config, self.estimator,
                        self.backbone_fingerprint, created, self.weights_sha256, self.prototypes_sha256)


def now() -> str:
    """The current UTC time, ISO 8601 with microseconds (the ``created`` stamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _switch_to_wal(conn, timeout: float = 60.0) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the file.

    SQLite does not wait on its busy timeout for a journal-mode change: two processes creating
    one bank at once saw "database is locked" here (seen in CI with two concurrent builders).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def initialise_if_empty(conn, name: str, meta: dict, backbone_weights: bytes, wal: bool) -> None:
    """Create the schema, meta and backbone in one transaction when the database has no table.

    Parameters
    ----------
    conn : sqlite3.Connection
        An autocommit connection.
    name : str
        The file (or ``":memory:"``), for messages.
    meta : dict of str to str
        The bank's meta values besides format, schema version and creation time.
    backbone_weights : bytes
        The pre-trained weights (safetensors).
    wal : bool
        Switch the file to the WAL journal first.

    Raises
    ------
    ValueError
        If the database is damaged.
    """
    try:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            return
        if wal:
            _switch_to_wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:  # created meanwhile
                conn.execute("ROLLBACK")
                return
            for statement in (*_SCHEMA, *BUILD_SCHEMA):
                conn.execute(statement)
            rows = {"format": FORMAT, "schema_version": str(SCHEMA_VERSION), "created": now(), **meta}
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                             [(k, str(v)) for k, v in rows.items()])
            conn.execute("INSERT INTO backbone (id, weights, sha256) VALUES (1, ?, ?)",
                         (backbone_weights, sha256_hex(backbone_weights)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise_translated(exc, name)


def check_bank(conn, name: str) -> dict:
    """The meta values of a bank database, once its format, schema version and tables are checked.

    Parameters
    ----------
    conn : sqlite3.Connection
    name : str
        The file (or ``":memory:"``), for messages.

    Returns
    -------
    dict of str to str

    Raises
    ------
    ValueError
        If the database is not a bank, has another schema version, or lacks tables or meta values.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        what = f"an SQLite database with tables {sorted(tables)}" if tables else "an empty database"
        raise ValueError(f"{name} is not a metaprune bank: it is {what} without a 'meta' table")
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{name} is not a metaprune bank (meta format is {meta.get('format')!r}, "
                         f"expected {FORMAT!r})")
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise ValueError(f"{name} has bank schema version {meta.get('schema_version')!r}; this "
                         f"version of metaprune reads schema version {SCHEMA_VERSION} only (upgrade "
                         f"metaprune, or rebuild the bank)")
    missing = [k for k in _REQUIRED_META if k not in meta] + [t for t in _TABLES if t not in tables]
    if missing:
        raise ValueError(f"{name} is an incomplete metaprune bank: it lacks {missing}")
    return meta
