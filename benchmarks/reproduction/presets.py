"""Presets of the reproduction: every hyperparameter of a run, in one frozen record.

``smoke`` checks the plumbing in seconds (scikit-learn digits, random-init backbones);
``cpu`` runs on real CIFAR-100 with the committed width-16 checkpoints within about two
hours on 2 cores; ``cpu-paper`` follows the paper's protocol where 2 cores allow (30 test
tasks, bank IFP at J = 200 and h = 60, MVP's own tuned rate), at r = 0.9 and, as
``cpu-paper-r96``, r = 0.96, with ``cpu-paper-paper-lr`` running the paper's own
hyperparameters untuned. All three use the 100-epoch SimCLR backbone
``cifar100_resnet18_w16_simclr_e100`` (``benchmarks/pretraining/README.md``) and take about
4 hours each on 2 cores (estimated from the per-fit costs in
``benchmarks/results/phase_costs.md``; not run yet). ``paper`` uses the paper's sizes
(full-width ResNet-18, 280 training + 30 test tasks) and is meant for a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from metaprune import IterativeFilterPruner, MetaVotePruner, paper_parameters

__all__ = ["Preset", "PRESETS", "get_preset"]

_PAPER_IFP = paper_parameters(IterativeFilterPruner)
_PAPER_IFP_LIMITED = paper_parameters(IterativeFilterPruner, limited_data=True)
_PAPER_MVP = paper_parameters(MetaVotePruner)


@dataclass(frozen=True)
class Preset:
    """Sizes and hyperparameters of one reproduction run."""

    name: str
    dataset: str                      # "cifar100" or "digits"
    backbone: str                     # checkpoint file name in metaprune/checkpoints, or "random"
    supervised_backbone: str
    width: int
    random_if_missing: bool = False   # a missing checkpoint: random weights (True) or stop (False)
    n_way: int = 5
    n_test_per_class: int = 100       # held-out images per class, never used for training or choices
    n_test_tasks: int = 8
    n_centred_tasks: int | None = None  # test tasks with bank tasks built around them (None: all)
    shared: tuple = (1, 2, 3, 4)      # c: classes each neighbour shares with its test task
    neighbors: tuple = (1, 5, 10)     # N
    pruning_ratio: float = 0.9
    batch_size: int = 128
    head_epochs: int = 10
    prune_every_fraction: float = 0.3  # h = 0.3 J: events at 0, 0.3 J, 0.6 J (paper: J=200, h=60)
    bank_iterations: int = 100        # J of the bank's IFP runs
    bank_share_work: bool = False     # bank build computes features and first-event scores once per image
    iterations: int = 100             # J of MVP and uniform; IFP runs multiples of it
    ifp_multiples: tuple = (1, 5, 25)
    ifp_multiples_limited: tuple = (1, 5)
    limited_per_class: int = 100      # Group II training images per class
    temperature: float = 0.025
    # learning rates are chosen on validation tasks (carved from the training pools) from these grids
    ifp_lr_grid: tuple = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    ifp_limited_lr_grid: tuple | None = None  # Group II's IFP grid (None: ifp_lr_grid)
    oneshot_lr_grid: tuple = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    # MVP's own rate, chosen on the validation tasks with a validation bank built around them
    # (None: MVP uses the rate chosen for Uniform, oneshot_lr_grid)
    mvp_lr_grid: tuple | None = None
    mvp_tuning_shared: int = 3        # c of the validation bank's tasks
    n_validation_tasks: int = 3
    n_validation_per_class: int = 80
    tune_ifp_multiple: int = 5
    study_iterations_multiple: int = 5  # the IFP run whose curve compares the two backbones
    monitor_every: int = 25
    n_jobs: int = 2
    threads_per_job: int | None = None  # torch threads per cell (None: CPU cores / n_jobs)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu_paper(name: str, **overrides) -> Preset:
    """The paper's protocol at width 16 on CPU: 30 test tasks, 12 of them with banks built
    around them (12 x 4 c x 10 = 480 bank tasks: enough tasks for paired Group I verdicts,
    where 7 would leave a sign test little room), J = 200 with h = 60 for the bank and the
    one-shot methods, IFP at 1x and 5x (25x, 5,000 iterations per task, does not fit).

    Cost at one thread per job (J = 200 IFP 24 s, J = 1,000 about 95 s, a 200-iteration
    one-shot fit about 14 s): bank 480 x 24 s, 90 IFP 1x and 90 IFP 5x cells, about 440
    one-shot cells, tuning about 100 fits: about 29,000 core-seconds, 4 hours on 2 cores."""
    fields = dict(
        name=name, dataset="cifar100", backbone="cifar100_resnet18_w16_simclr_e100.safetensors",
        supervised_backbone="cifar100_resnet18_w16_supervised.safetensors", width=16, n_test_tasks=30,
        n_centred_tasks=12, bank_iterations=200, iterations=200, ifp_multiples=(1, 5), ifp_multiples_limited=(1, 5),
        ifp_limited_lr_grid=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), mvp_lr_grid=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
        tune_ifp_multiple=1, study_iterations_multiple=5, bank_share_work=True)
    fields.update(overrides)
    return Preset(**fields)


PRESETS = {
    "smoke": Preset(
        name="smoke", dataset="digits", backbone="random", supervised_backbone="random", width=2, n_way=3,
        n_test_per_class=20, n_test_tasks=2, shared=(1, 2), neighbors=(1, 2), batch_size=32, head_epochs=2,
        bank_iterations=4, iterations=4, ifp_multiples=(1, 2), ifp_multiples_limited=(1,), limited_per_class=40,
        ifp_lr_grid=(1e-2,), oneshot_lr_grid=(1e-2, 3e-2), mvp_lr_grid=(3e-3, 3e-2), mvp_tuning_shared=2,
        n_validation_tasks=1, n_validation_per_class=20,
        tune_ifp_multiple=1, study_iterations_multiple=2, monitor_every=2, n_jobs=1, pruning_ratio=0.5,
        threads_per_job=1, bank_share_work=True),  # tiny networks: a second thread only adds synchronisation
    "cpu": Preset(
        name="cpu", dataset="cifar100", backbone="cifar100_resnet18_w16_simclr.safetensors",
        supervised_backbone="cifar100_resnet18_w16_supervised.safetensors", width=16,
        ifp_limited_lr_grid=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)),  # widened: 3e-2 won a validation task
    "cpu-paper": _cpu_paper("cpu-paper"),
    "cpu-paper-r96": _cpu_paper("cpu-paper-r96", pruning_ratio=0.96),
    # the paper's own hyperparameters (section 4, metaprune.paper_parameters), no tuning stage
    "cpu-paper-paper-lr": _cpu_paper(
        "cpu-paper-paper-lr", ifp_lr_grid=(_PAPER_IFP["lr"],), ifp_limited_lr_grid=(_PAPER_IFP_LIMITED["lr"],),
        oneshot_lr_grid=(_PAPER_MVP["lr"],), mvp_lr_grid=None, temperature=_PAPER_MVP["temperature"],
        batch_size=_PAPER_IFP["batch_size"], head_epochs=_PAPER_IFP["head_epochs"]),
    "paper": Preset(
        name="paper", dataset="cifar100", backbone="paper_resnet18_simsiam.safetensors",
        supervised_backbone="paper_resnet18_supervised.safetensors", width=64, n_test_tasks=30,
        # the paper's own hyperparameters (section 4, metaprune.paper_parameters): no tuning stage
        bank_iterations=200, iterations=200, ifp_lr_grid=(_PAPER_IFP["lr"],),
        ifp_limited_lr_grid=(_PAPER_IFP_LIMITED["lr"],), oneshot_lr_grid=(_PAPER_MVP["lr"],),
        temperature=_PAPER_MVP["temperature"], batch_size=_PAPER_IFP["batch_size"],
        head_epochs=_PAPER_IFP["head_epochs"], n_centred_tasks=7, n_jobs=1, random_if_missing=True),  # 7 x 40 = 280 training tasks, 30 test tasks
}


def get_preset(name: str, **overrides) -> Preset:
    """The preset ``name`` with fields replaced by ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
