"""Saving and loading pruned networks without pickle: safetensors weights + JSON architecture.

A pruned network is fully described by the pre-trained architecture (a
:class:`~metaprune.backbone.resnet.ResNetSpec`), the selection of kept channels and the number of
classes of its head; the file stores those as JSON in the safetensors header, so loading
rebuilds the exact module and never unpickles anything.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import replace

import numpy as np
import torch

from ..backbone.safetensors_reader import header_json, read_header, read_tensors, state_mismatch
from ..data.checks import check_images, check_input_shape
from ..data.labels import labels_from_json, labels_to_json
from ..data.batches import forward_batches
from .filter_space import FilterSpace, head_name
from ..backbone.resnet import ResNetSpec, initialise_, max_blocks_for, spec_from_header, state_shapes, materialise
from .selection import Selection
from .surgery import extract

__all__ = ["save_pruned", "load_pruned", "PrunedModel", "build_pruned_module", "pruned_skeleton"]

FORMAT = "metaprune.pruned"


def pruned_skeleton(spec, selection: Selection, n_classes: int, max_blocks: int | None = None,
                    input_shape=None) -> torch.nn.Module:
    """A pruned network's architecture on the ``meta`` device: shapes only, no memory.

    Parameters
    ----------
    spec : ResNetSpec, TorchvisionSpec or ConstructorSpec
        Architecture recipe of the pre-trained network.
    selection : Selection or mapping
        Kept channels, in the pre-trained numbering.
    n_classes : int
        Outputs of the head.
    max_blocks : int, optional
        Refuse a ResNet spec with more residual blocks (see
        :meth:`metaprune.backbone.resnet.ResNetSpec.skeleton`).
    input_shape : tuple of int, optional
        ``(C, H, W)`` for tracing a non-ResNet (see :meth:`FilterSpace.from_model`).

    Returns
    -------
    torch.nn.Module
        On the ``meta`` device; its state-dict shapes are those of the pruned network.

    Raises
    ------
    ValueError
        If ``n_classes`` is not a positive int or ``selection`` does not fit ``spec``
        (unknown or missing group, index out of range).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
    full = replace(spec, num_classes=int(n_classes)).skeleton(max_blocks)
    # checks the selection against the space
    return extract(full, selection, FilterSpace.from_model(full, input_shape))


def build_pruned_module(spec, selection: Selection, n_classes: int, input_shape=None) -> torch.nn.Module:
    """An (untrained) module with the architecture of a pruned network.

    It is built at its pruned size directly (never through the full-size network) and
    initialised as :func:`metaprune.backbone.resnet.build_resnet` initialises a network.

    Parameters
    ----------
    spec : ResNetSpec
        Architecture of the pre-trained network.
    selection : Selection
        Kept channels, in the pre-trained numbering.
    n_classes : int
        Outputs of the head.

    Returns
    -------
    torchvision.models.ResNet

    Raises
    ------
    ValueError
        If ``selection`` does not fit ``spec``.
    """
    if not isinstance(spec, ResNetSpec):  # the builder's own initialisation, then cut
        full = replace(spec, num_classes=int(n_classes)).build()
        return extract(full, selection, FilterSpace.from_model(full, input_shape))
    module = initialise_(pruned_skeleton(spec, selection, n_classes).to_empty(device="cpu"))
    module.get_submodule(head_name(module)).reset_parameters()
    return module


def save_pruned(path, module, selection: Selection, classes, spec, input_shape, metadata=None) -> None:
    """Write a pruned network and what is needed to rebuild it to one safetensors file."""
    from safetensors.torch import save_file

    header = {
        "format": FORMAT,
        "spec": json.dumps(spec.to_dict()),
        "selection": json.dumps(selection.to_dict()),
        "classes": json.dumps(labels_to_json(classes)),
        "input_shape": json.dumps([int(s) for s in input_shape]),
        "metadata": json.dumps(metadata or {}, default=str),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata=header)


