"""The jobs on a new task: prune it to a pruned network file, then score or export that network.

Each function takes loaded data (:class:`~metaprune.data.loaders.ImageDataset`) and file paths,
does one job with the library's estimators, writes its files, and returns a dict that the
command line prints. Errors a user can cause (missing files, wrong data, bad values) raise
``ValueError``, ``FileNotFoundError`` or another ``OSError`` with a message meant for them.
Normalisation statistics travel with the networks (see :mod:`metaprune.cli.network_input`).
"""

from __future__ import annotations

import numpy as np

from ..channels.filter_space import input_channels
from ..pruners.params import constructor_defaults, given_parameters
from .data_sources import select_classes
from .network_input import check_channels, preprocess, stored_normalisation
from .paths import check_not_input, check_output_path, with_parent_folders
from .scoring import accuracy_report, holdout_split, stored_holdout

__all__ = ["prune_task", "evaluate_pruned", "export_pruned"]


def prune_task(method, data, out, *, bank_path=None, backbone_path=None, data_name="", n_neighbors=None,
               similarity="classes", n_iterations=None, pruning_ratio=None, prune_every=None, lr=None,
               batch_size=None, test_fraction=0.0, device="cpu", n_threads="auto", random_state=0,
               verbose=1) -> dict:
    """Prune the backbone for one task (all images of ``data``) and save the pruned network.

    Parameters
    ----------
    method : {"mvp", "ifp", "uniform"}
        :class:`~metaprune.MetaVotePruner` (needs ``bank_path``),
        :class:`~metaprune.IterativeFilterPruner` or :class:`~metaprune.UniformPruner`
        (need ``backbone_path``).
    data : ImageDataset
        The task's images and global labels (at least two classes).
    out : str or path-like
        Pruned network file (:func:`metaprune.channels.pruned_model.load_pruned` reads it). Its metadata holds
        the method, data, class names, normalisation, held-out split and accuracy.
    bank_path : str or path-like, optional
        Bank for MVP.
    backbone_path : str or path-like, optional
        Backbone for IFP and uniform. For MVP it is optional and only supplies the
        normalisation statistics; it must be the bank's backbone. Without stored statistics,
        those of the task's images are used.
    data_name : str
        How the data was named (stored in the metadata).
    n_neighbors : int, optional
        MVP voters; default the estimator's (10), at most ``len(bank)``.
    similarity : {"classes", "prototypes"}, default="classes"
        MVP task similarity: shared class labels, or prototype cosine similarity.
    n_iterations, pruning_ratio, lr, batch_size
        Pruner settings; None keeps the estimator's default (MVP's pruning ratio then
        follows its neighbours).
    prune_every : int, optional
        IFP only; default :func:`~metaprune.pruners.schedule.default_prune_every`.
    test_fraction : float, default=0
        Fraction of every class held out (:func:`metaprune.cli.scoring.holdout_split`) and
        scored after pruning.
    device : str, default="cpu"
    n_threads : "auto", int or None, default="auto"
        Torch CPU threads of the estimators (see :mod:`metaprune.runtime.threads`).
    random_state : int, default=0
        Seeds the split and the pruner.
    verbose : int, default=1
        Progress bar over the fine-tuning iterations.

    Returns
    -------
    dict
        ``out``, ``method``, ``classes``, ``n_train``, ``n_test``, ``test_accuracy`` (None
        without a held-out part), ``n_params``, ``flops``, ``dense_params``, ``dense_flops``,
        ``n_iter``, ``fit_time_s`` and, for MVP, ``neighbors``.

    Raises
    ------
    ValueError
        Before any training, if an option does not apply, ``out`` is a folder or one of the
        input files, a file is not what it should be, or the images do not fit: their
        channels must be the backbone's and, for MVP, their shape that of the images the
        bank's tasks were pruned on (the message names the bank and the shape it expects).
    FileNotFoundError
        If an input file does not exist.
    """
    from ..bank import PrunedModelBank
    from ..channels.complexity import count_flops, count_parameters
    from ..backbone.resnet import backbone_metadata, fingerprint, load_backbone
    from ..pruners import IterativeFilterPruner, MetaVotePruner, UniformPruner
    from ..meta.similarity import PrototypeSimilarity, SharedClassSimilarity

    if method not in ("mvp", "ifp", "uniform"):
        raise ValueError(f"method must be 'mvp', 'ifp' or 'uniform', got {method!r}")
    if method == "mvp" and bank_path is None:
        raise ValueError("method 'mvp' needs a bank (--bank)")
    if method != "mvp" and backbone_path is None:
        raise ValueError(f"method {method!r} needs a backbone (--backbone)")
    if similarity not in ("classes", "prototypes"):
        raise ValueError(f"similarity must be 'classes' or 'prototypes', got {similarity!r}")
    if len(np.unique(data.labels)) < 2:
        raise ValueError("a task needs images of at least two classes")
    check_output_path(out)
    check_not_input(out, [(backbone_path, "backbone"), (bank_path, "bank")])
    bank = None
    normalisation = None
    try:
        if backbone_path is not None:
            backbone = load_backbone(backbone_path)
            normalisation = stored_normalisation(backbone_metadata(backbone_path), source=backbone_path)
        if method == "mvp":
            bank = PrunedModelBank.open(bank_path, read_only=True)
            if backbone_path is not None and fingerprint(backbone) != bank.fingerprint:
                raise ValueError(f"{backbone_path} is not the backbone of the bank {bank_path}")
            backbone = bank.backbone
            built_on = bank.input_shape
            check_channels(input_channels(backbone), data, f"bank {bank_path}", built_on,
                            hint=(" (the images its tasks were pruned on)" if built_on is not None else
                                  " (its backbone's input channels)")
                            + "; give images like those of the bank's tasks, or a bank built on such images")
        else:
            check_channels(input_channels(backbone), data, f"backbone {backbone_path}")
        X, normalisation = preprocess(data.images, normalisation, source=backbone_path)
        y = data.labels
        train, test = holdout_split(y, test_fraction, random_state)
        common = {"device": device, "n_threads": n_threads, "random_state": random_state, "verbose": verbose,
                  **given_parameters(lr=lr, n_iterations=n_iterations, batch_size=batch_size)}
        ratio = given_parameters(pruning_ratio=pruning_ratio)
        if method == "mvp":
            sim = SharedClassSimilarity() if similarity == "classes" else PrototypeSimilarity(device=device)
            estimator = MetaVotePruner(bank, n_neighbors=n_neighbors or min(constructor_defaults(MetaVotePruner)["n_neighbors"], len(bank)), similarity=sim,
                                       pruning_ratio=pruning_ratio, **common)
        elif method == "ifp":
            estimator = IterativeFilterPruner(backbone, prune_every=prune_every, **common, **ratio)
        else:
            estimator = UniformPruner(backbone, **common, **ratio)
        estimator.fit(X[train], y[train])
        accuracy = float(estimator.score(X[test], y[test])) if len(test) else None
        classes = [int(c) for c in estimator.classes_]
        result = {"out": str(out), "method": method, "classes": classes,
                  "class_names": [data.class_names[c] for c in classes], "n_train": int(len(train)),
                  "n_test": int(len(test)), "test_accuracy": accuracy, "n_params": int(estimator.n_params_),
                  "flops": int(estimator.flops_), "dense_params": count_parameters(backbone),
                  "dense_flops": count_flops(backbone, X.shape[1:]), "n_iter": int(estimator.n_iter_),
                  "fit_time_s": float(estimator.fit_time_)}
        if method == "mvp":
            result["neighbors"] = [task_id for task_id, _ in estimator.neighbors_]
        metadata = {"method": method, "data": data_name, "class_names": result["class_names"],
                    "mean": normalisation[0], "std": normalisation[1], "test_fraction": test_fraction,
                    "seed": random_state, "test_accuracy": accuracy, "n_train": result["n_train"],
                    "n_test": result["n_test"],
                    "source": str(bank_path if method == "mvp" else backbone_path)}
        if method == "mvp":
            metadata["neighbors"] = result["neighbors"]
        estimator.save(with_parent_folders(out), metadata=metadata)
        return result
    finally:
        if bank is not None:
            bank.close()


