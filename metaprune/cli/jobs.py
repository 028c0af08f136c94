"""The work behind the ``metaprune`` sub-commands, as plain functions.

Each function takes loaded data (:class:`~metaprune.data.loaders.ImageDataset`) and file paths,
does one job with the library's estimators, writes its files, and returns a dict that the
command line prints. Errors a user can cause (missing files, wrong data, bad values) raise
``ValueError``, ``FileNotFoundError`` or another ``OSError`` with a message meant for them.
Normalisation statistics travel with the networks (see :mod:`metaprune.cli.data_args`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .data_args import (accuracy_report, check_not_input, check_output_path, holdout_split, preprocess,
                        read_tasks, select_classes, stored_holdout, stored_normalisation, write_tasks)

__all__ = ["pretrain_backbone", "build_bank", "prune_task", "evaluate_pruned", "export_pruned",
           "describe_file", "default_prune_every"]


def _check_channels(network_channels, data, what, input_shape=None, hint=""):
    """Raise a ValueError when the images of ``data`` do not fit a network.

    Parameters
    ----------
    network_channels : int
        Input channels of the network.
    data : ImageDataset
        The images (N, H, W, C).
    what : str
        The network in the message, after "the": ``"backbone"``, ``"backbone PATH"``,
        ``"bank PATH"`` ...
    input_shape : tuple of 3 int, optional
        ``(C, H, W)`` the network was fitted on (a bank's image shape); None checks the
        channels only (a backbone takes any image size).
    hint : str, default=""
        What to do, appended to the message.
    """
    height, width, channels = data.image_shape
    shape = (channels, height, width)
    if input_shape is not None and tuple(input_shape) != shape:
        raise ValueError(f"the images have shape {shape} (C, H, W) but the {what} expects images of shape "
                         f"{tuple(input_shape)}{hint}")
    if channels != network_channels:
        raise ValueError(f"the images have {channels} channel(s) but the {what} expects "
                         f"{network_channels}{hint}")


def _out_path(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def pretrain_backbone(data, out, *, method="simclr", width=8, epochs=30, batch_size=256, lr=None,
                      warmup_epochs=0.0, checkpoint=None, resume=False, data_name="", device="cpu",
                      n_threads="auto", random_state=0, verbose=1) -> dict:
    """Pre-train a CIFAR-style ResNet-18 on images and save it with :func:`~metaprune.backbone.resnet.save_backbone`.

    The normalisation statistics are computed on ``data.images`` and stored in the backbone's
    metadata, with the method, epochs, width, data set and per-epoch losses.

    Parameters
    ----------
    data : ImageDataset
        Training images (labels are used by ``method="supervised"`` only).
    out : str or path-like
        Backbone file to write (its folder is created).
    method : {"simclr", "simsiam", "supervised"}, default="simclr"
    width : int, default=8
        Channels of the first stage.
    epochs : int, default=30
    batch_size : int, default=256
    lr : float, optional
        Base learning rate; default that of the pre-trainer (0.06 self-supervised, 0.1
        supervised).
    warmup_epochs : float, default=0
    checkpoint : str or path-like, optional
        Resumable checkpoint written after every epoch.
    resume : bool, default=False
        Continue from ``checkpoint`` when it exists. Without it an existing checkpoint is an
        error (it is never overwritten by accident).
    data_name : str
        How the data was named (stored in the metadata).
    device : str, default="cpu"
    n_threads : "auto", int or None, default="auto"
        Torch CPU threads of the estimators (see :mod:`metaprune.runtime.threads`).
    random_state : int, default=0
    verbose : int, default=1
        Show a progress bar over the epochs.

    Returns
    -------
    dict
        ``out``, ``method``, ``n_images``, ``epochs``, ``final_loss``, ``n_params``,
        ``fit_time_s``, ``resumed``.
    """
    from ..channels.complexity import count_parameters
    from ..backbone.resnet import save_backbone
    from ..data.preprocessing import ImageToTensor
    from ..backbone.pretrain import SimSiamPretrainer, SupervisedPretrainer

    if method not in ("simclr", "simsiam", "supervised"):
        raise ValueError(f"method must be 'simclr', 'simsiam' or 'supervised', got {method!r}")
    resumed = checkpoint is not None and Path(checkpoint).exists()
    if resumed and not resume:
        raise FileExistsError(f"checkpoint {checkpoint} exists: pass --resume to continue it, or delete it")
    scaler = ImageToTensor().fit(data.images)
    mean, std = scaler.mean_.tolist(), scaler.std_.tolist()
    params = dict(width=width, epochs=epochs, batch_size=batch_size, warmup_epochs=warmup_epochs, mean=mean,
                  std=std, checkpoint_path=None if checkpoint is None else str(checkpoint), knn_every=0,
                  device=device, n_threads=n_threads, random_state=random_state, verbose=verbose)
    if lr is not None:
        params["lr"] = lr
    if method == "supervised":
        estimator = SupervisedPretrainer(**params)
    else:
        estimator = SimSiamPretrainer(method=method, **params)
    start = time.perf_counter()
    estimator.fit(data.images, data.labels if method == "supervised" else None)
    metadata = {"made_by": "metaprune pretrain", "method": method, "epochs": epochs, "width": width,
                "batch_size": batch_size, "lr": estimator.lr, "warmup_epochs": warmup_epochs,
                "seed": random_state, "data": data_name, "n_images": len(data),
                "image_shape": list(data.image_shape), "mean": mean, "std": std,
                "history": [{"epoch": h["epoch"], "loss": h["loss"]} for h in estimator.history_]}
    if method == "supervised":
        metadata["classes"] = [int(c) for c in estimator.classes_]
        metadata["class_names"] = [data.class_names[int(c)] for c in estimator.classes_]
    save_backbone(estimator.backbone_, _out_path(out), metadata=metadata)
    return {"out": str(out), "method": method, "n_images": len(data), "epochs": epochs,
            "final_loss": estimator.history_[-1]["loss"] if estimator.history_ else None,
            "n_params": count_parameters(estimator.backbone_), "fit_time_s": time.perf_counter() - start,
            "resumed": resumed}


def default_prune_every(n_iterations) -> int:
    """Iterations between IFP pruning events when none is given: 30% of the run (60 of 200)."""
    return max(1, int(round(0.3 * n_iterations)))


def build_bank(backbone_path, data, bank_path, *, tasks_file=None, n_tasks=None, n_way=5,
               n_test_per_class=100, n_train_per_class=None, random_state=0, write_tasks_to=None,
               data_name="", n_jobs=None, pruning_ratio=0.9, n_iterations=200, prune_every=None, lr=1e-4,
               batch_size=128, device="cpu", n_threads="auto", progress=True) -> dict:
    """Prune training tasks with IFP into a bank file; tasks already stored are skipped.

    Parameters
    ----------
    backbone_path : str or path-like
        Backbone file; its stored normalisation (if any) is applied to the images, else the
        statistics of ``data.images`` are.
    data : ImageDataset
        The data set the tasks index into.
    bank_path : str or path-like
        Bank file: created, or opened and completed when it holds a bank of this backbone.
    tasks_file : str or path-like, optional
        JSON task list (:func:`metaprune.cli.data_args.read_tasks`); otherwise tasks are sampled.
    n_tasks, n_way, n_test_per_class, n_train_per_class : int
        Sampling (:class:`metaprune.data.tasks.TaskSampler`); the same ``random_state`` and data
        give the same tasks, so re-running a build resumes it, and a larger ``n_tasks``
        extends it.
    random_state : int, default=0
        Seeds the sampling and the pruners.
    write_tasks_to : str or path-like, optional
        Write the task list here (before pruning).
    data_name : str
        How the data was named (stored in the task file).
    n_jobs : int, optional
        Parallel jobs (joblib).
    pruning_ratio, n_iterations, prune_every, lr, batch_size, device
        :class:`~metaprune.IterativeFilterPruner` settings; ``prune_every`` defaults to
        :func:`default_prune_every`.
    progress : bool, default=True
        Progress bar over the tasks.

    Returns
    -------
    dict
        ``bank``, ``n_tasks`` (asked for), ``added`` (by this build), ``already_stored``,
        ``left_to_others`` (being pruned by another running build), ``bank_size``,
        ``build_time_s``.
    """
    from ..bank import PrunedModelBank
    from ..backbone.resnet import backbone_metadata, load_backbone
    from ..pruners import IterativeFilterPruner
    from ..data.tasks import TaskSampler, check_tasks

    backbone = load_backbone(backbone_path)
    _check_channels(backbone.conv1.in_channels, data, f"backbone {backbone_path}")
    if tasks_file is not None:
        tasks = read_tasks(tasks_file)
    else:
        if n_tasks is None:
            raise ValueError("give a number of tasks to sample or a task file")
        sampler = TaskSampler(data.labels, n_test_per_class=n_test_per_class, random_state=random_state)
        tasks = sampler.sample(n_tasks, n_way=n_way, n_train_per_class=n_train_per_class)
    check_tasks(tasks, data.labels)  # before any file is written
    if write_tasks_to is not None:
        write_tasks(_out_path(write_tasks_to), tasks, data=data_name, n_images=len(data))
    X, _ = preprocess(data.images, stored_normalisation(backbone_metadata(backbone_path)))
    pruner = IterativeFilterPruner(pruning_ratio=pruning_ratio, n_iterations=n_iterations,
                                   prune_every=prune_every or default_prune_every(n_iterations), lr=lr,
                                   batch_size=batch_size, device=device, n_threads=n_threads,
                                   random_state=random_state)
    start = time.perf_counter()
    with PrunedModelBank(backbone, path=_out_path(bank_path)) as bank:
        bank.build(tasks, pruner, X, data.labels, n_jobs=n_jobs, progress=progress)
        done = bank.last_build  # what this build did, whatever other builds of the file did meanwhile
        return {"bank": str(bank_path), "n_tasks": len(tasks), "added": len(done.added),
                "already_stored": len(done.already_stored), "left_to_others": len(done.left_to_others),
                "bank_size": len(bank), "build_time_s": time.perf_counter() - start}


def prune_task(method, data, out, *, bank_path=None, backbone_path=None, data_name="", n_neighbors=None,
               similarity="classes", n_iterations=None, pruning_ratio=None, prune_every=None, lr=None,
               batch_size=128, test_fraction=0.0, device="cpu", n_threads="auto", random_state=0,
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
        MVP voters; default ``min(10, len(bank))``.
    similarity : {"classes", "prototypes"}, default="classes"
        MVP task similarity: shared class labels, or prototype cosine similarity.
    n_iterations, pruning_ratio, lr, batch_size
        Pruner settings; None keeps the estimator's default (MVP's pruning ratio then
        follows its neighbours).
    prune_every : int, optional
        IFP only; default :func:`default_prune_every`.
    test_fraction : float, default=0
        Fraction of every class held out (:func:`metaprune.cli.data_args.holdout_split`) and
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
            _check_channels(backbone.conv1.in_channels, data, f"bank {bank_path}", built_on,
                            hint=(" (the images its tasks were pruned on)" if built_on is not None else
                                  " (its backbone's input channels)")
                            + "; give images like those of the bank's tasks, or a bank built on such images")
        else:
            _check_channels(backbone.conv1.in_channels, data, f"backbone {backbone_path}")
        X, normalisation = preprocess(data.images, normalisation, source=backbone_path)
        y = data.labels
        train, test = holdout_split(y, test_fraction, random_state)
        common = {"batch_size": batch_size, "device": device, "n_threads": n_threads,
                  "random_state": random_state, "verbose": verbose}
        common.update({k: v for k, v in (("lr", lr), ("n_iterations", n_iterations)) if v is not None})
        ratio = {} if pruning_ratio is None else {"pruning_ratio": pruning_ratio}
        if method == "mvp":
            sim = SharedClassSimilarity() if similarity == "classes" else PrototypeSimilarity(device=device)
            estimator = MetaVotePruner(bank, n_neighbors=n_neighbors or min(10, len(bank)), similarity=sim,
                                       pruning_ratio=pruning_ratio, **common)
        elif method == "ifp":
            iterations = n_iterations if n_iterations is not None else 200
            common["n_iterations"] = iterations
            every = prune_every or default_prune_every(iterations)
            estimator = IterativeFilterPruner(backbone, prune_every=every, **common, **ratio)
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
        estimator.save(_out_path(out), metadata=metadata)
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
        :func:`metaprune.cli.data_args.accuracy_report`), ``classes``, ``n_params``, ``flops``,
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

    out = _out_path(out)
    if fmt == "torchscript":
        export.export_torchscript(model, out)
    else:
        export.export_onnx(model, out)
    return {"out": str(out), "format": fmt, "bytes": out.stat().st_size}


def describe_file(path, limit=20) -> list:
    """Describe a bank, pruned network or backbone file, as lines of text.

    Parameters
    ----------
    path : str or path-like
    limit : int, default=20
        Bank tasks listed (0: all).

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If it is none of those files, or is damaged.
    """
    import json

    from ..backbone.safetensors_reader import safetensors_format
    from ..channels.complexity import count_flops, count_parameters

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = f"{path.stat().st_size / 1e6:.2f} MB"
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3"):
        from ..bank import PrunedModelBank

        with PrunedModelBank.open(path, read_only=True) as bank:
            ids = bank.task_ids
            lines = [f"bank {path} ({size}): {len(ids)} tasks, labels {bank.label_kind}, "
                     f"backbone {bank.fingerprint[:12]} ({count_parameters(bank.backbone)} parameters)",
                     "groups: " + ", ".join(f"{g.name}={g.size}" for g in bank.filter_space)]
            shown = ids if not limit else ids[:limit]
            for task_id in shown:
                record = bank.record(task_id)
                kept = sum(len(v) for v in record.selection.values())
                metrics = dict(record.metrics)
                cost = (f"params {metrics.pop('n_params', '?')}, FLOPs/image {metrics.pop('flops', '?')}, ")
                rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
                lines.append(f"  {task_id}: classes {record.classes.tolist()}, {kept} channels kept, {cost}"
                             f"metrics {json.dumps(rounded)}")
            if len(shown) < len(ids):
                lines.append(f"  ... and {len(ids) - len(shown)} more tasks (--limit 0 lists all)")
        return lines
    fmt = safetensors_format(path)
    if fmt == "metaprune.pruned":
        from ..channels.pruned_model import load_pruned

        model = load_pruned(path)
        flops = count_flops(model.module, model.input_shape)
        return [f"pruned network {path} ({size}): classes {model.classes_.tolist()}, "
                f"input {model.input_shape}",
                f"parameters {count_parameters(model.module)}, FLOPs/image {flops}",
                "kept channels: " + ", ".join(f"{g}={len(v)}" for g, v in model.selection.items()),
                "metadata: " + json.dumps(model.metadata, default=str)]
    if fmt == "metaprune.backbone":
        from ..channels.filter_space import FilterSpace
        from ..backbone.resnet import backbone_metadata, load_backbone

        net = load_backbone(path)
        metadata = backbone_metadata(path)
        shape = _stored_chw(metadata.get("image_shape"), net.conv1.in_channels)
        flops = "" if shape is None else f", FLOPs/image {_flops_or_na(net, shape)}"
        return [f"backbone {path} ({size}): {count_parameters(net)} parameters{flops}",
                "groups: " + ", ".join(f"{g.name}={g.size}" for g in FilterSpace.from_model(net)),
                "metadata: " + json.dumps(metadata)]
    raise ValueError(f"{path} is not a metaprune bank, pruned network or backbone file")


def _stored_chw(image_shape, in_channels):
    """(C, H, W) of a backbone's stored ``image_shape`` (H, W, C), or None when absent or unusable."""
    from ..data.checks import check_input_shape

    if not isinstance(image_shape, list) or len(image_shape) != 3:
        return None
    try:
        return check_input_shape((image_shape[2], image_shape[0], image_shape[1]), in_channels)
    except ValueError:
        return None


def _flops_or_na(net, shape):
    """FLOPs of ``net`` on one image of ``shape``, or a note when it does not run on that shape."""
    from ..channels.complexity import count_flops

    try:
        return count_flops(net, shape)
    except RuntimeError:  # e.g. a stored image shape smaller than the stem's kernel
        return f"n/a (the network does not run on images of shape {shape})"
