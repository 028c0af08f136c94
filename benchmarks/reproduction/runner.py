"""Run a reproduction: choose learning rates on validation tasks, build the bank, run every cell.

A *cell* is one fit of one method on one task (e.g. MVP with N=5 neighbours sharing c=3
classes with test task 2). Every finished cell is written at once to
``<results>/cells/<cell id>.json`` and skipped when the run is started again; the bank is a
resumable :class:`metaprune.PrunedModelBank` file in the cache folder. So a killed run loses
at most the cells in flight.

Nothing here looks at a test task's held-out images except to score the fitted model: the
learning rates come from validation tasks whose train and test images both come from the
training pools (see :func:`validation_tasks`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed

import metaprune
from metaprune import IterativeFilterPruner, MetaVotePruner, PrunedModelBank, UniformPruner
from metaprune.analysis import TrainingMonitor, selection_at, weight_change
from metaprune.data.loaders import default_cifar100_path, load_cifar100, load_digits_images
from metaprune.backbone.resnet import cifar_resnet18, load_backbone, save_backbone
from metaprune.data.preprocessing import CIFAR100_MEAN, CIFAR100_STD, ImageToTensor
from metaprune.pruners.schedule import default_prune_every
from metaprune.meta.similarity import PrototypeSimilarity
from metaprune.data.tasks import Task, TaskSampler

from .presets import Preset

CHECKPOINTS = Path(metaprune.__file__).resolve().parent / "checkpoints"


# -- data, backbones, tasks --------------------------------------------------------------------------

def load_data(preset: Preset):
    """Preprocessed images (float32 NCHW) and integer labels of the preset's data set."""
    if preset.dataset == "cifar100":
        path = default_cifar100_path()
        if path is None:
            raise SystemExit("CIFAR-100 not found: set METAPRUNE_CIFAR100 or place it at "
                             "../shared/data/cifar100/train.npz")
        data = load_cifar100(path)
        X = ImageToTensor(mean=CIFAR100_MEAN, std=CIFAR100_STD).fit_transform(data.images)
    elif preset.dataset == "digits":
        data = load_digits_images()
        X = ImageToTensor(mean="auto", std="auto").fit_transform(data.images)
    else:
        raise ValueError(f"unknown dataset {preset.dataset!r}")
    return np.ascontiguousarray(X, dtype=np.float32), np.asarray(data.labels, dtype=np.int64)


def backbone_paths(preset: Preset, cache: Path, in_channels: int, n_classes: int) -> dict:
    """Files of the self-supervised ("ssl") and supervised ("sup") backbones.

    ``random`` (smoke preset), or a checkpoint that is not there in a preset with
    ``random_if_missing`` (``paper``, meant for a machine with its own checkpoints), writes a
    seeded random initialisation to the cache, so the run still exercises every step; the
    results record it. Any other missing checkpoint stops the run before any work.
    """
    paths = {}
    for key, name, seed in (("ssl", preset.backbone, 0), ("sup", preset.supervised_backbone, 1)):
        candidate = Path(name) if Path(name).is_absolute() else CHECKPOINTS / name
        if name != "random" and candidate.is_file():
            paths[key] = str(candidate)
            continue
        if name != "random":
            if Path(name).is_absolute():
                raise SystemExit(f"backbone file not found: {name}")
            if not preset.random_if_missing:
                raise SystemExit(f"preset {preset.name!r}: backbone checkpoint {name} not found in {CHECKPOINTS} "
                                 f"(pre-train it first: benchmarks/pretraining/README.md, or pass --backbone / "
                                 f"--supervised-backbone)")
            print(f"warning: checkpoint {name} not found in {CHECKPOINTS} (pass --backbone / "
                  f"--supervised-backbone); using a random initialisation")
        path = cache / f"random_{key}_w{preset.width}.safetensors"
        if not path.is_file():
            torch.manual_seed(seed)
            save_backbone(cifar_resnet18(width=preset.width, in_channels=in_channels, num_classes=n_classes), path,
                          metadata={"made_by": "benchmarks/reproduce.py", "init": "random", "seed": seed})
        paths[key] = str(path)
    return paths


def task_sampler(preset: Preset, y) -> TaskSampler:
    """The run's task sampler: its held-out test pools and seed."""
    return TaskSampler(y, n_test_per_class=preset.n_test_per_class, random_state=preset.seed)


