"""Deployment export of pruned networks: TorchScript and ONNX files that carry their labels.

metaprune's own format (:func:`metaprune.channels.pruned_model.save_pruned` / :func:`metaprune.channels.pruned_model.load_pruned`)
needs metaprune to rebuild the network. The files written here need only a runtime:

* :func:`export_torchscript` writes a TorchScript archive that ``torch.jit.load`` runs
  without metaprune (or torchvision) installed; :func:`load_torchscript` reads it back with
  its class labels.
* :func:`export_onnx` writes an ONNX model (needs the ``onnx`` extra) for ONNX Runtime and
  other ONNX back ends; :func:`read_onnx_metadata` reads its class labels.

Both exported networks take a float32 batch of shape (N, C, H, W), preprocessed exactly like
the input of the estimator's ``predict`` (flattened rows are not accepted), on CPU, with any
batch size N, and return the logits, one column per class in the order of the stored
``classes``. ``softmax`` of the logits is the estimator's ``predict_proba``, and
``classes[argmax]`` its ``predict``.

The class labels and the input shape travel inside the file as JSON (key ``"metaprune"``):
in the TorchScript archive's extra file ``metaprune.json``, in the ONNX model's
``metadata_props``. Labels use the same JSON encoding as metaprune's safetensors files
(integers stay integers, anything else becomes strings).

Notes
-----
TorchScript is deprecated upstream (torch 2.14's ``torch.jit.script``, ``save`` and
``load`` warn about it), and the ONNX export uses torch's TorchScript-based exporter
(``dynamo=False``), which needs nothing beyond ``onnx`` but is deprecated as well. The
functions here silence those specific deprecation warnings; both still work on the torch
versions metaprune supports (< 2.15).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from .data.checks import check_input_shape
from .data.batches import standard_format_
from .data.labels import labels_from_json, labels_to_json
from .channels.pruned_model import PrunedModel
from .pruners.base import BasePruner

__all__ = ["export_torchscript", "load_torchscript", "export_onnx", "read_onnx_metadata"]

FORMAT = "metaprune.export"
METADATA_KEY = "metaprune"
EXTRA_FILE = "metaprune.json"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ONNX_MISSING = "ONNX export needs the 'onnx' extra: pip install 'metaprune[onnx]'"

# Batch sizes of the example inputs: the export sees one, the check of the exported
# network another, so a batch size baked into the file fails the check.
_EXPORT_BATCH = 2
_CHECK_BATCH = 3


def _deployable(model, input_shape=None):
    """The network, class labels and input shape of a fitted pruner or a loaded pruned model.

    Parameters
    ----------
    model : fitted pruner or PrunedModel
        A fitted :class:`~metaprune.IterativeFilterPruner`, :class:`~metaprune.MetaVotePruner`
        or :class:`~metaprune.UniformPruner`, or a :class:`~metaprune.channels.pruned_model.PrunedModel` from
        :func:`~metaprune.load_pruned`.
    input_shape : tuple of 3 int, optional
        (C, H, W) to export for; default: the shape the network was fitted on.

    Returns
    -------
    module : torch.nn.Module
        A deep copy of the network, in eval mode, float32 on CPU, without gradients (the
        estimator's own network is left untouched).
    classes : ndarray
    input_shape : tuple of 3 int

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``model`` is a pruner that is not fitted (a ``ValueError``).
    ValueError
        If ``model`` is neither a pruner nor a ``PrunedModel``, if ``input_shape`` is not
        3 positive ints with the network's input channels, or if the network does not run
        on that shape or has not one output per class.
    """
    if isinstance(model, PrunedModel):
        module, classes, shape = model.module, model.classes_, model.input_shape
    elif isinstance(model, BasePruner):
        if not hasattr(model, "net_"):
            raise NotFittedError(f"this {type(model).__name__} is not fitted yet: "
                                 f"call fit before exporting it")
        module, classes, shape = model.net_.module_, model.classes_, model.input_shape_
    else:
        raise ValueError(f"cannot export a {type(model).__name__}: expected a fitted metaprune pruner "
                         f"(IterativeFilterPruner, MetaVotePruner, UniformPruner) or a PrunedModel from "
                         f"metaprune.load_pruned")
    module = standard_format_(copy.deepcopy(module).to(device="cpu", dtype=torch.float32)).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    classes = np.asarray(classes)
    shape = _check_input_shape(shape if input_shape is None else input_shape, module)
    example = _example(shape, _EXPORT_BATCH)
    try:
        with torch.no_grad():
            out = module(example)
    except RuntimeError as exc:
        raise ValueError(f"the network does not run on images of shape {shape}: {exc}") from exc
    if tuple(out.shape) != (_EXPORT_BATCH, len(classes)):
        raise ValueError(f"the network returns outputs of shape {tuple(out.shape[1:])} "
                         f"for {len(classes)} classes; expected one logit per class")
    return module, classes, shape


def _check_input_shape(shape, module: nn.Module) -> tuple:
    first_conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return check_input_shape(shape, None if first_conv is None else first_conv.in_channels)


def _example(shape, n: int) -> torch.Tensor:
    """A fixed pseudo-random float32 batch of ``n`` images of ``shape``."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn((n, *shape), generator=generator, dtype=torch.float32)


def _check_exported(run, module: nn.Module, shape, what: str) -> None:
    """Compare the exported network ``run`` (tensor -> ndarray) with ``module`` on a fresh batch."""
    example = _example(shape, _CHECK_BATCH)
    with torch.no_grad():
        expected = module(example).numpy()
        got = np.asarray(run(example))
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"the {what} export does not reproduce the network's outputs "
                           f"(shapes {got.shape} vs {expected.shape})")


