"""The jobs that build what pruning starts from: pre-train a backbone, prune training tasks into a bank.

Each function takes loaded data (:class:`~metaprune.data.loaders.ImageDataset`) and file paths,
does one job with the library's estimators, writes its files, and returns a dict that the
command line prints. Errors a user can cause (missing files, wrong data, bad values) raise
``ValueError``, ``FileNotFoundError`` or another ``OSError`` with a message meant for them.
Normalisation statistics travel with the networks (see :mod:`metaprune.cli.network_input`).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..channels.filter_space import input_channels
from ..pruners.params import given_parameters
from .network_input import check_channels, preprocess, stored_normalisation
from .paths import with_parent_folders
from .task_files import read_tasks, write_tasks

__all__ = ["pretrain_backbone", "build_bank"]


def pretrain_backbone(data, out, *, method="simclr", width=8, epochs=30, batch_size=256, lr=None,
                      warmup_epochs=0.0, checkpoint=None, resume=False, data_name="", device="cpu",
                      n_threads="auto", random_state=0, verbose=1) -> dict:
    """Pre-train a CIFAR-style ResNet-18 on images and save it as a backbone file.

    The backbone is written by :func:`~metaprune.backbone.resnet.save_backbone`. The
    normalisation statistics are computed on ``data.images`` and stored in the backbone's
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
    save_backbone(estimator.backbone_, with_parent_folders(out), metadata=metadata)
    return {"out": str(out), "method": method, "n_images": len(data), "epochs": epochs,
            "final_loss": estimator.history_[-1]["loss"] if estimator.history_ else None,
            "n_params": count_parameters(estimator.backbone_), "fit_time_s": time.perf_counter() - start,
            "resumed": resumed}


def build_bank(backbone_path, data, bank_path, *, tasks_file=None, n_tasks=None, n_way=5,
               n_test_per_class=100, n_train_per_class=None, random_state=0, write_tasks_to=None,
               data_name="", n_jobs=None, pruning_ratio=None, n_iterations=None, prune_every=None, lr=None,
               batch_size=None, device="cpu", n_threads="auto", progress=True) -> dict:
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
        JSON task list (:func:`metaprune.cli.task_files.read_tasks`); otherwise tasks are sampled.
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
    pruning_ratio, n_iterations, prune_every, lr, batch_size : optional
        :class:`~metaprune.IterativeFilterPruner` settings; None keeps the estimator's
        default (``prune_every``: 30% of ``n_iterations``).
    device : str, default="cpu"
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
    check_channels(input_channels(backbone), data, f"backbone {backbone_path}")
    if tasks_file is not None:
        tasks = read_tasks(tasks_file)
    else:
        if n_tasks is None:
            raise ValueError("give a number of tasks to sample or a task file")
        sampler = TaskSampler(data.labels, n_test_per_class=n_test_per_class, random_state=random_state)
        tasks = sampler.sample(n_tasks, n_way=n_way, n_train_per_class=n_train_per_class)
    check_tasks(tasks, data.labels)  # before any file is written
    if write_tasks_to is not None:
        write_tasks(with_parent_folders(write_tasks_to), tasks, data=data_name, n_images=len(data))
    X, _ = preprocess(data.images, stored_normalisation(backbone_metadata(backbone_path)))
    settings = given_parameters(pruning_ratio=pruning_ratio, n_iterations=n_iterations, prune_every=prune_every, lr=lr,
                                batch_size=batch_size)
    pruner = IterativeFilterPruner(device=device, n_threads=n_threads, random_state=random_state, **settings)
    start = time.perf_counter()
    with PrunedModelBank(backbone, path=with_parent_folders(bank_path)) as bank:
        bank.build(tasks, pruner, X, data.labels, n_jobs=n_jobs, progress=progress)
        done = bank.last_build  # what this build did, whatever other builds of the file did meanwhile
        return {"bank": str(bank_path), "n_tasks": len(tasks), "added": len(done.added),
                "already_stored": len(done.already_stored), "left_to_others": len(done.left_to_others),
                "bank_size": len(bank), "build_time_s": time.perf_counter() - start}
