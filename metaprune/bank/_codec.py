"""How a bank encodes what it stores: tensors as safetensors bytes, everything else as JSON.

Nothing here unpickles. Tensors are written with :func:`safetensors.torch.save` (a JSON
header and raw little-endian buffers) and read back with :func:`safetensors.torch.load`;
all other values are JSON. Every blob travels with its SHA-256, checked before it is
parsed, so damaged bytes are reported instead of silently turning into wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping

import numpy as np

from ..data.labels import decode_labels, encode_labels  # the label codec, shared by every file format

__all__ = ["sha256_hex", "encode_tensors", "decode_tensors", "dumps", "loads", "json_safe",
           "encode_labels", "decode_labels"]


def sha256_hex(data) -> str:
    """Hex SHA-256 of ``data`` (bytes, or a str encoded as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def encode_tensors(tensors: Mapping) -> bytes:
    """Serialise a mapping of name -> tensor to safetensors bytes (CPU, contiguous copies).

    Parameters
    ----------
    tensors : mapping of str to torch.Tensor

    Returns
    -------
    bytes
    """
    from safetensors.torch import save

    return save({str(k): v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()})


def decode_tensors(blob, expected_sha256: str, what: str) -> dict:
    """Check a blob against its SHA-256 and parse it as safetensors; never unpickles.

    Parameters
    ----------
    blob : bytes
        Stored bytes.
    expected_sha256 : str
        The digest stored next to the blob.
    what : str
        What the blob is, for error messages (e.g. ``"weights of task 't-01'"``).

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    ValueError
        If the bytes do not match their digest or are not a safetensors payload.
    """
    from safetensors.torch import load

    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValueError(f"the {what} are stored as {type(blob).__name__}, not as safetensors bytes")
    blob = bytes(blob)
    if sha256_hex(blob) != expected_sha256:
        raise ValueError(f"the {what} do not match their stored SHA-256: the bank file is damaged "
                         f"or was modified outside metaprune")
    try:
        return load(blob)
    except Exception as exc:  # safetensors raises several error types for malformed payloads
        raise ValueError(f"the {what} are not a valid safetensors payload ({type(exc).__name__}: {exc}); "
                         f"the bank file is damaged or was modified outside metaprune") from None


def json_safe(value):
    """A JSON-serialisable version of ``value``.

    numpy scalars and arrays become Python numbers and lists, tuples become lists, mapping
    keys become strings, non-finite floats become None, and anything else (an estimator, a
    random generator...) becomes its ``repr``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return repr(value)


def dumps(value) -> str:
    """Compact JSON text of a JSON-safe ``value`` (key order kept; NaN refused)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def loads(text, what: str):
    """Parse stored JSON text, or raise a ValueError naming ``what``."""
    if not isinstance(text, str):
        raise ValueError(f"the {what} is stored as {type(text).__name__}, not as JSON text")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"the {what} is not valid JSON ({exc}); the bank file is damaged") from None
