"""Tests of metaprune.data.unpickler: only numeric numpy data is unpickled, nothing runs."""

import builtins
import io
import os
import pickle

import numpy as np
import pytest

from metaprune.data.unpickler import RestrictedUnpickler, load_pickle_dict


def _restricted_loads(data, **kwargs):
    return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_restricted_unpickler_reads_numeric_arrays_and_scalars(protocol):
    data = {
        "u8": np.arange(12, dtype=np.uint8).reshape(3, 4),
        "big_endian": np.arange(6, dtype=">f4").reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "bool": np.array([True, False]),
        "complex": np.array([1 + 2j]),
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 3), np.int16),
        "scalar": np.int64(4),
        "plain": (1, "x", b"y", 2.5, None, [True], {3}),
    }
    loaded = _restricted_loads(pickle.dumps(data, protocol=protocol))
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].flags.writeable
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value), key
    assert loaded["fortran"].flags["F_CONTIGUOUS"]


def test_restricted_unpickler_keeps_shared_and_cyclic_references():
    shared = np.arange(3)
    cyclic = [shared, shared]
    cyclic.append(cyclic)
    loaded = _restricted_loads(pickle.dumps(cyclic, protocol=2))
    assert loaded[0] is loaded[1] and loaded[2] is loaded


def test_restricted_unpickler_refuses_other_globals():
    from collections import OrderedDict

    with pytest.raises(pickle.UnpicklingError, match="forbidden global collections.OrderedDict"):
        _restricted_loads(pickle.dumps(OrderedDict()))


class _ForgedObjectArray:
    """Unpickles, with a plain unpickler, to numpy.ndarray((1,), object, buffer): an object
    array whose element pointer is the raw bytes 'xxxxxxxx' (reading it would crash)."""

    def __reduce__(self):
        return np.ndarray, ((1,), np.dtype(object), b"x" * 8)


@pytest.mark.parametrize("payload, message", [
    (_ForgedObjectArray(), "not callable"),
    (np.array([1, "a"], dtype=object), "plain numeric numpy dtypes"),
    (np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), "plain numeric numpy dtypes"),
    (np.zeros(2, dtype="V4"), "plain numeric numpy dtypes"),
    (np.zeros(2, dtype="U3"), "plain numeric numpy dtypes"),
    (np.dtype(object), "plain numeric numpy dtypes"),
])
@pytest.mark.parametrize("protocol", [2, 5])
def test_restricted_unpickler_refuses_non_numeric_numpy_objects(payload, message, protocol):
    with pytest.raises((pickle.UnpicklingError, TypeError), match=message):
        _restricted_loads(pickle.dumps({"data": payload}, protocol=protocol))


def test_restricted_unpickler_stand_ins_cannot_be_altered():
    # GLOBAL numpy.dtype; BUILD with (None, {"evil": 1}) would set an attribute on it
    payload = b"\x80\x02cnumpy\ndtype\nN}X\x04\x00\x00\x00evilK\x01s\x86b."
    with pytest.raises(AttributeError):
        _restricted_loads(payload)
    with pytest.raises(pickle.UnpicklingError, match="bare numpy global"):
        _restricted_loads(b"\x80\x02cnumpy\nndarray\n.")
    assert _restricted_loads(pickle.dumps(np.arange(2))).tolist() == [0, 1]


class _ShortArray:
    """Pickles like numpy's own array pickle, but with 3 bytes of data for 4 elements."""

    def __reduce__(self):
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy < 2
            from numpy.core.multiarray import _reconstruct
        return _reconstruct, (np.ndarray, (0,), b"b"), (1, (4,), np.dtype(np.uint8), False, b"\x00\x01\x02")


def test_restricted_unpickler_checks_array_sizes():
    with pytest.raises(pickle.UnpicklingError, match="3 bytes does not fit shape"):
        _restricted_loads(pickle.dumps(_ShortArray(), protocol=4))


def test_restricted_unpickler_codecs_encode_is_text_only():
    payload = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00base64\x86R."
    with pytest.raises(LookupError, match="not a text encoding"):
        _restricted_loads(payload)
    latin1 = payload.replace(b"X\x06\x00\x00\x00base64", b"X\x06\x00\x00\x00latin1")
    assert _restricted_loads(latin1) == b"abc"


# --------------------------------------------------------------------------- load_pickle_dict


def test_load_pickle_dict_decodes_byte_keys_and_checks_required(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": np.arange(3, dtype=np.uint8), "labels": [1, 2, 3]}, protocol=2))
    loaded = load_pickle_dict(path, ("data", "labels"))
    assert sorted(loaded) == ["data", "labels"]
    np.testing.assert_array_equal(loaded["data"], [0, 1, 2])
    with pytest.raises(ValueError, match=r"missing entries \['fine'\]; the pickle holds \['data', 'labels'\]"):
        load_pickle_dict(path, ("data", "fine"))


def test_load_pickle_dict_errors_name_the_file(tmp_path):
    path = tmp_path / "not_a_dict"
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="expected a pickled dict, got list"):
        load_pickle_dict(path)
    path.write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(ValueError, match="cannot read the pickle") as info:
        load_pickle_dict(path)
    assert str(path) in str(info.value)


class _Payload:
    """Unpickling this calls ``func(*args)`` (the classic pickle attack)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("func", [os.system, builtins.exec])
def test_load_pickle_dict_refuses_code_and_runs_nothing(tmp_path, func, protocol):
    marker = tmp_path / "pwned"
    code = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w').close()"
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({"data": _Payload(func, code)}, protocol=protocol))
    with pytest.raises(ValueError, match="forbidden global"):
        load_pickle_dict(path)
    assert not marker.exists()