def _metadata_json(classes, input_shape, model) -> str:
    from ._version import __version__

    return json.dumps({
        "format": FORMAT,
        "classes": labels_to_json(classes),
        "input_shape": list(input_shape),
        "input": "float32 (N, C, H, W), preprocessed like the estimator's input",
        "output": "logits, one column per class",
        "source": type(model).__name__,
        "metaprune_version": __version__,
    })


def _parse_metadata(text, where) -> tuple:
    """``(classes, input_shape)`` from the JSON written by :func:`_metadata_json`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not text:
        raise ValueError(f"{where}: no metaprune metadata (not written by metaprune.export)")
    try:
        meta = json.loads(text)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, not {FORMAT!r}")
        classes = labels_from_json(meta["classes"])
        input_shape = check_input_shape(meta["input_shape"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{where}: damaged metaprune metadata ({exc})") from exc
    return classes, input_shape


@contextlib.contextmanager
def _quiet_torchscript():
    """Silence torch's deprecation warnings for TorchScript and its ONNX exporter (see module notes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning,
                                module=r"torch\.onnx")
        yield


def export_torchscript(model, path, input_shape=None) -> Path:
    """Write a pruned network as a TorchScript archive that runs without metaprune.

    The network is compiled with ``torch.jit.script`` (no shapes baked in); a network that
    cannot be scripted is traced with ``torch.jit.trace`` instead. Either way the exported
    network is checked against the original on a batch of another size before it is saved.

    Parameters
    ----------
    model : fitted pruner or PrunedModel
        A fitted :class:`~metaprune.IterativeFilterPruner`, :class:`~metaprune.MetaVotePruner`
        or :class:`~metaprune.UniformPruner`, or a :class:`~metaprune.channels.pruned_model.PrunedModel` returned
        by :func:`~metaprune.load_pruned`. It is not modified.
    path : str or path-like
        File to write (conventionally ``.pt``).
    input_shape : tuple of 3 int, optional
        (C, H, W) of the images, stored in the file; default: the shape the network was
        fitted on.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``model`` is an unfitted pruner (``NotFittedError``) or not a pruner or
        ``PrunedModel``, or ``input_shape`` does not fit the network.

    See Also
    --------
    load_torchscript : read the file back with its class labels.

    Notes
    -----
    The archive's extra file ``metaprune.json`` holds the class labels and input shape;
    ``torch.jit.load(path, _extra_files={"metaprune.json": ""})`` reads it without metaprune.
    The module maps a float32 (N, C, H, W) batch to (N, n_classes) logits.
    """
    module, classes, input_shape = _deployable(model, input_shape)
    path = Path(path)
    with _quiet_torchscript():
        try:
            compiled = torch.jit.script(module)
        except Exception:  # noqa: BLE001 - scripting fails with several error types; tracing is the fallback
            compiled = torch.jit.trace(module, _example(input_shape, _EXPORT_BATCH))
        compiled.eval()
        _check_exported(lambda x: compiled(x).numpy(), module, input_shape, "TorchScript")
        metadata = _metadata_json(classes, input_shape, model)
        torch.jit.save(compiled, str(path), _extra_files={EXTRA_FILE: metadata})
    return path


