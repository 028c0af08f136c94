"""Task records: what a fitted pruner becomes in the bank, and how stored rows are read back.

:func:`encode_fitted` turns a fitted pruner into a :class:`~._schema.TaskRow` (JSON text and
safetensors bytes: what a worker sends back to the writing process). :class:`RowDecoder`
turns stored rows back into selections, state dicts, prototypes and :class:`TaskRecord`
values, checking every value against the bank's filter space and architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ..backbone.safetensors_reader import state_mismatch
from ..data.checks import check_images
from ..backbone.penultimate import class_prototypes
from ..backbone.resnet import fingerprint
from ..channels.filter_space import input_channels
from ..channels.selection import Selection
from ._codec import (decode_labels, decode_tensors, dumps, encode_labels, encode_tensors, json_safe, loads,
                     sha256_hex)
from ._schema import TaskRow, TaskText

__all__ = ["TaskRecord", "check_task_id", "encode_task", "encode_fitted", "pruner_config",
           "pruner_fingerprint", "RowDecoder"]

_EXCLUDED_PARAMS = ("backbone", "callbacks")


@dataclass(frozen=True, eq=False)
class TaskRecord:
    """Everything a bank stores about one task.

    Attributes
    ----------
    task_id : str
        The task's id.
    classes : numpy.ndarray
        Its class labels (int64 or str), in the order of the head's outputs.
    selection : Selection
        Kept channels per group, in the pre-trained numbering.
    state : mapping of str to torch.Tensor or None
        State dict of the physically pruned network: weights, BatchNorm parameters and
        running statistics, and the task head (``fc.*`` for a ResNet, see ``head_name``). None for a record read without its
        weights (``bank.record(task_id, weights=False)``).
    prototypes : numpy.ndarray of shape (n_classes, n_features) or None
        Mean penultimate feature of the *pre-trained* backbone per class (rows follow
        ``classes``); None when the task was stored without, or the record was read
        without its weights.
    metrics : mapping
        E.g. ``test_accuracy``, ``n_iter``, ``n_params``, ``flops``, ``train_flops``,
        ``fit_time``, ``n_train``, ``n_test`` (whatever was known when it was stored).
    config : mapping
        The pruner's parameters (``get_params``) without the backbone and callbacks,
        JSON-safe.
    estimator : str
        Import path of the pruner's class.
    backbone_fingerprint : str
        Fingerprint of the backbone it was pruned from (the bank's).
    created : str
        UTC time it was written (ISO 8601).
    head_name : str
        Module name of the task head in ``state`` (``"fc"`` for a ResNet).
    """

    task_id: str
    classes: np.ndarray
    selection: Selection
    state: Mapping | None
    prototypes: np.ndarray | None
    metrics: Mapping
    config: Mapping
    estimator: str
    backbone_fingerprint: str
    created: str
    head_name: str = "fc"

    @property
    def head(self) -> dict:
        """The task head's tensors (``fc.weight``, ``fc.bias``).

        Raises
        ------
        ValueError
            If the record was read without its weights.
        """
        if self.state is None:
            raise ValueError(f"the record of task {self.task_id!r} was read without its weights; "
                             f"use bank.record(task_id) for the head")
        return {k: v for k, v in self.state.items() if k.startswith(f"{self.head_name}.")}

    @property
    def n_classes(self) -> int:
        """Number of classes of the task."""
        return len(self.classes)

    def __repr__(self) -> str:
        size = ("weights not read" if self.state is None
                else f"n_params={sum(t.numel() for t in self.state.values())}")
        return (f"TaskRecord(task_id={self.task_id!r}, classes={self.classes.tolist()}, {size}, "
                f"metrics={dict(self.metrics)})")


def check_task_id(task_id) -> str:
    """Return ``task_id`` if it is a non-empty str, else raise a ValueError."""
    if not isinstance(task_id, str) or not task_id:
        raise ValueError(f"task_id must be a non-empty str, got {task_id!r}")
    return task_id


def encode_task(task_id, classes, selection, state, *, backbone_fingerprint, prototypes=None, metrics=None,
                config=None, estimator="", input_shape=None) -> TaskRow:
    """Encode one task's values into a :class:`TaskRow` (JSON text and safetensors bytes).

    Parameters
    ----------
    task_id : str
    classes : array-like of int or str
        Class labels in the order of the head's outputs.
    selection : Selection or mapping of str to sequence of int
    state : mapping of str to torch.Tensor
        Pruned state dict including the head.
    backbone_fingerprint : str
    prototypes : array-like of shape (n_classes, n_features), optional
    metrics, config : mapping, optional
        Made JSON-safe.
    estimator : str, optional
    input_shape : sequence of 3 int, optional
        ``(C, H, W)`` of the images the task was pruned on (the bank checks that all agree).

    Returns
    -------
    TaskRow
    """
    labels = encode_labels(classes)
    selection = selection if isinstance(selection, Selection) else Selection(selection)
    weights = encode_tensors(state)
    proto_blob = None
    if prototypes is not None:
        array = np.ascontiguousarray(prototypes, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(labels["values"]):
            raise ValueError(f"task {task_id!r}: prototypes must have shape "
                             f"(n_classes={len(labels['values'])}, n_features), got {array.shape}")
        proto_blob = encode_tensors({"prototypes": torch.from_numpy(array)})
    return TaskRow(
        task_id=check_task_id(task_id), label_kind=labels["kind"], classes=dumps(labels),
        selection=dumps(selection.to_dict()), metrics=dumps(json_safe(dict(metrics or {}))),
        config=dumps(json_safe(dict(config or {}))), estimator=str(estimator),
        backbone_fingerprint=str(backbone_fingerprint), weights=weights, weights_sha256=sha256_hex(weights),
        prototypes=proto_blob, prototypes_sha256=None if proto_blob is None else sha256_hex(proto_blob),
        input_shape=None if input_shape is None else dumps([int(v) for v in input_shape]))


def pruner_config(pruner) -> dict:
    """The pruner's own parameters without the backbone and callbacks, JSON-safe."""
    params = pruner.get_params(deep=False)
    return json_safe({k: v for k, v in params.items() if k not in _EXCLUDED_PARAMS})


def pruner_fingerprint(pruner) -> str:
    """Fingerprint of the backbone a fitted pruner was pruned from (``backbone_fingerprint_``)."""
    stored = getattr(pruner, "backbone_fingerprint_", None)
    if stored is not None:
        return str(stored)
    backbone = getattr(pruner, "backbone", None)
    if not isinstance(backbone, torch.nn.Module):
        raise ValueError(f"cannot tell which backbone the fitted {type(pruner).__name__} was pruned from: "
                         f"it has neither backbone_fingerprint_ nor a backbone")
    return fingerprint(backbone)


def _metrics(pruner, n_train, X_test, y_test) -> dict:
    metrics = {}
    if X_test is not None and y_test is not None and len(y_test):
        metrics["test_accuracy"] = float(pruner.score(X_test, y_test))
        metrics["n_test"] = int(len(y_test))
    if n_train is not None:
        metrics["n_train"] = int(n_train)
    for name, attribute in (("n_iter", "n_iter_"), ("n_params", "n_params_"), ("flops", "flops_"),
                            ("train_flops", "train_flops_"), ("fit_time", "fit_time_")):
        value = getattr(pruner, attribute, None)
        if value is not None:
            metrics[name] = value
    return metrics


def encode_fitted(task_id, pruner, backbone, X=None, y=None, X_test=None, y_test=None) -> TaskRow:
    """Encode a fitted pruner as a bank task.

    Parameters
    ----------
    task_id : str
    pruner : estimator
        Fitted, with ``selection_``, ``classes_`` and ``net_`` (``net_.module_`` the pruned
        network including its head).
    backbone : torch.nn.Module
        The pre-trained backbone (prototypes are its features, not the pruned network's).
    X, y : array-like, optional
        The task's training images and labels, for the class prototypes; without them the
        task is stored without prototypes.
    X_test, y_test : array-like, optional
        Held-out images and labels for the ``test_accuracy`` metric.

    Returns
    -------
    TaskRow

    Raises
    ------
    ValueError
        If the pruner is not fitted, or ``y`` has other classes than the pruner.
    """
    check_task_id(task_id)
    try:
        check_is_fitted(pruner, ["selection_", "classes_", "net_"])
    except Exception as exc:
        raise ValueError(f"task {task_id!r}: the pruner is not fitted ({exc})") from None
    module = getattr(pruner.net_, "module_", None)
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"task {task_id!r}: the pruner's net_ has no fitted module_")
    prototypes = None
    if (X is None) != (y is None):
        raise ValueError(f"task {task_id!r}: pass both X and y for the prototypes, or neither")
    if X is not None:
        images = check_images(X, input_channels(backbone), getattr(pruner, "input_shape", None))
        classes, prototypes = class_prototypes(backbone, images, y)
        if not np.array_equal(classes, np.asarray(pruner.classes_)):
            raise ValueError(f"task {task_id!r}: y has the classes {classes.tolist()} but the pruner was "
                             f"fitted on {np.asarray(pruner.classes_).tolist()}; pass the task's training "
                             f"data")
    return encode_task(
        task_id, pruner.classes_, pruner.selection_, module.state_dict(),
        backbone_fingerprint=pruner_fingerprint(pruner), prototypes=prototypes,
        metrics=_metrics(pruner, None if y is None else len(y), X_test, y_test), config=pruner_config(pruner),
        estimator=f"{type(pruner).__module__}.{type(pruner).__qualname__}",
        input_shape=getattr(pruner, "input_shape_", None))


