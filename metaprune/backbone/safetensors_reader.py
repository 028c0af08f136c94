"""Reading metaprune's safetensors files: tensors plus a JSON header, never pickle.

A file is read in two steps so that nothing is allocated for a damaged one:
:func:`read_header` returns the header and the shape of every tensor without reading any
tensor data; the caller checks those against the architecture the header describes, and
only then :func:`read_tensors` loads the weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

__all__ = ["read_header", "read_tensors", "header_json", "state_mismatch", "safetensors_format"]

_REQUIRED = object()


def safetensors_format(path) -> str | None:
    """The ``format`` entry of a safetensors file's header, or None for any other file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception:  # safetensors raises its own error types for non-safetensors files
        return None


def read_header(path, expected_format: str, what: str) -> tuple:
    """The header and tensor shapes of a metaprune safetensors file; reads no tensor data.

    Parameters
    ----------
    path : str or path-like
    expected_format : str
        The header's ``format`` entry the file must have (e.g. ``"metaprune.backbone"``).
    what : str
        What the file should be, for messages (e.g. ``"backbone"``).

    Returns
    -------
    header : dict of str to str
        The safetensors metadata (JSON text values).
    shapes : dict of str to tuple of int
        Shape of every tensor in the file, as its header states it.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is unreadable or damaged, or holds another format.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            shapes = {name: tuple(int(n) for n in f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as exc:  # safetensors raises several error types for damaged files
        raise ValueError(f"{path} is not a readable safetensors {what} file: {exc}") from None
    if header.get("format") != expected_format:
        raise ValueError(f"{path} is not a metaprune {what} file (format={header.get('format')!r})")
    return header, shapes


def read_tensors(path, what: str) -> dict:
    """All tensors of a safetensors file, on the CPU (call after checking :func:`read_header`'s shapes).

    Raises
    ------
    ValueError
        If the tensor data cannot be read.
    """
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises several error types for damaged files
        raise ValueError(f"{path} is not a readable safetensors {what} file: {exc}") from None


def header_json(header: Mapping, key: str, path, default=_REQUIRED):
    """Parse the JSON text of one header entry, or raise a ValueError naming the file and the entry.

    Parameters
    ----------
    header : mapping of str to str
        From :func:`read_header`.
    key : str
        The entry.
    path : str or path-like
        The file, for messages.
    default : optional
        Returned when the entry is absent; without it a missing entry is an error.
    """
    if key not in header:
        if default is _REQUIRED:
            raise ValueError(f"{path}: the header has no {key!r} entry (damaged file)")
        return default
    try:
        return json.loads(header[key])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: the header entry {key!r} is not valid JSON ({exc})") from None


def state_mismatch(expected: Mapping, found: Mapping) -> str | None:
    """The first difference between two descriptions of a state dict, as a phrase; None if they agree.

    Parameters
    ----------
    expected, found : mapping of str to object
        Entry name -> its description (a shape tuple, or a string such as
        ``"torch.float32 (8, 3, 3, 3)"``); descriptions are compared with ``==``.

    Returns
    -------
    str or None
        ``"missing [...], unexpected [...]"`` when the names differ, else
        ``"<name> is <found>, expected <expected>"`` for the first differing entry.

    Examples
    --------
    >>> state_mismatch({"w": (2, 3)}, {"w": (2, 4)})
    'w is (2, 4), expected (2, 3)'
    >>> state_mismatch({"w": (2, 3)}, {"w": (2, 3)}) is None
    True
    """
    if set(expected) != set(found):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        return f"missing {missing[:5]}, unexpected {extra[:5]}"
    for name, description in expected.items():
        if found[name] != description:
            return f"{name} is {found[name]}, expected {description}"
    return None
