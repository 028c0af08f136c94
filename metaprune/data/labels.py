"""The label codec: class labels (ints or strings) to JSON and back, the same in every file format.

Pruned-network files, export metadata and bank files store a list of class labels as the
JSON object ``{"kind": "int" | "str", "values": [...]}``. This module is the one place that
writes and reads it:

- :func:`labels_to_json` / :func:`labels_from_json` are the format itself: integer labels
  are written as JSON numbers, any other label as its text; reading checks the object and
  gives ``int64`` labels, or the strings in an object array.
- :func:`encode_labels` / :func:`decode_labels` are the checked variant for labels that are
  global class identities (a bank's tasks): only distinct ints or strings are accepted, and
  strings are read back as a ``str`` array.
- :func:`kind_of_labels` names the kind of a label array (``"int"``, ``"str"``, or what else
  it holds), for checks that labels are of one of the :data:`LABEL_KINDS`.

Examples
--------
>>> import json
>>> json.dumps(labels_to_json(np.array([3, 7, 9])))
'{"kind": "int", "values": [3, 7, 9]}'
>>> labels_from_json({"kind": "str", "values": ["cat", "dog"]})
array(['cat', 'dog'], dtype=object)
>>> decode_labels(encode_labels(["cat", "dog"]), "class labels")
array(['cat', 'dog'], dtype='<U3')
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["LABEL_KINDS", "kind_of_labels", "labels_to_json", "labels_from_json", "encode_labels",
           "decode_labels"]

LABEL_KINDS = ("int", "str")
"""The kinds of class labels the files store: integers or strings."""


def kind_of_labels(labels) -> str:
    """The kind of a label array: ``"int"``, ``"str"``, or a description of what else it holds.

    Parameters
    ----------
    labels : array-like
        Class labels. In an object array every value is looked at: Python and numpy integers
        (not booleans) are ints, ``str`` values are strings.

    Returns
    -------
    str
        ``"int"`` for an integer array (or an object array of integers), ``"str"`` for a
        unicode array (or an object array of strings); otherwise the array's dtype (e.g.
        ``"float64"``, ``"bool"``), the type name of the values of an object array of one other
        type (e.g. ``"float"``), or ``"mixed"`` for an object array of several kinds.

    Examples
    --------
    >>> kind_of_labels([3, 1]), kind_of_labels(["a"]), kind_of_labels([0.5])
    ('int', 'str', 'float64')
    >>> kind_of_labels(np.array([1, "a"], dtype=object))
    'mixed'
    """
    labels = np.asarray(labels)
    if labels.dtype.kind == "O":
        kinds = {"int" if isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
                 else "str" if isinstance(v, str) else type(v).__name__ for v in labels.ravel()}
        return kinds.pop() if len(kinds) == 1 else "mixed"
    return {"i": "int", "u": "int", "U": "str"}.get(labels.dtype.kind, str(labels.dtype))


def labels_to_json(classes) -> dict:
    """The JSON form of a list of class labels, unchecked.

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        Class labels, e.g. a fitted estimator's ``classes_``.

    Returns
    -------
    dict
        ``{"kind": "int", "values": [...]}`` (Python ints) for an integer array, else
        ``{"kind": "str", "values": [...]}`` with ``str(label)`` of every label (so an object
        or float array is written as text).

    See Also
    --------
    encode_labels : The same encoding, after checking the labels are distinct ints or strings.

    Examples
    --------
    >>> labels_to_json(np.array([2, 0], dtype=np.uint8))
    {'kind': 'int', 'values': [2, 0]}
    >>> labels_to_json(["cat", "dog"])
    {'kind': 'str', 'values': ['cat', 'dog']}
    """
    classes = np.asarray(classes)
    kind = "int" if classes.dtype.kind in "iu" else "str"
    values = [int(c) for c in classes] if kind == "int" else [str(c) for c in classes]
    return {"kind": kind, "values": values}


def labels_from_json(data, what: str = "class labels") -> np.ndarray:
    """Read the JSON form of :func:`labels_to_json`: int64 labels, or str labels in an object array.

    Parameters
    ----------
    data : object
        Parsed JSON.
    what : str, default="class labels"
        What the labels are, for error messages.

    Returns
    -------
    numpy.ndarray of shape (n_classes,)
        ``int64`` for ``"kind": "int"``; an object array of ``str`` for ``"kind": "str"``.

    Raises
    ------
    ValueError
        Naming ``what``, unless ``data`` is ``{"kind": "int" | "str", "values": [...]}`` with
        a non-empty list of distinct labels of that kind (int64 range for ints; booleans are
        not ints).
    """
    if not (isinstance(data, dict) and data.get("kind") in LABEL_KINDS
            and isinstance(data.get("values"), list)):
        raise ValueError(f"the {what} are not a valid label list: {str(data)[:80]}")
    kind, values = data["kind"], data["values"]
    wanted = int if kind == "int" else str
    if not values or not all(isinstance(v, wanted) and not isinstance(v, bool) for v in values):
        raise ValueError(f"the {what} must be a non-empty list of {kind} labels")
    if kind == "int" and not all(-2**63 <= v < 2**63 for v in values):
        raise ValueError(f"the {what} must be int64 labels")
    if len(set(values)) != len(values):
        raise ValueError(f"the {what} must be distinct, got {str(values)[:80]}")
    return np.asarray(values, dtype=np.int64 if kind == "int" else object)


def encode_labels(classes) -> dict:
    """Check class labels are distinct ints or strings and encode them as ``{"kind", "values"}``.

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        Distinct class labels (a fitted classifier's ``classes_``); an object array of ints
        or of strings is accepted.

    Returns
    -------
    dict
        ``{"kind": "int" | "str", "values": [...]}``, as :func:`labels_to_json` writes it.

    Raises
    ------
    ValueError
        For labels that are not a non-empty 1-D array, are neither all integers nor all
        strings (floats, booleans, mixed), or repeat.

    Examples
    --------
    >>> encode_labels(np.array([4, 2], dtype=object))
    {'kind': 'int', 'values': [4, 2]}
    """
    classes = np.asarray(classes)
    if classes.ndim != 1 or classes.size == 0:
        raise ValueError(f"class labels must be a non-empty 1-D array, got shape {classes.shape}")
    kind = kind_of_labels(classes)
    if kind not in LABEL_KINDS:
        raise ValueError(f"class labels must be ints or strings (global class identities), got "
                         f"{classes.dtype} labels such as {classes[0]!r}")
    if classes.dtype.kind == "O":
        classes = np.asarray(classes.tolist(), dtype=np.int64 if kind == "int" else str)
    if len(np.unique(classes)) != len(classes):
        raise ValueError(f"class labels must be distinct, got {classes.tolist()}")
    return labels_to_json(classes)


def decode_labels(data, what: str) -> np.ndarray:
    """Inverse of :func:`encode_labels`: an int64 or str array.

    Parameters
    ----------
    data : object
        Parsed JSON.
    what : str
        What the labels are, for error messages.

    Returns
    -------
    numpy.ndarray of shape (n_classes,)
        ``int64``, or a unicode (``str``) array.

    Raises
    ------
    ValueError
        If ``data`` is not a valid encoding (see :func:`labels_from_json`).
    """
    classes = labels_from_json(data, what)
    return classes if data["kind"] == "int" else classes.astype(str)
