"""Stopping a long job cleanly: SIGTERM behaves as Ctrl-C.

Every fit in metaprune stops on ``KeyboardInterrupt`` without storing or returning a
half-trained result (:func:`metaprune.pruners.engine.fit_for_iterations` raises it through skorch's
loop; a bank keeps the tasks that finished; pre-training keeps its last checkpoint). A job
stopped by ``kill``, a scheduler's time limit or ``docker stop`` gets SIGTERM instead, whose
default action ends the process at once. :func:`terminate_as_interrupt` turns SIGTERM into the
same ``KeyboardInterrupt`` for the duration of a block, so both end a job the same clean way.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["terminate_as_interrupt"]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


@contextmanager
def terminate_as_interrupt():
    """While the block runs, SIGTERM raises ``KeyboardInterrupt`` in the main thread.

    Also makes SIGINT raise ``KeyboardInterrupt`` where the process started with it ignored
    (a background job of a non-interactive shell). The previous handlers come back on exit.
    Outside the main thread (where Python cannot set handlers) it does nothing.

    Examples
    --------
    >>> import os, signal
    >>> with terminate_as_interrupt():
    ...     try:
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ...     except KeyboardInterrupt as exc:
    ...         print(exc)
    stopped by signal SIGTERM
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if previous[signal.SIGINT] in (signal.SIG_IGN, signal.SIG_DFL, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