def load_run(preset: Preset, cache: Path) -> tuple:
    """What every stage and diagnostic of a run starts from: ``(X, y, sampler, backbones)``."""
    X, y = load_data(preset)
    sampler = task_sampler(preset, y)
    return X, y, sampler, backbone_paths(preset, cache, X.shape[1], len(sampler.classes))


def test_tasks(preset: Preset, sampler: TaskSampler) -> list:
    """The test tasks: class-disjoint when the data set has enough classes."""
    rng = np.random.default_rng(preset.seed + 1)
    n = preset.n_test_tasks * preset.n_way
    if n <= len(sampler.classes):
        order = rng.permutation(np.asarray(sampler.classes))[:n].reshape(preset.n_test_tasks, preset.n_way)
        return [sampler.sample(1, n_way=preset.n_way, classes=row, prefix="test", random_state=rng)[0]
                for row in order]
    return sampler.sample(preset.n_test_tasks, n_way=preset.n_way, prefix="test", random_state=rng)


def prune_every(preset: Preset, n_iterations: int) -> int:
    """IFP's iterations between pruning events for a run of ``n_iterations``."""
    return default_prune_every(n_iterations, preset.prune_every_fraction)


def centred(preset: Preset, tests: list) -> list:
    return tests[: preset.n_centred_tasks or len(tests)]


def bank_tasks(preset: Preset, sampler: TaskSampler, tests: list) -> dict:
    """Training tasks built around each centred test task: ``max(N)`` tasks for every c.

    Their other classes come from outside every test task when there are enough such classes,
    so that for any test task the bank tasks built around *other* test tasks never contain its
    classes (Group III uses them).
    """
    test_classes = np.unique(np.concatenate([t.classes for t in tests]))
    outside = np.setdiff1d(np.asarray(sampler.classes), test_classes)
    out = {}
    for i, target in enumerate(centred(preset, tests)):
        pool = outside if len(outside) >= preset.n_way else None
        for c in preset.shared:
            rng = np.random.default_rng([preset.seed, 2, i, c])
            out[(target.task_id, c)] = sampler.sharing(
                target, n_shared=c, n_tasks=max(preset.neighbors), classes=pool,
                prefix=f"bank-{target.task_id}-c{c}", random_state=rng)
    return out


def limited(preset: Preset, sampler: TaskSampler, task: Task) -> Task:
    """The same task with ``limited_per_class`` training images per class (Group II)."""
    rng = np.random.default_rng([preset.seed, 3, int(task.task_id.split("-")[-1])])
    t = sampler.sample(1, n_way=preset.n_way, classes=task.classes, n_train_per_class=preset.limited_per_class,
                       prefix=f"limited-{task.task_id}", random_state=rng)[0]
    assert t.classes == task.classes and np.array_equal(t.test_index, task.test_index)
    return t


def _validation_sampler(preset: Preset, sampler: TaskSampler, y: np.ndarray) -> tuple:
    """A sampler over the training pools only, and the map from its indices to the data set's."""
    pool = np.sort(np.concatenate([sampler.train_pools[c] for c in sampler.classes]))
    return TaskSampler(y[pool], n_test_per_class=preset.n_validation_per_class, random_state=preset.seed + 7), pool


def _mapped(task: Task, pool: np.ndarray) -> Task:
    return Task(task.task_id, task.classes, pool[task.train_index], pool[task.test_index])


def validation_tasks(preset: Preset, sampler: TaskSampler, y: np.ndarray, per_class=None) -> list:
    """Tasks for choosing learning rates, made only of training-pool images.

    A second sampler splits the training pools into validation-train and validation-test
    parts; indices are mapped back to the full data set.
    """
    inner, pool = _validation_sampler(preset, sampler, y)
    tasks = inner.sample(preset.n_validation_tasks, n_way=preset.n_way, n_train_per_class=per_class,
                         prefix="val" if per_class is None else "val-limited", random_state=preset.seed + 8)
    return [_mapped(t, pool) for t in tasks]