def evaluate_pruned(model_path, data, *, classes=None, held_out=False, device="cpu",
                    n_threads="auto") -> dict:
    """Accuracy of a saved pruned network on images of its classes.

    The images are normalised with the statistics stored in the network's metadata (by
    ``metaprune prune``); a network saved without them gets those of the images.

    Parameters
    ----------
    model_path : str or path-like
        A pruned network file.
    data : ImageDataset
        Images with global labels. Only images of the network's classes are scored.
    classes : str or sequence of int, optional
        Score only these classes (a subset of the network's).
    held_out : bool, default=False
        Score only the images ``metaprune prune --test-fraction`` held out: the same data and
        the network's classes give the same split. Not with ``classes``.
    device : str, default="cpu"
    n_threads : "auto", int or None, default="auto"
        Torch CPU threads for the prediction pass (:func:`metaprune.runtime.threads.torch_threads`).

    Returns
    -------
    dict
        ``model``, ``accuracy``, ``n_images``, ``per_class`` (see
        :func:`metaprune.cli.scoring.accuracy_report`), ``classes``, ``n_params``, ``flops``,
        ``normalisation`` (``"stored"`` or ``"computed"``).

    Raises
    ------
    ValueError
        If the file is not a pruned network or is damaged (its stored normalisation or
        held-out split included), or the data does not fit it: other class names, no image
        of its classes, other channels or image size (the messages name the file).
    FileNotFoundError
        If there is no file at ``model_path``.
    """
    from ..channels.complexity import count_flops, count_parameters
    from ..channels.pruned_model import load_pruned
    from ..runtime.threads import torch_threads

    model = load_pruned(model_path, map_location=device)
    model_classes = _model_class_ids(model, data)
    stored_names = model.metadata.get("class_names")
    if isinstance(stored_names, list) and len(stored_names) == len(model_classes):
        for c, name in zip(model_classes, stored_names):
            if data.class_names[c] != name:
                raise ValueError(f"class {c} of the data is {data.class_names[c]!r} but the network's class "
                                 f"{c} is {name!r}: is this the data it was pruned on?")
    if classes is not None:
        if held_out:
            raise ValueError("the held-out images are those of all the network's classes; leave out the "
                             "classes")
        data = select_classes(data, classes)
        extra = sorted(set(np.unique(data.labels).tolist()) - set(model_classes))
        if extra:
            raise ValueError(f"the network does not predict class(es) {extra}; its classes are "
                             f"{model_classes}")
    else:
        keep = np.isin(data.labels, model_classes)
        if not keep.any():
            raise ValueError(f"the data has no images of the network's classes {model_classes}")
        data = data.subset(keep)
    if held_out:
        fraction, seed = stored_holdout(model.metadata, model_path)
        _, test = holdout_split(data.labels, fraction, seed)
        data = data.subset(test)
    normalisation = stored_normalisation(model.metadata, source=model_path)
    if len(model.input_shape) == 3 and data.image_shape[-1] != model.input_shape[0]:
        raise ValueError(f"the images have {data.image_shape[-1]} channel(s) but the network {model_path} "
                         f"expects {model.input_shape[0]}")
    X, _ = preprocess(data.images, normalisation, source=model_path)
    if tuple(X.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"the images have shape {tuple(X.shape[1:])} (C, H, W) but the network {model_path} "
                         f"was pruned on {tuple(model.input_shape)}")
    with torch_threads(n_threads):
        predicted = model.predict(X)
    report = accuracy_report(data.labels, predicted, data.class_names)
    report.update({"model": str(model_path), "classes": model_classes,
                   "n_params": count_parameters(model.module),
                   "flops": count_flops(model.module, model.input_shape),
                   "normalisation": "computed" if normalisation is None else "stored"})
    return report


