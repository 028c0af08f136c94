"""The file and folder arguments of the command line: checked before any work, prepared for writing.

A file to read must not be a folder (:func:`check_input_file`); a file or folder to write must
be writable, missing parent folders being fine (:func:`check_output_path`); an output must not
be one of the inputs (:func:`check_not_input`). When the work is done, the jobs write their
files at :func:`with_parent_folders` of the path.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_input_file", "check_output_path", "check_not_input", "with_parent_folders"]


def check_input_file(path, what=None) -> Path:
    """Refuse a folder where a file is read.

    A missing file is left to the reader, whose message names the kind of file expected.

    Parameters
    ----------
    path : str or path-like
    what : str, optional
        The kind of file, for the message (e.g. ``"backbone"``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``path`` is empty or an existing folder.
    """
    if not str(path):
        raise ValueError("the path is empty")
    checked = Path(path).expanduser()
    if checked.is_dir():
        raise ValueError(f"{path} is a folder, not a {what + ' ' if what else ''}file")
    return checked


def check_output_path(path, kind="file") -> Path:
    """Check, before any work, that a file or folder can be written at ``path``.

    Missing parent folders are fine (the writers create them); a folder where a file is to
    be written, a file where a folder is to be made, or a file among the parents is not.

    Parameters
    ----------
    path : str or path-like
    kind : {"file", "folder"}, default="file"
        What is written at ``path``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``path`` is empty, or nothing of that kind can be written there.
    """
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    if not str(path):
        raise ValueError("the path is empty")
    checked = Path(path).expanduser()
    if kind == "file" and checked.is_dir():
        raise ValueError(f"{path} is a folder; give the path of the file to write")
    if kind == "folder" and checked.exists() and not checked.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    for parent in checked.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    return checked


def check_not_input(out, inputs) -> None:
    """Refuse an output path that is one of the input files (writing it would destroy that input).

    Parameters
    ----------
    out : str or path-like
        The file to write.
    inputs : iterable of (path or None, str)
        The input files and what they are, for the message (e.g. ``(path, "backbone")``).

    Raises
    ------
    ValueError
        If ``out`` is an existing file that is one of ``inputs``.
    """
    out = Path(out).expanduser()
    if not out.is_file():
        return
    for source, what in inputs:
        source = None if source is None else Path(source).expanduser()
        if source is not None and source.is_file() and os.path.samefile(out, source):
            raise ValueError(f"the output {out} is the {what} file given: writing it would overwrite the "
                             f"{what}; give another --out")


def with_parent_folders(path):
    """``path`` as a :class:`~pathlib.Path`, its missing parent folders created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