def validation_bank_tasks(preset: Preset, sampler: TaskSampler, y: np.ndarray) -> dict:
    """Bank tasks around each (full-data) validation task, for tuning MVP's own learning rate.

    ``max(N)`` tasks sharing ``preset.mvp_tuning_shared`` classes with each validation task,
    drawn from the validation-train parts only: no validation-test image reaches a neighbour.
    """
    inner, pool = _validation_sampler(preset, sampler, y)
    c = preset.mvp_tuning_shared
    out = {}
    for i, task in enumerate(validation_tasks(preset, sampler, y)):
        rng = np.random.default_rng([preset.seed, 3, i, c])
        out[(task.task_id, c)] = [_mapped(t, pool) for t in inner.sharing(
            task, n_shared=c, n_tasks=max(preset.neighbors), prefix=f"valbank-{task.task_id}-c{c}", random_state=rng)]
    return out


# -- one cell ----------------------------------------------------------------------------------------

class PeakMemory:
    """Peak memory growth of a block: CUDA's allocator peak on a GPU; on Linux CPUs the process's
    peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) over its size before.

    No sampling thread: a thread waking every few milliseconds fights the training loop for the
    GIL and, on a busy machine, slowed small fits down many times over. Where the peak cannot
    be reset, ``peak_mb`` is NaN.
    """

    def __init__(self, device: str):
        self.device = device
        self.peak_mb = float("nan")

    @staticmethod
    def _status_mb(field: str) -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise OSError(f"{field} not in /proc/self/status")

    def __enter__(self):
        self._base = None
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated() / 2**20
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._base = self._status_mb("VmRSS")
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        if self._base is None:
            return False
        if self.device.startswith("cuda"):
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20 - self._base
        else:
            self.peak_mb = self._status_mb("VmHWM") - self._base
        return False


_BACKBONES: dict = {}


def _backbone(path: str):
    if path not in _BACKBONES:
        _BACKBONES[path] = load_backbone(path)
    return _BACKBONES[path]


def _estimator(cell: dict, preset: Preset, backbones: dict, bank_path: str | None, device: str, callbacks):
    common = dict(batch_size=preset.batch_size, head_epochs=cell.get("head_epochs", preset.head_epochs), lr=cell["lr"],
                  device=device,
                  random_state=preset.seed, callbacks=callbacks,
                  n_threads=None)  # run_cell pins the cell's threads
    J = cell["iterations"]
    if cell["method"] == "ifp":
        return IterativeFilterPruner(_backbone(backbones[cell.get("backbone", "ssl")]),
                                     pruning_ratio=preset.pruning_ratio, n_iterations=J,
                                     prune_every=cell.get("prune_every") or prune_every(preset, J),
                                     **{k: cell[k] for k in ("finetune_epochs",) if k in cell}, **common)
    if cell["method"] == "uniform":
        return UniformPruner(_backbone(backbones["ssl"]), pruning_ratio=preset.pruning_ratio, n_iterations=J, **common)
    if cell["method"] == "mvp":
        bank = PrunedModelBank.open(bank_path, read_only=True)
        similarity = PrototypeSimilarity() if cell["similarity"] == "prototype" else None
        return MetaVotePruner(bank, n_neighbors=cell["n_neighbors"], similarity=similarity,
                              temperature=preset.temperature, pruning_ratio=preset.pruning_ratio, n_iterations=J,
                              exclude=cell.get("exclude"), exclude_shared_classes=cell.get("exclude_shared", False),
                              init_channels=cell.get("init_channels", "voted"),
                              init_weights=cell.get("init_weights", "averaged"),
                              init_head=cell.get("init_head", "trained"), **common)
    raise ValueError(f"unknown method {cell['method']!r}")


def run_cell(cell: dict, preset: Preset, X, y, backbones: dict, bank_path, device: str, n_threads: int) -> dict:
    """Fit one method on one task and measure it; returns the cell's result row."""
    return fit_cell(cell, preset, X, y, backbones, bank_path, device, n_threads)[1]


