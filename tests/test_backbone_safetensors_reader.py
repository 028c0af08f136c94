"""The checked safetensors reader: header and shapes first (no tensor data), tensors after,
and a ValueError naming the file for anything damaged or of another format."""

import json
import random
import re
import struct

import pytest
import safetensors
import torch
from safetensors.torch import save_file

from _safetensors import join, split
from metaprune.backbone.safetensors_reader import (header_json, read_header, read_tensors, safetensors_format,
                                                   state_mismatch)

FORMAT = "metaprune.test"
TENSORS = {"conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
           "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
           "fc.bias": torch.tensor([0.5, -1.5], dtype=torch.float16)}
METADATA = {"format": FORMAT, "spec": json.dumps({"width": 2, "blocks": [2, 2]}), "note": "plain text"}


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(TENSORS, str(path), metadata=METADATA)
    return path


def test_round_trip_of_header_shapes_and_tensors(saved):
    header, shapes = read_header(saved, FORMAT, "test")
    assert header == METADATA
    assert shapes == {"conv.weight": (2, 3, 2, 2), "bn.num_batches_tracked": (), "fc.bias": (2,)}
    assert all(type(n) is int for shape in shapes.values() for n in shape)
    tensors = read_tensors(saved, "test")
    assert tensors.keys() == TENSORS.keys()
    for name, tensor in TENSORS.items():
        assert tensors[name].dtype == tensor.dtype and tensors[name].device.type == "cpu"
        assert torch.equal(tensors[name], tensor)
    assert header_json(header, "spec", saved) == {"width": 2, "blocks": [2, 2]}
    assert read_header(str(saved), FORMAT, "test") == (header, shapes)  # str paths too


def test_safetensors_format(saved, tmp_path):
    assert safetensors_format(saved) == FORMAT
    assert safetensors_format(str(saved)) == FORMAT
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(bare))
    assert safetensors_format(bare) is None  # no metadata
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a safetensors file at all")
    assert safetensors_format(junk) is None
    assert safetensors_format(tmp_path / "absent.safetensors") is None
    assert safetensors_format(tmp_path) is None  # a directory


def test_read_header_reads_no_tensor_data(saved, monkeypatch):
    """Only the header, the names and the slices' shapes are asked for (slicing or get_tensor reads data)."""
    calls = []
    real_safe_open = safetensors.safe_open

    class Slice:
        def __init__(self, inner):
            self.inner = inner

        def get_shape(self):
            calls.append("get_shape")
            return self.inner.get_shape()

        def __getattr__(self, name):
            raise AssertionError(f"read_header used the slice's {name}")

        def __getitem__(self, index):
            raise AssertionError("read_header read tensor data")

    class Opened:
        def __init__(self, *args, **kwargs):
            self.inner = real_safe_open(*args, **kwargs)

        def __enter__(self):
            self.file = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def metadata(self):
            calls.append("metadata")
            return self.file.metadata()

        def keys(self):
            calls.append("keys")
            return self.file.keys()

        def get_slice(self, name):
            calls.append("get_slice")
            return Slice(self.file.get_slice(name))

        def __getattr__(self, name):
            raise AssertionError(f"read_header called {name}")

    monkeypatch.setattr(safetensors, "safe_open", Opened)
    _, shapes = read_header(saved, FORMAT, "test")
    assert shapes["conv.weight"] == (2, 3, 2, 2)
    assert sorted(set(calls)) == ["get_shape", "get_slice", "keys", "metadata"]
    assert calls.count("get_shape") == len(TENSORS)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no backbone file at .*absent.safetensors"):
        read_header(tmp_path / "absent.safetensors", FORMAT, "backbone")
    with pytest.raises(FileNotFoundError, match="no backbone file at"):
        read_header(tmp_path, FORMAT, "backbone")
    with pytest.raises(ValueError, match="is not a readable safetensors backbone file"):
        read_tensors(tmp_path / "absent.safetensors", "backbone")


def test_another_format_is_refused_naming_it(saved, tmp_path):
    with pytest.raises(ValueError, match=r"is not a metaprune pruned-model file \(format='metaprune.test'\)"):
        read_header(saved, "metaprune.pruned", "pruned-model")
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(bare))
    with pytest.raises(ValueError, match=r"is not a metaprune backbone file \(format=None\)"):
        read_header(bare, FORMAT, "backbone")


