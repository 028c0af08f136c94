"""Damaged pruned-network and backbone files: a ValueError before anything is allocated, never another error.

A valid pruned-network file and a valid backbone file are corrupted by hypothesis: the JSON
entries of the header (sizes huge, negative, zero, float, string, bool or None; missing and
extra keys; wrong types; kept channels out of range or duplicated; negative input shapes)
and the safetensors header itself (tensor shapes, dtypes and offsets; the header length;
random bytes). Loading such a file either gives a consistent network no larger than a
small multiple of the file, or raises ``ValueError``; the process never grows by more than
200 MB, which a single full-size network built from a damaged spec would exceed many times
(``planes = [2000, 4000, 8000, 16000]`` is 24 GB).
"""

import json
import resource
import sqlite3
import struct
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _safetensors import join, rewrite, split
from metaprune import PrunedModelBank
from metaprune.cli.jobs import describe_file
from metaprune.channels.filter_space import FilterSpace
from metaprune.channels.pruned_model import load_pruned, save_pruned
from metaprune.backbone.resnet import cifar_resnet18, load_backbone, save_backbone, spec_of
from metaprune.channels.selection import Selection
from metaprune.channels.surgery import extract

MAX_GROWTH = 200 * 2**20  # bytes
FILE_MULTIPLE = 4  # a loaded network holds at most this many times the file's bytes


def _maxrss() -> int:
    """Peak resident memory of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A valid pruned-network file and a valid backbone file (bytes), and a scratch path."""
    root = tmp_path_factory.mktemp("validation")
    torch.manual_seed(0)
    net = cifar_resnet18(width=4, in_channels=1, num_classes=3)
    space = FilterSpace.from_model(net)
    selection = Selection({g.name: np.arange(0, g.size, 2) for g in space}, space)
    pruned = extract(net, selection, space)
    pruned.fc = torch.nn.Linear(pruned.fc.in_features, 2)
    save_pruned(root / "pruned.safetensors", pruned, selection, [3, 7], spec_of(net), (1, 8, 8),
                {"by": "test"})
    save_backbone(net, root / "backbone.safetensors", metadata={"image_shape": [8, 8, 1]})
    return {"pruned": (root / "pruned.safetensors").read_bytes(),
            "backbone": (root / "backbone.safetensors").read_bytes(),
            "scratch": root / "damaged.safetensors", "root": root}


# ------------------------------------------------------------------------------------------- strategies
BAD_VALUES = st.one_of(
    st.integers(min_value=2**20, max_value=10**30),  # huge
    st.integers(min_value=-10**30, max_value=-1),  # negative
    st.just(0),
    st.integers(min_value=1, max_value=64),  # plausible but wrong
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=-3, max_value=40), max_size=5),
    st.dictionaries(st.text(max_size=4), st.integers(min_value=-3, max_value=9), max_size=2),
)