def fit_cell(cell: dict, preset: Preset, X, y, backbones: dict, bank_path, device: str, n_threads: int) -> tuple:
    """Fit one method on one task and measure it: ``(fitted estimator, the cell's result row)``."""
    torch.set_num_threads(n_threads)
    task = Task.from_dict(cell["task"])
    X_train, y_train, X_test, y_test = task.split(X, y)
    monitor = None
    callbacks = None
    if cell.get("monitor"):
        index = np.searchsorted(np.asarray(task.classes), y_test)
        monitor = TrainingMonitor(every=preset.monitor_every, X_eval=X_test, y_eval=index, snapshots=True)
        callbacks = [("monitor", monitor)]
    estimator = _estimator(cell, preset, backbones, bank_path, device, callbacks)
    with PeakMemory(device) as memory:
        estimator.fit(X_train, y_train)
    row = {k: v for k, v in cell.items() if k not in ("task", "exclude")}
    row.update(task=task.task_id, classes=list(task.classes), n_train=int(len(X_train)), n_test=int(len(X_test)),
               accuracy=float(estimator.score(X_test, y_test)), fit_time_s=float(estimator.fit_time_),
               n_iter=int(estimator.n_iter_), train_flops=int(estimator.train_flops_), flops=int(estimator.flops_),
               params=int(estimator.n_params_), peak_memory_mb=float(memory.peak_mb),
               selection=estimator.selection_.to_dict())
    if cell["method"] == "mvp":
        row["neighbors"] = [[t, s] for t, s in estimator.neighbors_]
    if monitor is not None:
        monitor = dict(estimator.net_.callbacks_)["monitor"]
        space = estimator.filter_space_
        sels = [selection_at(estimator.pruning_path_, it, space) for it in monitor.iterations_]
        row["curve"] = {"iteration": monitor.iterations_, "accuracy": monitor.accuracy_}
        row["weight_change"] = [
            {"iteration": it, "change": weight_change(w0, s0, w1, s1, space)}
            for it, s0, w0, s1, w1 in zip(monitor.iterations_[1:], sels, monitor.snapshots_, sels[1:],
                                           monitor.snapshots_[1:])]
    return estimator, row


# -- the plan ----------------------------------------------------------------------------------------

def _cell(cell_id, method, task, **params):
    return {"id": cell_id, "method": method, "task": task.to_dict(), **params}


def tuning_cells(preset, sampler, y) -> list:
    cells = []
    J = preset.iterations
    for regime, per_class, grid in (("full", None, preset.ifp_lr_grid),
                                    ("limited", preset.limited_per_class, _limited_grid(preset))):
        for task in validation_tasks(preset, sampler, y, per_class):
            for lr in grid if len(grid) > 1 else ():
                cells.append(_cell(f"tune/ifp/{regime}/{task.task_id}/lr{lr:g}", "ifp", task, stage="tune",
                                   regime=regime, iterations=preset.tune_ifp_multiple * J, lr=lr))
            if regime == "full" and len(preset.oneshot_lr_grid) > 1:
                for lr in preset.oneshot_lr_grid:
                    cells.append(_cell(f"tune/uniform/{task.task_id}/lr{lr:g}", "uniform", task, stage="tune",
                                       regime=regime, iterations=J, lr=lr))
    return cells


def mvp_tuning_cells(preset, sampler, y, bank_ids: list) -> list:
    """MVP on each validation task with its own validation bank's ``max(N)`` neighbours, per rate."""
    cells = []
    c, n = preset.mvp_tuning_shared, max(preset.neighbors)
    banks = validation_bank_tasks(preset, sampler, y)
    for task in validation_tasks(preset, sampler, y):
        allowed = {t.task_id for t in banks[(task.task_id, c)]}
        for lr in preset.mvp_lr_grid:
            cells.append(_cell(f"tune/mvp/{task.task_id}/lr{lr:g}", "mvp", task, stage="tune", regime="full",
                               iterations=preset.iterations, lr=lr, n_neighbors=n, shared=c, similarity="shared",
                               exclude=[i for i in bank_ids if i not in allowed]))
    return cells


def _limited_grid(preset) -> tuple:
    return preset.ifp_lr_grid if preset.ifp_limited_lr_grid is None else preset.ifp_limited_lr_grid


def choose_learning_rates(preset, rows: dict) -> dict:
    """Best mean validation accuracy per grid (the first grid value wins ties)."""
    def best(grid, prefix):
        if len(grid) == 1:
            return grid[0], {}
        means = {}
        for lr in grid:
            accs = [r["accuracy"] for k, r in rows.items() if k.startswith(prefix) and k.endswith(f"/lr{lr:g}")]
            means[lr] = float(np.mean(accs)) if accs else float("nan")
        return max(grid, key=lambda lr: (means[lr], -grid.index(lr))), means

    ifp_full, m1 = best(preset.ifp_lr_grid, "tune/ifp/full/")
    ifp_limited, m2 = best(_limited_grid(preset), "tune/ifp/limited/")
    oneshot, m3 = best(preset.oneshot_lr_grid, "tune/uniform/")
    out = {"ifp_full": ifp_full, "ifp_limited": ifp_limited, "oneshot": oneshot,
           "validation_accuracy": {"ifp_full": m1, "ifp_limited": m2, "oneshot": m3}}
    if preset.mvp_lr_grid is not None:  # MVP's own rate, tuned with a validation bank
        out["mvp"], out["validation_accuracy"]["mvp"] = best(preset.mvp_lr_grid, "tune/mvp/")
    return out


