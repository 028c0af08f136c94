"""Tests of metaprune.data.labels: the one label codec of pruned-network files, exports and banks."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaprune.data.labels import (LABEL_KINDS, decode_labels, encode_labels, kind_of_labels, labels_from_json,
                                   labels_to_json)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("classes", [
    np.array([3, 7, 9]),
    np.array([3, 1], np.int32),
    np.array([5, 2], np.uint8),
    [1, 2, 3],
    np.array([np.int64(4), np.int64(2)], dtype=object),
    np.array([4, 2], dtype=object),
    np.array([-2**63, 2**63 - 1]),
])
def test_int_labels_round_trip(classes):
    expected = [int(c) for c in classes]
    encoded = encode_labels(classes)
    assert encoded == {"kind": "int", "values": expected}
    assert all(type(v) is int for v in encoded["values"])
    decoded = decode_labels(json.loads(json.dumps(encoded)), "class labels")
    assert decoded.dtype == np.int64 and decoded.tolist() == expected


@pytest.mark.parametrize("classes", [
    np.array(["cat", "dog"]),
    ["b", "a"],
    np.array(["x", "y"], dtype=object),
    np.array(["é", "猫", ""]),
])
def test_str_labels_round_trip(classes):
    expected = [str(c) for c in classes]
    encoded = encode_labels(classes)
    assert encoded == {"kind": "str", "values": expected}
    decoded = decode_labels(json.loads(json.dumps(encoded)), "class labels")
    assert decoded.dtype.kind == "U" and decoded.tolist() == expected


def test_the_file_format_reads_strings_into_an_object_array():
    ints = labels_from_json(labels_to_json(np.array([3, 7, 9], np.int32)))
    assert ints.dtype == np.int64 and ints.tolist() == [3, 7, 9]
    names = labels_from_json(labels_to_json(np.array(["cat", "dog"])))
    assert names.dtype == object and names.tolist() == ["cat", "dog"]
    assert all(type(v) is str for v in names)


@settings(max_examples=50, deadline=None)
@given(values=st.one_of(
    st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=20, unique=True),
    # numpy str arrays drop trailing NUL characters, so a bank cannot keep them (as before)
    st.lists(st.text(st.characters(exclude_characters="\x00"), max_size=8), min_size=1, max_size=20,
             unique=True),
))
def test_property_round_trip_through_json_text(values):
    text = json.dumps(encode_labels(np.asarray(values, dtype=object)))
    decoded = decode_labels(json.loads(text), "class labels")
    assert decoded.tolist() == values
    assert labels_from_json(json.loads(text)).tolist() == values


# --------------------------------------------------------------------------- exact JSON text


def test_exact_json_text_of_every_file_format():
    # pruned-network files and export metadata: json.dumps with the default separators
    assert json.dumps(labels_to_json(np.array([3, 7, 9]))) == '{"kind": "int", "values": [3, 7, 9]}'
    assert json.dumps(labels_to_json(["cat", "dog", "é"])) == '{"kind": "str", "values": ["cat", "dog", "\\u00e9"]}'
    # bank rows: compact separators, the encoding of encode_labels
    compact = {"separators": (",", ":"), "allow_nan": False}
    assert json.dumps(encode_labels(np.array([1, 6, 7])), **compact) == '{"kind":"int","values":[1,6,7]}'
    assert (json.dumps(encode_labels(np.array(["one", "seven", "six"])), **compact)
            == '{"kind":"str","values":["one","seven","six"]}')
    assert list(labels_to_json([1])) == ["kind", "values"]  # key order is part of the text


def test_the_unchecked_writer_writes_other_labels_as_text():
    # what save_pruned and the exports have always written for labels that are not int arrays
    assert labels_to_json(np.array([0.0, 1.0])) == {"kind": "str", "values": ["0.0", "1.0"]}
    assert labels_to_json(np.array([True, False])) == {"kind": "str", "values": ["True", "False"]}
    assert labels_to_json(np.array([4, 2], dtype=object)) == {"kind": "str", "values": ["4", "2"]}
    assert labels_to_json(np.array([], dtype=np.int64)) == {"kind": "int", "values": []}


# --------------------------------------------------------------------------- label kinds


@pytest.mark.parametrize("labels, kind", [
    (np.array([1, 2]), "int"),
    (np.array([1, 2], np.uint16), "int"),
    (np.array([np.int32(1), 2], dtype=object), "int"),
    (np.array(["a"]), "str"),
    (np.array(["a", "b"], dtype=object), "str"),
    (np.array([0.5, 1.0]), "float64"),
    (np.array([True]), "bool"),
    (np.array([b"a"]), "|S1"),
    (np.array([1.5, 2.5], dtype=object), "float"),
    (np.array([True, False], dtype=object), "bool"),
    (np.array([1, "a"], dtype=object), "mixed"),
    (np.array([True, 1], dtype=object), "mixed"),
])
def test_kind_of_labels(labels, kind):
    assert kind_of_labels(labels) == kind
    assert (kind in LABEL_KINDS) == (kind in ("int", "str"))


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize("classes, message", [
    (np.array([1, "a"], dtype=object), "ints or strings .* object labels such as 1"),
    (np.array([True, 1], dtype=object), "ints or strings"),
    (np.array([0.0, 1.0]), "ints or strings .* float64 labels"),
    (np.array([True, False]), "ints or strings .* bool labels"),
    (np.array([b"a", b"b"]), "ints or strings"),
    (np.array([1.5, 2.5], dtype=object), "ints or strings"),
    (np.array([], dtype=np.int64), r"non-empty 1-D array, got shape \(0,\)"),
    (np.array([[1, 2]]), r"non-empty 1-D array, got shape \(1, 2\)"),
    (np.array([1, 1]), r"distinct, got \[1, 1\]"),
    (["a", "a"], r"distinct, got \['a', 'a'\]"),
])
def test_encode_labels_refuses(classes, message):
    with pytest.raises(ValueError, match=message):
        encode_labels(classes)


@pytest.mark.parametrize("data, message", [
    ([1, 2], "not a valid label list"),
    ({"kind": "float", "values": [1.0]}, "not a valid label list"),
    ({"kind": "int", "values": 3}, "not a valid label list"),
    ({"values": [1]}, "not a valid label list"),
    ({"kind": "int", "values": []}, "non-empty list of int labels"),
    ({"kind": "int", "values": [True, 1]}, "non-empty list of int labels"),
    ({"kind": "int", "values": ["1"]}, "non-empty list of int labels"),
    ({"kind": "int", "values": [1.0]}, "non-empty list of int labels"),
    ({"kind": "str", "values": ["a", 1]}, "non-empty list of str labels"),
    ({"kind": "int", "values": [2**63]}, "int64 labels"),
    ({"kind": "int", "values": [-2**63 - 1]}, "int64 labels"),
    ({"kind": "int", "values": [1, 1]}, r"distinct, got \[1, 1\]"),
    ({"kind": "str", "values": ["a", "a"]}, "distinct"),
])
def test_reading_refuses_damaged_label_lists(data, message):
    with pytest.raises(ValueError, match=f"the class labels .*{message}"):
        labels_from_json(data)
    with pytest.raises(ValueError, match=f"the classes of task 't' .*{message}"):
        decode_labels(data, "classes of task 't'")
