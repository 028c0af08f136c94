"""SQL helpers shared by the bank's storage modules: chunked ``IN`` queries, table checks, errors.

These are the few statements :mod:`._storage` (tasks) and :mod:`._storage_builds`
(concurrent builds) both need, and the one rule that turns SQLite's errors into clear
messages. Nothing here knows the bank's tables beyond their names.
"""

from __future__ import annotations

import sqlite3

__all__ = ["CHUNK", "select_in", "placeholders", "has_table", "raise_translated"]

CHUNK = 500  # ids per "IN (...)" query, well below SQLite's variable limit


def select_in(conn, select: str, task_ids: list):
    """Rows of ``select ... WHERE task_id IN (task_ids)``, a few hundred ids per query.

    Parameters
    ----------
    conn : sqlite3.Connection
    select : str
        A ``SELECT ... FROM table`` statement without a ``WHERE`` clause.
    task_ids : list of str

    Yields
    ------
    tuple
        The rows, chunk by chunk (in no particular order).
    """
    for start in range(0, len(task_ids), CHUNK):
        chunk = task_ids[start:start + CHUNK]
        yield from conn.execute(f"{select} WHERE task_id IN ({placeholders(chunk)})", chunk)


def placeholders(items) -> str:
    """``"?, ?, ..."``: one SQL parameter mark per item."""
    return ", ".join("?" * len(items))


def has_table(conn, name: str) -> bool:
    """Whether the database has a table called ``name``."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def raise_translated(exc: sqlite3.Error, name: str):
    """Raise a clear ValueError for a damaged or foreign file; locking and I/O problems pass through.

    Parameters
    ----------
    exc : sqlite3.Error
        The error SQLite raised.
    name : str
        The bank file (or ``":memory:"``), for the message.

    Raises
    ------
    sqlite3.Error
        ``exc`` itself for misuse (:class:`sqlite3.ProgrammingError`) and transient
        problems (locked, busy, read-only, unopenable, I/O, full disk, closed).
    ValueError
        For every other error: the file is damaged or is not a bank.
    """
    message = str(exc).lower()
    transient = ("locked", "busy", "readonly", "read-only", "unable to open", "disk i/o", "full", "closed")
    if isinstance(exc, sqlite3.ProgrammingError) or (isinstance(exc, sqlite3.OperationalError)
                                                       and any(s in message for s in transient)):
        raise exc
    raise ValueError(f"{name} is damaged or is not a metaprune bank (SQLite: {exc})") from exc
