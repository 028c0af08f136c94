"""Reading metaprune's safetensors files: tensors plus a JSON header, never pickle."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_safetensors", "safetensors_format"]


def safetensors_format(path) -> str | None:
    """The ``format`` entry of a safetensors file's header, or None for any other file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception:  # safetensors raises its own error types for non-safetensors files
        return None


def read_safetensors(path, expected_format: str, what: str) -> tuple:
    """Load ``(header, tensors)`` of a metaprune safetensors file of the expected format.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is unreadable or damaged, or holds another format; the message says
        which ``what`` (e.g. "backbone") was expected.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises several error types for damaged files
        raise ValueError(f"{path} is not a readable safetensors {what} file: {exc}") from exc
    if header.get("format") != expected_format:
        raise ValueError(f"{path} is not a metaprune {what} file (format={header.get('format')!r})")
    return header, state