@st.composite
def corrupted_json(draw, value):
    """``value`` (decoded JSON) with one corruption: a key set to a bad value, deleted or added,
    a list entry changed, added or removed, or the whole value replaced."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["set", "delete", "add", "recurse"]))
        out = dict(value)
        if action == "set" or (action == "recurse" and not isinstance(value[key], (dict, list))):
            out[key] = draw(BAD_VALUES)
        elif action == "delete":
            del out[key]
        elif action == "add":
            out[draw(st.text(min_size=1, max_size=8))] = draw(BAD_VALUES)
        else:
            out[key] = draw(corrupted_json(value[key]))
        return out
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(min_value=0, max_value=len(value) - 1))
        action = draw(st.sampled_from(["set", "duplicate", "delete", "append", "out_of_range"]))
        out = list(value)
        if action == "set":
            out[i] = draw(BAD_VALUES)
        elif action == "duplicate":
            out.append(out[i])
        elif action == "delete":
            del out[i]
        elif action == "append":
            out.append(draw(BAD_VALUES))
        else:  # a kept index (or size) pushed out of range
            shift = draw(st.integers(min_value=1, max_value=10**7))
            out[i] = (out[i] if isinstance(out[i], int) else 0) + shift
        return out
    return draw(BAD_VALUES)


# The cases of the issue (and two neighbours), run first every time. A spec whose widths all grow
# consistently (stem included) still fits a pruned file's tensors: it loads, at the pruned size.
ISSUE_CASES = [
    ("spec", lambda s: {**s, "planes": [2000, 4000, 8000, 16000]}),
    ("spec", lambda s: {**s, "planes": [2000, 4000, 8000, 16000], "stem_width": 2000}),
    ("spec", lambda s: {**s, "planes": [10**6, 4, 8, 16]}),
    ("spec", lambda s: {**s, "layers": [10**6, 2, 2, 2]}),
    ("input_shape", lambda s: [1, -8, 8]),
]


@st.composite
def damaged_metadata(draw, blob):
    """A file whose JSON header entry (spec, selection, classes ...) is corrupted."""
    header, data = split(blob)
    meta = dict(header["__metadata__"])
    key = draw(st.sampled_from(sorted(meta) + ["extra"]))
    action = draw(st.sampled_from(["json", "json", "json", "text", "delete"]))
    if action == "delete":
        meta.pop(key, None)
    elif action == "text" or key not in meta or key in ("format", "fingerprint"):
        meta[key] = draw(st.text(max_size=12))
    else:
        meta[key] = json.dumps(draw(corrupted_json(json.loads(meta[key]))))
    return join({**header, "__metadata__": meta}, data), f"metadata:{key}:{action}"


@st.composite
def damaged_tensor_header(draw, blob):
    """A file whose safetensors header has a tensor entry's shape, dtype or offsets changed, or an
    entry removed, added or renamed."""
    header, data = split(blob)
    name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    entry = dict(header[name])
    action = draw(st.sampled_from(["shape", "dtype", "offsets", "delete", "add", "rename"]))
    if action == "shape":
        entry["shape"] = draw(st.one_of(corrupted_json(entry["shape"]),
                                        st.just([2 * n for n in entry["shape"]]),
                                        st.just([n * 10**6 for n in entry["shape"]])))
    elif action == "dtype":
        entry["dtype"] = draw(st.sampled_from(["F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "XX", 3]))
    elif action == "offsets":
        entry["data_offsets"] = draw(corrupted_json(entry["data_offsets"]))
    header = dict(header)
    if action == "delete":
        del header[name]
    elif action == "add":
        header[name + ".extra"] = entry
    elif action == "rename":
        header[name + "x"] = header.pop(name)
    else:
        header[name] = entry
    return join(header, data), f"tensors:{action}"


@st.composite
def damaged_bytes(draw, blob):
    """A file with its header length changed, random bytes in its header, or cut short."""
    (n,) = struct.unpack("<Q", blob[:8])
    action = draw(st.sampled_from(["length", "flip", "truncate"]))
    out = bytearray(blob)
    if action == "length":
        out[:8] = struct.pack("<Q", draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(n - 16, n + 16)))
                              % 2**64)
    elif action == "flip":
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, 8 + n - 1))] = draw(st.integers(0, 255))
    else:
        out = out[:draw(st.integers(0, len(blob) - 1))]
    return bytes(out), f"bytes:{action}"


def damaged(blob):
    return st.one_of(damaged_metadata(blob), damaged_metadata(blob), damaged_tensor_header(blob),
                     damaged_bytes(blob))


# ---------------------------------------------------------------------------------------------- checks
def _state_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _load(kind, path):
    """Load ``path`` as ``kind`` and describe it as ``metaprune inspect`` does; the loaded network."""
    if kind == "pruned":
        model = load_pruned(path)
        if np.prod(model.input_shape) <= 2**16:  # it predicts (larger images would be costly to make)
            model.predict_proba(np.zeros((1, *model.input_shape), dtype=np.float32))
        module = model.module
    else:
        module = load_backbone(path)
    describe_file(path)
    return module


def _outcome(kind, path, size) -> str:
    """``"loaded"`` or the exception type's name; a loaded network is checked to be small."""
    try:
        module = _load(kind, path)
    except ValueError:
        return "ValueError"
    assert _state_bytes(module) <= FILE_MULTIPLE * size + 1024
    return "loaded"


@pytest.mark.parametrize("kind", ["pruned", "backbone"])
def test_damaged_files_raise_value_error_and_allocate_little(files, kind, record_property, capsys):
    blob, path = files[kind], files["scratch"]
    outcomes, corruptions = Counter(), Counter()
    path.write_bytes(blob)
    _load(kind, path)  # imports and first-use caches are not growth
    before = _maxrss()

    for key, change in ISSUE_CASES:
        if key not in split(blob)[0]["__metadata__"]:
            continue
        outcomes[_outcome(kind, rewrite(blob, path, **{key: change}), len(blob))] += 1
        corruptions["issue"] += 1

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(damaged(blob))
    def check(case):
        content, label = case
        path.write_bytes(content)
        corruptions[label.split(":")[0]] += 1
        try:
            outcomes[_outcome(kind, path, len(content))] += 1
        except Exception as exc:
            outcomes[type(exc).__name__] += 1
            raise

    check()
    growth = _maxrss() - before
    summary = {"kind": kind, "examples": sum(outcomes.values()), "outcomes": dict(outcomes),
               "corruptions": dict(corruptions), "peak_rss_growth_mb": round(growth / 2**20, 1)}
    record_property("corruption_summary", json.dumps(summary))
    with capsys.disabled():
        print(f"\ncorruption test {json.dumps(summary)}")
    assert set(outcomes) <= {"ValueError", "loaded"}
    assert outcomes["ValueError"] > outcomes["loaded"]
    assert growth < MAX_GROWTH, f"peak memory grew by {growth / 2**20:.0f} MB"


