"""Saving and loading pruned networks without pickle: safetensors weights + JSON architecture.

A pruned network is fully described by the pre-trained architecture (a
:class:`~metaprune.models.ResNetSpec`), the selection of kept channels and the number of
classes of its head; the file stores those as JSON in the safetensors header, so loading
rebuilds the exact module and never unpickles anything.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from ._files import read_safetensors
from .batches import forward_batches
from .filter_space import FilterSpace
from .models import ResNetSpec
from .selection import Selection
from .surgery import extract

__all__ = ["save_pruned", "load_pruned", "PrunedModel", "build_pruned_module"]

FORMAT = "metaprune.pruned"


def build_pruned_module(spec: ResNetSpec, selection: Selection, n_classes: int) -> torch.nn.Module:
    """An (untrained) module with the architecture of a pruned network."""
    spec = ResNetSpec.from_dict({**spec.to_dict(), "num_classes": int(n_classes)})
    full = spec.build()
    return extract(full, selection, FilterSpace.from_model(full))


def _classes_to_json(classes) -> dict:
    classes = np.asarray(classes)
    kind = "int" if classes.dtype.kind in "iu" else "str"
    values = [int(c) for c in classes] if kind == "int" else [str(c) for c in classes]
    return {"kind": kind, "values": values}


def _classes_from_json(d: dict) -> np.ndarray:
    return np.asarray(d["values"], dtype=np.int64 if d["kind"] == "int" else object)


def save_pruned(path, module, selection: Selection, classes, spec: ResNetSpec, input_shape, metadata=None) -> None:
    """Write a pruned network and what is needed to rebuild it to one safetensors file."""
    from safetensors.torch import save_file

    header = {
        "format": FORMAT,
        "spec": json.dumps(spec.to_dict()),
        "selection": json.dumps(selection.to_dict()),
        "classes": json.dumps(_classes_to_json(classes)),
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
        """Softmax outputs for images of shape (n, C, H, W)."""
        out = [torch.softmax(self.module(batch), dim=1).cpu()
               for _, batch in forward_batches(self.module, X, batch_size)]
        return torch.cat(out).numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted class labels."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def load_pruned(path, map_location="cpu") -> PrunedModel:
    """Load a network written by :func:`save_pruned` (or an estimator's ``save``).

    Raises
    ------
    ValueError
        If the file is not a metaprune pruned-network file or is damaged.
    """
    header, state = read_safetensors(path, FORMAT, "pruned-network")
    try:
        spec = ResNetSpec.from_dict(json.loads(header["spec"]))
        selection = Selection(json.loads(header["selection"]))
        classes = _classes_from_json(json.loads(header["classes"]))
        input_shape = json.loads(header["input_shape"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: damaged header ({exc})") from exc
    module = build_pruned_module(spec, selection, len(classes))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the stored architecture: {exc}") from exc
    return PrunedModel(module.to(map_location), classes, selection, spec, input_shape, metadata)