class PrunedModel:
    """A loaded pruned network: ``module``, ``classes_``, ``selection``; predicts on images.

    Attributes
    ----------
    module : torch.nn.Module
        The physically pruned ResNet, in eval mode.
    classes_ : ndarray
        Class labels, in the order of the network's outputs.
    selection : Selection
        Kept channels in the pre-trained numbering.
    spec : ResNetSpec
        Architecture of the pre-trained network it was pruned from.
    input_shape : tuple
        (C, H, W) of the images it was trained on.
    metadata : dict
    """

    def __init__(self, module, classes, selection, spec, input_shape, metadata):
        self.module = module.eval()
        self.classes_ = classes
        self.selection = selection
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self.metadata = metadata

    @torch.no_grad()
    def predict_proba(self, X, batch_size: int = 256) -> np.ndarray:
        """Softmax outputs for images.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W)
            Images of ``input_shape``, or rows of ``C * H * W`` features.
        batch_size : int, default=256

        Returns
        -------
        ndarray of shape (n_samples, n_classes)

        Raises
        ------
        ValueError
            If ``X`` does not hold images of ``input_shape`` (see
            :func:`metaprune.data.checks.check_images`).
        """
        X = self._check_images(X)
        out = [torch.softmax(self.module(batch), dim=1).cpu()
               for _, batch in forward_batches(self.module, X, batch_size)]
        return torch.cat(out).numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted class labels of images (see :meth:`predict_proba`)."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X, y) -> float:
        """Mean accuracy on images ``X`` with true labels ``y``, as scikit-learn's ``score``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W)
            Images of ``input_shape``, or rows of ``C * H * W`` features.
        y : array-like of shape (n_samples,)
            True labels, of the kind of ``classes_``.

        Returns
        -------
        float
            Fraction of images whose predicted label equals ``y``.

        Raises
        ------
        ValueError
            If ``X`` does not hold images of ``input_shape``, or ``y`` has another number of
            labels.
        """
        from sklearn.metrics import accuracy_score

        predicted = self.predict(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(predicted):
            raise ValueError(f"y must be a 1-D array with one label per image; X has {len(predicted)} images "
                             f"and y has shape {y.shape}")
        return float(accuracy_score(y, predicted))

    def _check_images(self, X) -> np.ndarray:
        """``X`` as float32 images of ``input_shape`` (see :func:`metaprune.data.checks.check_images`)."""
        X = check_images(X, in_channels=self.input_shape[0], input_shape=self.input_shape)
        if tuple(X.shape[1:]) != self.input_shape:
            raise ValueError(f"X has images of shape {tuple(X.shape[1:])} (C, H, W), but the network was "
                             f"trained on {self.input_shape}")
        return X


def load_pruned(path, map_location="cpu", architectures=None) -> PrunedModel:
    """Load a network written by :func:`save_pruned` (or an estimator's ``save``).

    The file is checked before anything is allocated: every size in its header (the
    architecture, the kept channels, the classes, the input shape) must be valid and give
    exactly the shapes of the tensors in the file. The network is then built at its
    pruned size directly, so a load allocates about the size of the file's tensors.

    Parameters
    ----------
    path : str or path-like
    map_location : str or torch.device, default="cpu"
        Device to move the network to.
    architectures : mapping of str to callable, optional
        Constructors of users' own network classes, by the name their recipe gives (see
        :class:`metaprune.backbone.architectures.ConstructorSpec`); not needed for ResNets
        and torchvision builders.

    Returns
    -------
    PrunedModel

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a metaprune pruned-network file or is damaged; the message
        names the file and the entry at fault.
    """
    header, shapes = read_header(path, FORMAT, "pruned-network")
    spec = spec_from_header(header, path, architectures)
    selection = _parse_entry(header, "selection", path, lambda data: Selection(data))
    classes = _parse_entry(header, "classes", path, labels_from_json)
    input_shape = _parse_entry(header, "input_shape", path,
                               lambda data: check_input_shape(data, in_channels=spec.in_channels))
    metadata = header_json(header, "metadata", path, default={})
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: the header entry 'metadata' is not a JSON object")
    try:
        skeleton = pruned_skeleton(spec, selection, len(classes), max_blocks=max_blocks_for(len(shapes)),
                                   input_shape=input_shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the spec and selection do not fit together: {exc}") from None
    problem = state_mismatch(state_shapes(skeleton), shapes)
    if problem is not None:
        raise ValueError(f"{path}: the weights do not match the stored architecture: {problem}")
    _check_runs(skeleton, input_shape, path)
    try:
        module = materialise(skeleton, read_tensors(path, "pruned-network"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return PrunedModel(module.to(map_location), classes, selection, spec, input_shape, metadata)


def _parse_entry(header, key: str, path, parse):
    """``parse`` applied to a header entry's JSON, with any problem raised as a ValueError naming both."""
    data = header_json(header, key, path)
    try:
        return parse(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the header entry {key!r} is invalid: {exc}") from None


def _check_runs(skeleton: torch.nn.Module, input_shape: tuple, path) -> None:
    """Raise a ValueError unless the (meta-device) network runs on one image of ``input_shape``."""
    try:
        with torch.no_grad():
            skeleton.eval()(torch.zeros((1, *input_shape), device="meta"))
    except RuntimeError as exc:
        message = " ".join(str(exc).split())[:200]
        raise ValueError(f"{path}: the network does not run on its input_shape {input_shape}: "
                         f"{message}") from None
