"""Task files: the JSON task lists ``metaprune build-bank`` reads (``--tasks``) and writes.

:func:`write_tasks` writes them (``--write-tasks``), :func:`read_tasks` reads them back.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data.tasks import Task

__all__ = ["read_tasks", "write_tasks"]


def read_tasks(path) -> list:
    """Read a task list written by :func:`write_tasks` (or a bare JSON list of task dicts).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    list of metaprune.data.tasks.Task

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not JSON, holds no task, or a task is malformed (its ``classes``,
        ``train_index`` and ``test_index`` must be lists of integers).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no task file at {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"{path} is not a JSON task list ({reason})") from None
    items = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise ValueError(f"{path} must hold a list of tasks (objects with task_id, classes, train_index, "
                         f"test_index), or an object with such a list under 'tasks'")
    if not items:
        raise ValueError(f"{path} holds no tasks")
    for number, item in enumerate(items):
        for key in ("classes", "train_index", "test_index"):
            if key in item and not _is_int_list(item[key]):
                task = str(item.get("task_id"))[:40]
                raise ValueError(f"{path}: task {number} ({task!r}): {key!r} must be a list of integers, "
                                 f"got {json.dumps(item[key])[:60]}")
    try:
        return [Task.from_dict(t) for t in items]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _is_int_list(value) -> bool:
    """Whether ``value`` is a list of ints that fit in int64 (bools are not ints here)."""
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63 for v in value)


def write_tasks(path, tasks, **info) -> None:
    """Write tasks as JSON: ``{**info, "tasks": [task.to_dict(), ...]}``.

    Parameters
    ----------
    path : str or path-like
    tasks : iterable of metaprune.data.tasks.Task
    **info
        JSON-serialisable context stored next to the tasks (e.g. the data set).
    """
    Path(path).write_text(json.dumps({**info, "tasks": [t.to_dict() for t in tasks]}))