def _model_class_ids(model, data) -> list:
    """The network's classes as class ids of ``data`` (names are looked up in its class names)."""
    classes = np.asarray(model.classes_)
    if classes.dtype.kind in "iu":
        ids = [int(c) for c in classes]
        if max(ids) >= data.n_classes or min(ids) < 0:
            raise ValueError(f"the network predicts class ids {ids} but the data has ids "
                             f"0..{data.n_classes - 1}")
        return ids
    index = {name: i for i, name in enumerate(data.class_names)}
    missing = [str(c) for c in classes if str(c) not in index]
    if missing:
        raise ValueError(f"the network's classes {missing} are not classes of the data")
    return [index[str(c)] for c in classes]


def export_pruned(model_path, out, fmt="torchscript") -> dict:
    """Export a saved pruned network with :mod:`metaprune.export`.

    Parameters
    ----------
    model_path : str or path-like
        A pruned network file.
    out : str or path-like
        File to write (its folder is created).
    fmt : {"torchscript", "onnx"}, default="torchscript"

    Returns
    -------
    dict
        ``out``, ``format``, ``bytes`` (size of the written file).

    Raises
    ------
    ValueError
        If ``out`` is a folder or the network file itself, or the network file is damaged.
    FileNotFoundError
        If there is no network file at ``model_path``.
    """
    from ..channels.pruned_model import load_pruned

    if fmt not in ("torchscript", "onnx"):
        raise ValueError(f"format must be 'torchscript' or 'onnx', got {fmt!r}")
    check_output_path(out)  # torch.jit.save raises a RuntimeError for a folder, after the export
    check_not_input(out, [(model_path, "pruned network")])
    model = load_pruned(model_path)
    from .. import export

    out = with_parent_folders(out)
    if fmt == "torchscript":
        export.export_torchscript(model, out)
    else:
        export.export_onnx(model, out)
    return {"out": str(out), "format": fmt, "bytes": out.stat().st_size}