class RowDecoder:
    """Decode and check stored rows against a bank's filter space and architecture.

    Parameters
    ----------
    space : FilterSpace
        The pre-trained network's filter space.
    full_state : mapping of str to torch.Tensor
        A state dict of the pre-trained architecture (tensors may live on the ``meta``
        device: only shapes and dtypes are used).
    name : str
        The bank's name, for messages.
    """

    def __init__(self, space, full_state: Mapping, name: str):
        self.space = space
        self.name = name
        self._full = {k: (tuple(v.shape), v.dtype, space.tensor_axes(k)) for k, v in full_state.items()}
        self._shapes = {}  # (n_kept, n_classes) -> expected shapes
        self._head = f"{space.head}."
        self.n_features = self._full[f"{self._head}weight"][0][1]  # the head's input: the penultimate features

    def _what(self, text: TaskText, field: str) -> str:
        return f"{field} of task {text.task_id!r} in {self.name}"

    def classes(self, text: TaskText) -> np.ndarray:
        return decode_labels(loads(text.classes, self._what(text, "class list")), self._what(text, "classes"))

    def selection(self, text: TaskText) -> Selection:
        data = loads(text.selection, self._what(text, "selection"))
        try:
            return Selection(data, self.space)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the {self._what(text, 'selection')} is invalid: {exc}") from None

    def mapping(self, text: TaskText, field: str) -> Mapping:
        data = loads(getattr(text, field), self._what(text, field))
        if not isinstance(data, dict):
            raise ValueError(f"the {self._what(text, field)} is not a JSON object")
        return MappingProxyType(data)

    def expected_shapes(self, selection: Selection, n_classes: int) -> dict:
        """Shape and dtype of every entry of the pruned state dict of ``selection``."""
        key = (tuple(selection.n_kept.items()), int(n_classes))
        shapes = self._shapes.get(key)
        if shapes is None:  # all tasks pruned at one ratio share their shapes: compute them once
            kept = dict(key[0])
            shapes = {}
            for name, (shape, dtype, axes) in self._full.items():
                shape = [n if g is None else self.space.axis_size(g, kept) for g, n in zip(axes, shape)] \
                    + list(shape[len(axes):])
                if name.startswith(self._head):
                    shape[0] = n_classes
                shapes[name] = (tuple(shape), dtype)
            self._shapes[key] = shapes
        return shapes

    def check_state(self, state: Mapping, selection: Selection, n_classes: int, what: str) -> dict:
        """``state`` in the architecture's key order, or a ValueError naming the first mismatch."""
        return _checked_state(state, self.expected_shapes(selection, n_classes), what, "pruned architecture")

    def check_backbone_state(self, state: Mapping, what: str) -> dict:
        """The full (pre-trained) ``state`` in key order, or a ValueError naming the first mismatch."""
        expected = {name: (shape, dtype) for name, (shape, dtype, _) in self._full.items()}
        return _checked_state(state, expected, what, "stored architecture")

    def state(self, text: TaskText, blob, selection: Selection, n_classes: int) -> dict:
        what = self._what(text, "weights")
        return self.check_state(decode_tensors(blob, text.weights_sha256, what), selection, n_classes, what)

    def prototypes(self, text: TaskText, blob, n_classes: int):
        if text.prototypes_sha256 is None:
            return None
        what = self._what(text, "prototypes")
        if blob is None:
            raise ValueError(f"the {what} are missing although the task lists them; the bank file is damaged")
        tensors = decode_tensors(blob, text.prototypes_sha256, what)
        array = tensors.get("prototypes")
        expected = (n_classes, self.n_features)
        if set(tensors) != {"prototypes"} or array.dtype != torch.float32 or tuple(array.shape) != expected:
            raise ValueError(f"the {what} do not have the expected float32 shape {expected}")
        return array.numpy()

    def record(self, text: TaskText, blobs: Mapping | None) -> TaskRecord:
        """The checked :class:`TaskRecord` of a row; ``blobs`` None (not read) leaves out its weights
        and prototypes."""
        classes = self.classes(text)
        selection = self.selection(text)
        state = prototypes = None
        if blobs is not None:
            state = MappingProxyType(self.state(text, blobs["weights"], selection, len(classes)))
            prototypes = self.prototypes(text, blobs["prototypes"], len(classes))
        return TaskRecord(
            task_id=text.task_id, classes=classes, selection=selection, state=state, prototypes=prototypes,
            metrics=self.mapping(text, "metrics"), config=self.mapping(text, "config"),
            estimator=text.estimator, backbone_fingerprint=text.backbone_fingerprint, created=text.created,
            head_name=self.space.head)


def _checked_state(state: Mapping, expected: Mapping, what: str, architecture: str) -> dict:
    """``state`` in the order of ``expected`` (name -> (shape, dtype)), or a ValueError naming a mismatch."""
    problem = state_mismatch({name: f"{dtype} {shape}" for name, (shape, dtype) in expected.items()},
                             {name: f"{t.dtype} {tuple(t.shape)}" for name, t in state.items()})
    if problem is not None:
        raise ValueError(f"the {what} do not match the {architecture}: {problem}")
    return {name: state[name] for name in expected}