@pytest.mark.parametrize("damage", [
    pytest.param(lambda blob: blob[:-1], id="last-byte-cut"),
    pytest.param(lambda blob: blob[:8 + struct.unpack("<Q", blob[:8])[0]], id="data-section-cut"),
    pytest.param(lambda blob: blob[:8 + struct.unpack("<Q", blob[:8])[0] - 3], id="header-cut"),
    pytest.param(lambda blob: blob[:4], id="length-cut"),
    pytest.param(lambda blob: b"", id="empty"),
    pytest.param(lambda blob: blob + b"\0" * 8, id="trailing-bytes"),
    pytest.param(lambda blob: random.Random(0).randbytes(len(blob)), id="random-bytes"),
    pytest.param(lambda blob: struct.pack("<Q", 2) + b"{\"", id="invalid-json"),
])
def test_damaged_files_are_value_errors_naming_the_file(saved, tmp_path, damage):
    """safetensors checks the data section's length against the header, so truncation is caught
    by ``read_header`` itself, before any tensor is read."""
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(damage(saved.read_bytes()))
    message = re.escape(f"{damaged} is not a readable safetensors backbone file: ")
    with pytest.raises(ValueError, match=message):
        read_header(damaged, FORMAT, "backbone")
    with pytest.raises(ValueError, match=message):
        read_tensors(damaged, "backbone")
    assert safetensors_format(damaged) is None


@pytest.mark.parametrize("edit", [
    pytest.param(lambda h: h["conv.weight"].update(shape=[100]), id="shape-beyond-data"),
    pytest.param(lambda h: h["conv.weight"].update(dtype="F64"), id="dtype-beyond-data"),
    pytest.param(lambda h: h["__metadata__"].update(format=5), id="non-text-metadata"),
])
def test_inconsistent_headers_are_value_errors(saved, tmp_path, edit):
    header, data = split(saved.read_bytes())
    edit(header)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(join(header, data))
    with pytest.raises(ValueError, match="is not a readable safetensors backbone file"):
        read_header(damaged, FORMAT, "backbone")


def test_header_json():
    header = {"spec": "[1, 2, {\"a\": null}]", "broken": "[1, ", "deep": "[" * 100000 + "]" * 100000}
    assert header_json(header, "spec", "f.safetensors") == [1, 2, {"a": None}]
    with pytest.raises(ValueError, match=r"f.safetensors: the header has no 'shape' entry \(damaged file\)"):
        header_json(header, "shape", "f.safetensors")
    assert header_json(header, "shape", "f.safetensors", default=None) is None
    assert header_json(header, "shape", "f.safetensors", default={"x": 1}) == {"x": 1}
    assert header_json(header, "spec", "f.safetensors", default=None) == [1, 2, {"a": None}]  # present wins
    with pytest.raises(ValueError, match=r"f.safetensors: the header entry 'broken' is not valid JSON \("):
        header_json(header, "broken", "f.safetensors")
    with pytest.raises(ValueError, match="the header entry 'deep' is not valid JSON"):  # RecursionError
        header_json(header, "deep", "f.safetensors")


def test_state_mismatch():
    expected = {"a": (2, 3), "b": (4,), "c": ()}
    assert state_mismatch(expected, dict(expected)) is None
    assert state_mismatch({}, {}) is None
    assert state_mismatch(expected, {"a": (2, 3), "c": ()}) == "missing ['b'], unexpected []"
    assert state_mismatch(expected, {**expected, "z": (1,)}) == "missing [], unexpected ['z']"
    assert state_mismatch(expected, {"a": (2, 3), "x": (4,), "c": ()}) == "missing ['b'], unexpected ['x']"
    assert state_mismatch(expected, {**expected, "b": (5,)}) == "b is (5,), expected (4,)"
    # the first difference, in the expected entries' order
    assert state_mismatch(expected, {**expected, "a": (3, 2), "b": (5,)}) == "a is (3, 2), expected (2, 3)"
    described = {"w": "torch.float32 (8, 3, 3, 3)"}
    assert state_mismatch(described, {"w": "torch.float16 (8, 3, 3, 3)"}) == \
        "w is torch.float16 (8, 3, 3, 3), expected torch.float32 (8, 3, 3, 3)"


def test_state_mismatch_lists_at_most_five_names_sorted():
    expected = {f"k{i:02d}": (1,) for i in range(8)}
    assert state_mismatch(expected, {"z": (1,), "y": (1,)}) == \
        "missing ['k00', 'k01', 'k02', 'k03', 'k04'], unexpected ['y', 'z']"