def evaluation_cells(preset, sampler, tests, banks: dict, bank_ids: list, lrs: dict) -> list:
    """Every fit of the experiments, cheap ones first and the 25x IFP runs last."""
    J = preset.iterations
    mvp_lr = lrs.get("mvp", lrs["oneshot"])  # MVP's own tuned rate where the preset tunes one
    first, last = [], []
    for task in tests:
        groups = [("I", task, lrs["ifp_full"], preset.ifp_multiples)]
        is_centred = any(key[0] == task.task_id for key in banks)
        groups.append(("II", limited(preset, sampler, task), lrs["ifp_limited"], preset.ifp_multiples_limited))
        for group, t, ifp_lr, multiples in groups:
            for m in multiples:
                study = group == "I" and m == preset.study_iterations_multiple
                target = last if m == max(preset.ifp_multiples) and m > 1 else first
                target.append(_cell(f"{group}/{task.task_id}/ifp/x{m}", "ifp", t, group=group, iterations=m * J,
                                    multiple=m, lr=ifp_lr, backbone="ssl", monitor=study))
            first.append(_cell(f"{group}/{task.task_id}/uniform", "uniform", t, group=group, iterations=J,
                               lr=lrs["oneshot"]))
            if not is_centred:
                continue
            for c in preset.shared:
                ids = sorted(x.task_id for x in banks[(task.task_id, c)])
                for n in preset.neighbors:
                    allowed = set(ids[:n])
                    first.append(_cell(f"{group}/{task.task_id}/mvp/c{c}/N{n}", "mvp", t, group=group, iterations=J,
                                       lr=mvp_lr, n_neighbors=n, shared=c, similarity="shared",
                                       exclude=[i for i in bank_ids if i not in allowed]))
        for n in preset.neighbors:
            first.append(_cell(f"III/{task.task_id}/mvp/N{n}", "mvp", task, group="III", iterations=J,
                               lr=mvp_lr, n_neighbors=n, similarity="prototype", exclude_shared=True))
        for m in (1, preset.study_iterations_multiple):
            first.append(_cell(f"study/{task.task_id}/ifp-supervised/x{m}", "ifp", task, group="study",
                               iterations=m * J, multiple=m, lr=lrs["ifp_full"], backbone="sup",
                               monitor=m == preset.study_iterations_multiple))
    return first + last


# -- running -----------------------------------------------------------------------------------------

def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, path)


def cell_path(results: Path, cell_id: str) -> Path:
    return results / "cells" / (cell_id.replace("/", "__") + ".json")


def load_rows(results: Path) -> dict:
    rows = {}
    for path in sorted((results / "cells").glob("*.json")):
        row = json.loads(path.read_text())
        rows[row["id"]] = row
    return rows