def load_torchscript(path, map_location="cpu"):
    """Load a network written by :func:`export_torchscript`.

    Parameters
    ----------
    path : str or path-like
    map_location : str or torch.device, default="cpu"

    Returns
    -------
    module : torch.jit.ScriptModule
        In eval mode; maps a float32 (N, C, H, W) batch to (N, n_classes) logits.
    classes : ndarray
        Class labels, in the order of the logits' columns.
    input_shape : tuple of 3 int
        (C, H, W) of the images the network was exported for.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a TorchScript archive or has no (or damaged) metaprune metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no TorchScript file at {path}")
    extra = {EXTRA_FILE: ""}
    with _quiet_torchscript():
        try:
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
        except RuntimeError as exc:
            raise ValueError(f"{path}: not a TorchScript archive ({exc})") from exc
    classes, input_shape = _parse_metadata(extra[EXTRA_FILE], path)
    return module.eval(), classes, input_shape


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(ONNX_MISSING) from exc
    return onnx


def export_onnx(model, path, input_shape=None, opset=17) -> Path:
    """Write a pruned network as an ONNX model with a dynamic batch axis.

    Parameters
    ----------
    model : fitted pruner or PrunedModel
        A fitted :class:`~metaprune.IterativeFilterPruner`, :class:`~metaprune.MetaVotePruner`
        or :class:`~metaprune.UniformPruner`, or a :class:`~metaprune.channels.pruned_model.PrunedModel` returned
        by :func:`~metaprune.load_pruned`. It is not modified.
    path : str or path-like
        File to write (conventionally ``.onnx``).
    input_shape : tuple of 3 int, optional
        (C, H, W) of the images, fixed in the graph; default: the shape the network was
        fitted on. The batch axis is dynamic.
    opset : int, default=17
        ONNX opset version.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ImportError
        If the ``onnx`` package is not installed (``pip install 'metaprune[onnx]'``).
    ValueError
        If ``model`` is an unfitted pruner (``NotFittedError``) or not a pruner or
        ``PrunedModel``, or ``input_shape`` does not fit the network.

    See Also
    --------
    read_onnx_metadata : the class labels and input shape stored in the file.

    Notes
    -----
    The graph has one input ``"input"``, float32 of shape (batch, C, H, W), and one output
    ``"logits"`` of shape (batch, n_classes). The model's ``metadata_props`` entry
    ``"metaprune"`` holds the class labels and input shape as JSON. The export uses torch's
    TorchScript-based exporter (``dynamo=False``), which needs no package beyond ``onnx``;
    batch normalization is folded into the convolutions, so outputs agree with the estimator
    to float32 rounding (about 1e-5), not bit for bit. The file is checked with
    ``onnx.checker``; running it needs an ONNX runtime such as ``onnxruntime``.
    """
    onnx = _import_onnx()
    module, classes, input_shape = _deployable(model, input_shape)
    module = _fixed_adaptive_pools_(module, input_shape)
    path = Path(path)
    kwargs = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": int(opset),
              "dynamic_axes": {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:  # the default became True in torch 2.9
        kwargs["dynamo"] = False
    buffer = io.BytesIO()
    with _quiet_torchscript():
        torch.onnx.export(module, (_example(input_shape, _EXPORT_BATCH),), buffer, **kwargs)
    proto = onnx.load_from_string(buffer.getvalue())
    for entry in list(proto.metadata_props):
        if entry.key == METADATA_KEY:
            proto.metadata_props.remove(entry)
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = _metadata_json(classes, input_shape, model)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


class _FixedAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for one input size, as two matrix products (exportable to ONNX).

    torch's ONNX exporter refuses adaptive average pooling whose output size does not
    divide its input size (VGG's 7 x 7 pool after a small image). For a fixed input size the
    pool is linear: output ``(i, j)`` averages rows ``floor(i H / h) .. ceil((i + 1) H / h)``
    and the same of columns, exactly as :func:`torch.nn.functional.adaptive_avg_pool2d`.
    """

    def __init__(self, in_size, out_size):
        super().__init__()
        self.register_buffer("rows", _pooling_matrix(in_size[0], out_size[0]))
        self.register_buffer("cols", _pooling_matrix(in_size[1], out_size[1]))

    def forward(self, x):
        return torch.einsum("nchw,oh,pw->ncop", x, self.rows.to(x.dtype), self.cols.to(x.dtype))


def _pooling_matrix(n_in: int, n_out: int) -> torch.Tensor:
    weights = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def _fixed_adaptive_pools_(module: nn.Module, input_shape) -> nn.Module:
    """Replace, in place, the adaptive average pools whose output does not divide their input at
    ``input_shape`` by :class:`_FixedAdaptiveAvgPool2d` (the same values)."""
    sizes, handles = {}, []

    def record(name):
        def hook(_m, args, out):
            sizes.setdefault(name, (tuple(args[0].shape[-2:]), tuple(out.shape[-2:])))
        return hook

    for name, m in module.named_modules():
        if isinstance(m, nn.AdaptiveAvgPool2d):
            handles.append(m.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            module(_example(input_shape, 1))
    finally:
        for h in handles:
            h.remove()
    for name, (in_size, out_size) in sizes.items():
        if any(i % o for i, o in zip(in_size, out_size)):
            module.set_submodule(name, _FixedAdaptiveAvgPool2d(in_size, out_size))
    return module


def read_onnx_metadata(path):
    """The class labels and input shape stored in a model written by :func:`export_onnx`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    classes : ndarray
        Class labels, in the order of the ``"logits"`` output's columns.
    input_shape : tuple of 3 int
        (C, H, W) of the images the model takes.

    Raises
    ------
    ImportError
        If the ``onnx`` package is not installed.
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not an ONNX model or has no (or damaged) metaprune metadata.
    """
    onnx = _import_onnx()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError for non-ONNX bytes
        raise ValueError(f"{path}: not an ONNX model ({exc})") from exc
    props = {entry.key: entry.value for entry in proto.metadata_props}
    return _parse_metadata(props.get(METADATA_KEY, ""), path)
