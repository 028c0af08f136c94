"""Editing the header of safetensors bytes, to make damaged files in tests."""

import json
import struct


def split(blob: bytes):
    """``(header, data)`` of safetensors bytes: the JSON header as a dict, then the tensor bytes."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header: dict, data: bytes) -> bytes:
    """Safetensors bytes of a header dict and tensor bytes (header padded to 8 bytes, as safetensors does)."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def rewrite(blob: bytes, path, **changes):
    """Write ``blob`` to ``path`` with header entries changed: ``key=function(decoded JSON) -> new value``."""
    header, data = split(blob)
    meta = dict(header["__metadata__"])
    for key, change in changes.items():
        meta[key] = json.dumps(change(json.loads(meta[key])))
    path.write_bytes(join({**header, "__metadata__": meta}, data))
    return path
