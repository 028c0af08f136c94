"""Who is building a bank: builder identities, liveness and the heartbeat that proves it.

Several processes (on one machine, or on machines sharing the file) may build one bank file
at once. Each running :meth:`PrunedModelBank.build` registers a *builder* in the file and
claims a task before it prunes it, so no two builders do one task's work. A builder proves it
is alive by a heartbeat (a time stamp it refreshes every :data:`HEARTBEAT_S` seconds); a
builder whose heartbeat is older than :data:`LEASE_S`, or whose process on this machine has
ended (a build killed with ``kill -9``), is dead, and its claims are free again.

This module holds the pure parts (identity, the liveness rule) and the heartbeat thread; the
SQL lives in :mod:`._storage_builds`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["LEASE_S", "HEARTBEAT_S", "Builder", "BuildSummary", "is_alive", "heartbeat"]

LEASE_S = 120.0  # a builder silent for this long is dead
HEARTBEAT_S = 15.0  # how often a live builder says so


@dataclass(frozen=True)
class Builder:
    """One running build: the machine, the process and a token unique to the build.

    ``str(builder)`` (``"host:pid:token"``) is what the bank file stores.
    """

    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> "Builder":
        """A new identity for a build started by this process."""
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])

    @classmethod
    def parse(cls, text: str) -> "Builder | None":
        """The builder stored as ``text``, or None when it is not one (then it counts as dead)."""
        host, _, rest = str(text).rpartition(":")
        host, _, pid = host.rpartition(":")
        if not host or not pid.isdigit() or not rest:
            return None
        return cls(host, int(pid), rest)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


def is_alive(owner: str, beat: float, now: float | None = None, lease: float = LEASE_S) -> bool:
    """Whether the builder stored as ``owner``, whose last heartbeat was at ``beat`` (Unix
    time), may still be working.

    Dead when its heartbeat is older than ``lease`` seconds, or when it ran on this machine and
    its process no longer exists. A builder on another machine is judged by its heartbeat only.

    Examples
    --------
    >>> me = str(Builder.this_process())
    >>> is_alive(me, time.time()), is_alive(me, time.time() - 2 * LEASE_S)
    (True, False)
    """
    now = time.time() if now is None else now
    builder = Builder.parse(owner)
    if builder is None or not now - float(beat) < lease:
        return False
    if builder.host == socket.gethostname():
        return _process_exists(builder.pid)
    return True


@contextmanager
def heartbeat(beat, every: float = HEARTBEAT_S):
    """Call ``beat()`` every ``every`` seconds in a daemon thread while the block runs.

    A failing beat (a busy or vanished file) is retried at the next tick; the build itself
    reports real errors.
    """
    stop = threading.Event()

    def loop():
        while not stop.wait(every):
            try:
                beat()
            except Exception:  # noqa: BLE001 - the next tick retries; the build reports real errors
                pass

    thread = threading.Thread(target=loop, name="metaprune-bank-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)


@dataclass(frozen=True)
class BuildSummary:
    """What one :meth:`~metaprune.bank.PrunedModelBank.build` call did, task by task.

    Attributes
    ----------
    added : tuple of str
        Tasks this build pruned and stored.
    already_stored : tuple of str
        Tasks it found stored (before it started, or stored meanwhile by another build).
    left_to_others : tuple of str
        Tasks another live build was pruning when this one finished; they are that build's
        to store (re-run the build to finish any it abandons).
    """

    added: tuple = ()
    already_stored: tuple = ()
    left_to_others: tuple = ()
