"""Resumable pre-training checkpoints: one pickle-free safetensors file per run.

A checkpoint holds the backbone, the objective's heads, the optimizer's momentum buffers
and the torch and NumPy RNG states as tensors, with every scalar (epoch, step, history,
the estimator's parameters) as JSON in the file's metadata under the format
:data:`CHECKPOINT_FORMAT`. The file is written to a temporary name and moved into place
with :func:`os.replace`, so a kill never leaves a half-written checkpoint. Files are read
through :mod:`metaprune.backbone.safetensors_reader`: a damaged or foreign file is a
``ValueError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..architectures import architecture_of
from ..safetensors_reader import header_json, read_header, read_tensors

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "check_resumable", "restore_checkpoint"]

CHECKPOINT_FORMAT = "metaprune.pretrain_checkpoint"
"""The ``format`` entry of a pre-training checkpoint's safetensors header."""


def save_checkpoint(path, state, params):
    """Write a checkpoint of a run at the end of an epoch, atomically.

    Parameters
    ----------
    path : str or path-like
        Destination; its folder is created if needed.
    state : dict
        ``backbone``, ``objective`` (modules), ``optimizer`` (``torch.optim.SGD``),
        ``epoch``, ``step``, ``history``, ``init_fingerprint``, ``n_samples``.
    params : dict
        The estimator's JSON parameters that a resumed run must share.
    """
    from safetensors.torch import save_file

    tensors = {}
    for k, v in state["backbone"].state_dict().items():
        tensors[f"backbone.{k}"] = v.detach().cpu().contiguous()
    for k, v in state["objective"].state_dict().items():
        tensors[f"objective.{k}"] = v.detach().cpu().contiguous()
    osd = state["optimizer"].state_dict()
    for idx, st in osd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = v.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    meta = {
        "epoch": state["epoch"],
        "step": state["step"],
        "history": state["history"],
        "params": params,
        "init_fingerprint": state["init_fingerprint"],
        "spec": architecture_of(state["backbone"]).to_dict(),
        "n_samples": state["n_samples"],
        "optim_param_groups": osd["param_groups"],
        "rng_numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    header = {"format": CHECKPOINT_FORMAT, "state": json.dumps(meta)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, path)


def load_checkpoint(path):
    """``(state, tensors)`` of a checkpoint file; a damaged or foreign file is a ValueError.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    state : dict
        The JSON metadata written by :func:`save_checkpoint`.
    tensors : dict of str to torch.Tensor
    """
    header, _ = read_header(path, CHECKPOINT_FORMAT, "pre-training checkpoint")
    state = header_json(header, "state", path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: the checkpoint's 'state' entry is not a JSON object (damaged file)")
    return state, read_tensors(path, "pre-training checkpoint")


def check_resumable(state, path, params, init_fingerprint, n_samples):
    """Raise a ValueError unless the run of checkpoint ``state`` can be continued by this one.

    Parameters
    ----------
    state : dict
        From :func:`load_checkpoint`.
    path : str or path-like
        The checkpoint, for messages.
    params : dict
        This run's JSON parameters; they must equal the checkpoint's.
    init_fingerprint : str
        Fingerprint of this run's initial backbone.
    n_samples : int
        Number of training images of this run.
    """
    if state["params"] != params or state["init_fingerprint"] != init_fingerprint:
        raise ValueError(
            f"checkpoint {path} was made with other parameters or another initial backbone; "
            "delete it or use another checkpoint_path"
        )
    if state["n_samples"] != n_samples:
        raise ValueError(f"checkpoint {path} was made on {state['n_samples']} samples, X has {n_samples}")


def restore_checkpoint(state, tensors, backbone, objective, optimizer, device):
    """Load a checkpoint into a run: weights, heads, optimizer buffers and both RNG states.

    Parameters
    ----------
    state, tensors
        From :func:`load_checkpoint`.
    backbone, objective : torch.nn.Module
        Modules of the same architecture as the checkpoint's, loaded in place.
    optimizer : torch.optim.Optimizer
        Built with the same parameter groups, loaded in place.
    device : torch.device
        Where the optimizer's buffers go.

    Returns
    -------
    epoch, step : int
        Epochs and steps already done.
    history : list of dict
        The per-epoch records so far.
    """
    backbone.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("backbone.")})
    objective.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("objective.")})
    ostate = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            ostate.setdefault(int(idx), {})[name] = v.to(device)
    optimizer.load_state_dict({"state": ostate, "param_groups": state["optim_param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    kind, pos, has_gauss, cached = state["rng_numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
    return state["epoch"], state["step"], state["history"]