# ----------------------------------------------------------------------------------- deterministic cases
@pytest.mark.parametrize("change, field", [
    (dict(spec=lambda s: {**s, "planes": [2000, 4000, 8000, 16000]}), "selection lacks groups"),
    (dict(spec=lambda s: {**s, "planes": [10**6, 4, 8, 16]}), "channel index 6 out of range for 4 channels"),
    (dict(spec=lambda s: {**s, "planes": [10**30, 4, 8, 16]}), r"planes\[0\] must be in"),
    (dict(spec=lambda s: {**s, "planes": [4.0, 8, 16, 32]}), r"planes\[0\] must be an int, got float"),
    (dict(spec=lambda s: {**s, "layers": [2, 2, 2, True]}), r"layers\[3\] must be an int, got bool"),
    (dict(spec=lambda s: {**s, "layers": [200, 2, 2, 2]}), "206 residual blocks; .* room for at most 10"),
    (dict(spec=lambda s: {**s, "in_channels": "1"}), "in_channels must be an int, got str"),
    (dict(spec=lambda s: {k: v for k, v in s.items() if k != "block"}), "'block' is missing"),
    (dict(spec=lambda s: {**s, "depth": 18}), r"unknown ResNetSpec fields: \['depth'\]"),
    (dict(spec=lambda s: [s]), "read from a mapping, got list"),
    (dict(input_shape=lambda s: [1, -8, 8]), "'input_shape' is invalid: input_shape must be 3 positive ints"),
    (dict(input_shape=lambda s: [3, 8, 8]), "3 channels but the network expects 1"),
    (dict(input_shape=lambda s: [1, 8]), "must be 3 positive ints"),
    (dict(selection=lambda s: {**s, "layer1": s["layer1"] + [10**6]}), "index 1000000 out of range"),
    (dict(selection=lambda s: {**s, "layer1": s["layer1"] + s["layer1"][:1]}), "listed more than once"),
    (dict(selection=lambda s: {**s, "layer1": s["layer1"][:-1]}),
     r"conv1.weight is \(2, 1, 3, 3\), expected \(1, 1, 3, 3\)"),
    (dict(selection=lambda s: list(s)), "'selection' is invalid"),
    (dict(classes=lambda c: {**c, "values": c["values"] + [9]}), "fc.weight is"),
    (dict(classes=lambda c: {**c, "values": [3, 3]}), "must be distinct"),
    (dict(classes=lambda c: {**c, "values": [3, 10**30]}), "int64 labels"),
    (dict(metadata=lambda m: [m]), "'metadata' is not a JSON object"),
])
def test_each_damaged_entry_is_named(files, change, field):
    path = rewrite(files["pruned"], files["scratch"], **change)
    with pytest.raises(ValueError, match=field) as info:
        load_pruned(path)
    assert str(path) in str(info.value)


def test_valid_files_still_load_at_their_pruned_size(files):
    path = files["root"] / "valid.safetensors"
    path.write_bytes(files["pruned"])
    model = load_pruned(path)
    assert _state_bytes(model.module) <= len(files["pruned"])
    assert model.predict(np.zeros((2, 1, 8, 8), dtype=np.float32)).shape == (2,)
    path.write_bytes(files["backbone"])
    assert _state_bytes(load_backbone(path)) <= len(files["backbone"])


# ------------------------------------------------------------------------------------------------- bank
def test_bank_refuses_damaged_specs_and_weights_before_building(files, tmp_path):
    from metaprune.bank._codec import encode_tensors, sha256_hex

    net = cifar_resnet18(width=2, in_channels=1, num_classes=3)
    path = tmp_path / "bank.sqlite"
    PrunedModelBank(net, path=path).close()
    with sqlite3.connect(path) as conn:
        spec = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()[0])

    def set_spec(**fields):
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'spec'", (json.dumps({**spec, **fields}),))

    before = _maxrss()
    for fields, message in (({"planes": [10**6, 4, 8, 16]}, "filter space does not match"),
                            ({"planes": [2000, 4000, 8000, 16000]}, "filter space does not match"),
                            ({"layers": [10**3, 2, 2, 2]}, "room for at most 12"),
                            ({"planes": [-2, 4, 8, 16]}, r"planes\[0\] must be in"),
                            ({"in_channels": None}, "in_channels must be an int")):
        set_spec(**fields)
        with pytest.raises(ValueError, match=message):
            PrunedModelBank.open(path)
    set_spec()
    small = {k: v[:1] if v.ndim else v for k, v in net.state_dict().items()}  # wrong shapes, digests agree
    blob = encode_tensors(small)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE backbone SET weights = ?, sha256 = ?", (blob, sha256_hex(blob)))
    with pytest.raises(ValueError, match="backbone weights .* do not match the stored architecture: conv1"):
        PrunedModelBank.open(path).backbone
    assert _maxrss() - before < MAX_GROWTH