def run_cells(cells, preset, X, y, backbones, bank_path, results: Path, device: str, n_jobs: int, max_cells=None,
              log=print) -> int:
    """Run the cells not yet cached, ``n_jobs`` at a time; write each result as it arrives."""
    todo = [c for c in cells if not cell_path(results, c["id"]).is_file()]
    if max_cells is not None:
        todo = todo[:max_cells]
    if not todo:
        return 0
    threads = preset.threads_per_job or (max(1, (os.cpu_count() or 1) // max(1, n_jobs)) if device == "cpu" else 1)
    log(f"{len(todo)} cells to run ({len(cells) - len(todo)} cached), {n_jobs} at a time")
    start = time.perf_counter()
    jobs = (delayed(run_cell)(c, preset, X, y, backbones, bank_path, device, threads) for c in todo)
    if n_jobs == 1:
        outputs = (job[0](*job[1], **job[2]) for job in jobs)
    else:
        outputs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs)
    for done, row in enumerate(outputs, 1):
        _write_json(cell_path(results, row["id"]), row)
        log(f"[{done}/{len(todo)} {time.perf_counter() - start:6.0f} s] {row['id']}: accuracy {row['accuracy']:.3f} "
            f"({row['fit_time_s']:.1f} s)")
    return len(todo)


def versions() -> dict:
    import platform

    import sklearn
    import skorch
    import torchvision
    commit = None
    try:
        import subprocess
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
    except Exception:  # not a git checkout
        pass
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "skorch": skorch.__version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__,
            "metaprune": metaprune.__version__, "git_commit": commit, "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def bank_pruner(preset: Preset, lrs: dict, device: str) -> IterativeFilterPruner:
    """The IFP that prunes every bank task (J = ``bank_iterations``, the tuned full-data rate)."""
    J = preset.bank_iterations
    return IterativeFilterPruner(
        pruning_ratio=preset.pruning_ratio, n_iterations=J, prune_every=prune_every(preset, J),
        lr=lrs["ifp_full"], batch_size=preset.batch_size, head_epochs=preset.head_epochs, device=device,
        random_state=preset.seed, n_threads=None)


def build_bank(bank, tasks, preset: Preset, lrs: dict, X, y, device: str) -> None:
    """Prune the ``tasks`` the bank lacks with the run's bank pruner (resumable).

    With ``preset.bank_share_work`` the pre-trained network's features and first-event scores
    are computed once per image for all tasks (``PrunedModelBank.build(share_work=True)``;
    1.14x on 2 CPU cores, ``benchmarks/results/many_tasks_shared.md``)."""
    bank.build(tasks, bank_pruner(preset, lrs, device), X, y, n_jobs=preset.n_jobs, progress=False,
               share_work=preset.bank_share_work or None)


def diagnostic_arguments(description: str, argv=None, shared: bool = False, extra=()) -> tuple:
    """The command line every diagnostic of a finished run shares: ``(args, preset, results, cache)``.

    Options ``--preset`` (default cpu), ``--results`` and ``--cache`` (default the run's own
    folders), ``--threads``, with ``shared``, ``--shared`` (default: the preset's c values), and
    the diagnostic's own ``extra`` options as ``(flag, add_argument keywords)`` pairs.
    """
    import argparse

    from .presets import get_preset

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    if shared:
        parser.add_argument("--shared", type=int, nargs="+",
                            help="only these shared-class counts c (default: the preset's); bank tasks they need and "
                                 "the cache's bank lacks are built first, as the run builds them")
    for flag, keywords in extra:
        parser.add_argument(flag, **keywords)
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    benchmarks = Path(__file__).resolve().parents[1]
    results = args.results or benchmarks / "results" / f"reproduce_{preset.name}"
    cache = args.cache or benchmarks.parent / "runs" / f"reproduce_{preset.name}"
    if shared:
        args.shared = args.shared or list(preset.shared)
    return args, preset, results, cache


def format_paired(comparison: dict) -> str:
    """One paired comparison (``PairedComparison.to_dict()``) as a table cell: mean [95% interval],
    wins/ties/losses and the sign test's p."""
    s = comparison["sign"]
    return (f"{comparison['mean_difference']:+.3f} [{comparison['ci_low']:+.3f}, {comparison['ci_high']:+.3f}] "
            f"{s['wins']}/{s['ties']}/{s['losses']} p={s['p_value']:.2g}")


def run_diagnostic_cells(cells, preset: Preset, X, y, backbones: dict, cache: Path, n_threads: int,
                         keys: tuple, bank_path=None) -> tuple:
    """Fit a diagnostic's cells one by one on the run's bank (or ``bank_path``):
    ``(rows reduced to keys, wall seconds)``."""
    start = time.perf_counter()
    rows = []
    for cell in cells:
        row = run_cell(cell, preset, X, y, backbones, str(bank_path or cache / "bank.sqlite"), "cpu", n_threads)
        rows.append({k: row.get(k) for k in keys})
        print(f"{row['id']}: {row['accuracy']:.3f}", flush=True)
    return rows, time.perf_counter() - start


def rebuilt_evaluation_cells(preset: Preset, X, y, results: Path, cache: Path, backbones: dict, shared) -> list:
    """A finished run's experiment cells, rebuilt from its seeds, bank and tuning cells (diagnostics).

    Bank tasks of the ``shared`` counts that the cache's bank lacks (a fresh machine) are
    built first with the run's own pruner and seeds.
    """
    sampler = task_sampler(preset, y)
    tests = test_tasks(preset, sampler)
    banks = bank_tasks(preset, sampler, tests)
    lrs = choose_learning_rates(preset, load_rows(results))
    path = cache / "bank.sqlite"
    cache.mkdir(parents=True, exist_ok=True)
    with (PrunedModelBank.open(path) if path.is_file() else
          PrunedModelBank(_backbone(backbones["ssl"]), path=path)) as bank:
        todo = [t for (_, c), ts in banks.items() if c in shared for t in ts if t.task_id not in bank]
        if todo:
            print(f"building {len(todo)} bank tasks the cache lacks", flush=True)
            build_bank(bank, todo, preset, lrs, X, y, "cpu")
        ids = list(bank.task_ids)
    return evaluation_cells(preset, sampler, tests, banks, ids, lrs)


def run(preset: Preset, results: Path, cache: Path, device="cpu", max_cells=None, log=print) -> dict:
    """Run (or resume) the whole reproduction; returns the plan's metadata for the report."""
    results.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    X, y, sampler, backbones = load_run(preset, cache)
    tests = test_tasks(preset, sampler)

    log(f"[{preset.name}] stage 1: learning rates on validation tasks")
    run_cells(tuning_cells(preset, sampler, y), preset, X, y, backbones, None, results, device, preset.n_jobs,
              max_cells, log)
    lrs = choose_learning_rates(preset, load_rows(results))
    if preset.mvp_lr_grid is not None:
        val_path = cache / "validation_bank.sqlite"
        val_tasks = [t for ts in validation_bank_tasks(preset, sampler, y).values() for t in ts]
        log(f"[{preset.name}] stage 1b: MVP's learning rate with a validation bank of {len(val_tasks)} tasks")
        with (PrunedModelBank.open(val_path) if val_path.is_file() else
              PrunedModelBank(_backbone(backbones["ssl"]), path=val_path)) as val_bank:
            build_bank(val_bank, val_tasks, preset, lrs, X, y, device)
            val_ids = list(val_bank.task_ids)
        run_cells(mvp_tuning_cells(preset, sampler, y, val_ids), preset, X, y, backbones, str(val_path), results,
                  device, preset.n_jobs, max_cells, log)
        lrs = choose_learning_rates(preset, load_rows(results))
    log(f"chosen learning rates: {lrs}")

    banks = bank_tasks(preset, sampler, tests)
    bank_path = cache / "bank.sqlite"
    all_bank_tasks = [t for ts in banks.values() for t in ts]
    log(f"[{preset.name}] stage 2: bank of {len(all_bank_tasks)} IFP-pruned training tasks at {bank_path}")
    bank = PrunedModelBank.open(bank_path) if bank_path.is_file() else PrunedModelBank(
        _backbone(backbones["ssl"]), path=bank_path)
    start = time.perf_counter()
    n_before = len(bank)
    todo = all_bank_tasks if max_cells is None else [t for t in all_bank_tasks if t.task_id not in bank][:max_cells]
    build_bank(bank, todo, preset, lrs, X, y, device)
    bank_ids = list(bank.task_ids)
    bank_info = {"n_tasks": len(bank), "built_now": len(bank) - n_before,
                 "build_time_s_this_run": time.perf_counter() - start,
                 "test_accuracy": [bank.record(t).metrics.get("test_accuracy") for t in bank_ids],
                 "classes": {t: list(map(int, bank.record(t).classes)) for t in bank_ids}}
    bank.close()
    _write_json(results / "bank.json", bank_info)

    log(f"[{preset.name}] stage 3: experiments")
    cells = evaluation_cells(preset, sampler, tests, banks, bank_ids, lrs) if len(bank_ids) == len(all_bank_tasks) \
        else []
    plan = {"preset": preset.to_dict(), "learning_rates": lrs, "backbones": {k: Path(v).name for k, v in
                                                                              backbones.items()},
            "test_tasks": [t.to_dict() for t in tests],
            "bank_tasks": {f"{k[0]}/c{k[1]}": [t.task_id for t in v] for k, v in banks.items()},
            "n_cells": len(cells), "versions": versions(), "device": device}
    _write_json(results / "plan.json", {k: v for k, v in plan.items() if k != "test_tasks"})  # before the cells:
    # the report can be drawn from the cells finished so far while the run goes on
    run_cells(cells, preset, X, y, backbones, str(bank_path), results, device, preset.n_jobs, max_cells, log)
    return plan
