"""The SQL of concurrent builds: registering builders, recording task designs, claiming tasks.

Every function runs on a connection inside a write transaction that the caller holds
(:meth:`~._storage.BankStorage.begin_build` and its neighbours open it), so each step is
atomic across processes. The tables are ``designs``, ``builders`` and ``claims`` (see
:mod:`._schema`); who counts as alive is the caller's rule (:func:`._builders.is_alive`).
"""

from __future__ import annotations

import time

from ._schema import BUILD_SCHEMA
from ._sql import has_table, select_in

__all__ = ["register_build", "claim_task", "current_claims", "refresh_heartbeat", "unregister_build",
           "release_claims"]


def register_build(conn, owner: str, designs: dict, alive) -> list:
    """Record a build and its task design unless it conflicts with the recorded one.

    Parameters
    ----------
    conn : sqlite3.Connection
        Inside a write transaction; rolled back here when there are conflicts.
    owner : str
        The build's identity (:class:`~._builders.Builder` as text).
    designs : dict of str to str
        Task id -> the JSON text describing that task (its classes and images).
    alive : callable
        ``alive(owner, heartbeat) -> bool``, the liveness rule of builders.

    Returns
    -------
    list of (str, str, bool)
        The conflicts: ``(task_id, recorded design, stored)`` for each id recorded with
        another design that is stored, or that a live build may be working on. Empty when
        the build is registered.
    """
    for statement in BUILD_SCHEMA:
        conn.execute(statement)
    others = _live_builders(conn, alive)
    recorded = dict(select_in(conn, "SELECT task_id, design FROM designs", list(designs)))
    stored = {r[0] for r in select_in(conn, "SELECT task_id FROM tasks", list(recorded))}
    conflicts = [(t, d, t in stored) for t, d in recorded.items()
                 if d != designs[t] and (t in stored or others)]
    if conflicts:
        conn.execute("ROLLBACK")
        return conflicts
    conn.executemany("INSERT OR REPLACE INTO designs (task_id, design) VALUES (?, ?)", list(designs.items()))
    refresh_heartbeat(conn, owner)
    return []


def _live_builders(conn, alive) -> set:
    """The live builders; dead ones and their claims are removed."""
    rows = conn.execute("SELECT owner, heartbeat FROM builders").fetchall()
    dead = [(owner,) for owner, beat in rows if not alive(owner, beat)]
    conn.executemany("DELETE FROM builders WHERE owner = ?", dead)
    conn.execute("DELETE FROM claims WHERE owner NOT IN (SELECT owner FROM builders)")
    return {owner for owner, _ in rows} - {owner for owner, in dead}


def claim_task(conn, owner: str, task_id: str, alive) -> str:
    """Claim one task for a build.

    Returns
    -------
    str
        ``"claimed"``, ``"stored"`` (done already) or ``"busy"`` (a live build is pruning it).
    """
    if conn.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,)).fetchone():
        return "stored"
    _live_builders(conn, alive)
    holder = conn.execute("SELECT owner FROM claims WHERE task_id = ?", (task_id,)).fetchone()
    if holder is not None and holder[0] != owner:
        return "busy"
    conn.execute("INSERT OR REPLACE INTO claims (task_id, owner) VALUES (?, ?)", (task_id, owner))
    refresh_heartbeat(conn, owner)
    return "claimed"


def current_claims(conn) -> dict:
    """Task id -> the build that claims it now (empty for a file no build has opened)."""
    if not has_table(conn, "claims"):
        return {}
    return dict(conn.execute("SELECT task_id, owner FROM claims"))


def refresh_heartbeat(conn, owner: str) -> None:
    """Stamp a build's heartbeat with the current time (registering it if need be)."""
    conn.execute("INSERT OR REPLACE INTO builders (owner, heartbeat) VALUES (?, ?)", (owner, time.time()))


def unregister_build(conn, owner: str) -> None:
    """Remove a build and free the tasks it still claims."""
    conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))
    conn.execute("DELETE FROM builders WHERE owner = ?", (owner,))


def release_claims(conn, task_ids) -> None:
    """Free the claims on tasks that were just stored (nothing for a file no build has opened)."""
    if has_table(conn, "claims"):
        conn.executemany("DELETE FROM claims WHERE task_id = ?", [(t,) for t in task_ids])
