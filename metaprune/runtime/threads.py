"""How many threads torch uses: chosen from the cores that are free, restored afterwards.

PyTorch's intra-op pool defaults to one thread per core. When another process keeps a core
busy, a pool of two threads on two cores waits at every operation for the thread that was
descheduled: SGD steps of a pruned network ran 3.6x slower than on a quiet machine with two
threads, but only 1.1x slower with one (``benchmarks/results/threads.md``). On a quiet
machine two threads are ~1.45x faster for training steps. So ``n_threads="auto"`` counts the
idle cores when a fit starts and uses that many (at least one), never more than the caller's
own setting (``torch.set_num_threads`` made by a notebook, a test or a benchmark is honoured).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from functools import wraps

import torch

__all__ = ["available_cores", "idle_cores", "resolve_threads", "torch_threads", "uses_threads"]

_SAMPLE_S = 0.05  # length of the /proc/stat sample
_CACHE_S = 2.0  # a decision is reused for this long (many small fits in a row)
_cache = {"time": -float("inf"), "idle": None}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times():
    with open("/proc/stat") as f:
        fields = [float(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]), idle


def idle_cores() -> float:
    """Idle cores right now: from a 50 ms sample of ``/proc/stat``, else the load average.

    Cached for two seconds, so a run of small fits does not pay the sample each time.
    """
    now = time.monotonic()
    if now - _cache["time"] < _CACHE_S:
        return _cache["idle"]
    cores = available_cores()
    try:
        total0, idle0 = _cpu_times()
        time.sleep(_SAMPLE_S)
        total1, idle1 = _cpu_times()
        share = (idle1 - idle0) / (total1 - total0) if total1 > total0 else 1.0
        idle = share * (os.cpu_count() or cores)
    except (OSError, ValueError, IndexError):
        try:
            idle = cores - os.getloadavg()[0]
        except OSError:
            idle = cores
    idle = float(min(cores, max(0.0, idle)))
    _cache.update(time=time.monotonic(), idle=idle)
    return idle


def resolve_threads(n_threads) -> int | None:
    """The thread count ``n_threads`` asks for.

    Parameters
    ----------
    n_threads : "auto", int or None
        ``"auto"``: the idle cores, rounded, at least 1 and at most torch's current
        setting; an int >= 1: that many; None: leave torch's setting alone (returns None).

    Raises
    ------
    ValueError
        For anything else.
    """
    if n_threads is None:
        return None
    if isinstance(n_threads, str) and n_threads == "auto":
        return max(1, min(torch.get_num_threads(), int(idle_cores() + 0.5)))
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be 'auto', a positive int or None, got {n_threads!r}")
    return n_threads


@contextmanager
def torch_threads(n_threads):
    """Run the block with torch's intra-op pool at ``resolve_threads(n_threads)`` threads.

    The caller's setting is restored afterwards, so no global side effect is left behind.
    Yields the number of threads used.
    """
    wanted = resolve_threads(n_threads)
    before = torch.get_num_threads()
    if wanted is None or wanted == before:
        yield before
        return
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)


def uses_threads(method):
    """Decorate an estimator method so it runs under ``torch_threads(self.n_threads)``."""
    @wraps(method)
    def wrapper(self, *args, **kwargs):
        with torch_threads(getattr(self, "n_threads", None)):
            return method(self, *args, **kwargs)
    return wrapper
