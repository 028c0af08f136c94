"""The MVP paper's hyperparameters, one call away from the measured defaults.

The estimators' defaults were chosen by measurement on the data the package ships and
reads (``benchmarks/choose_defaults.py``, results in ``benchmarks/results/defaults/``) so
that a fit with defaults is a sensible first result. The paper (section 3.1 and 4) used
smaller learning rates, on purpose: "we keep both the number of iterations and the
learning rate small" so that the initialisation matters. :func:`paper_parameters`
returns those values for an estimator, to pass to its constructor or ``set_params``.
"""

from __future__ import annotations

__all__ = ["PAPER_HYPERPARAMETERS", "paper_parameters"]

#: The paper's values per data set and estimator. Keys are constructor parameters; what the
#: paper does not state (momentum, weight decay, MVP's and Uniform's iterations, which the
#: paper varies) is left at the estimator's default.
PAPER_HYPERPARAMETERS = {
    "cifar100": {
        "IterativeFilterPruner": {"lr": 1e-4, "n_iterations": 200, "prune_every": 60, "head_epochs": 10,
                                  "batch_size": 128, "pruning_ratio": 0.9},
        "IterativeFilterPruner/limited": {"lr": 1e-3, "n_iterations": 200, "prune_every": 60, "head_epochs": 10,
                                          "batch_size": 128, "pruning_ratio": 0.9},
        "MetaVotePruner": {"lr": 3e-4, "n_neighbors": 10, "temperature": 0.025, "head_epochs": 10,
                           "batch_size": 128},
        "UniformPruner": {"lr": 3e-4, "head_epochs": 10, "batch_size": 128, "pruning_ratio": 0.9},
    },
    "tiered-imagenet": {
        "IterativeFilterPruner": {"lr": 1e-4, "n_iterations": 250, "prune_every": 75, "head_epochs": 10,
                                  "batch_size": 256, "pruning_ratio": 0.9},
        "IterativeFilterPruner/limited": {"lr": 1e-3, "n_iterations": 250, "prune_every": 75, "head_epochs": 10,
                                          "batch_size": 256, "pruning_ratio": 0.9},
        "MetaVotePruner": {"lr": 5e-4, "n_neighbors": 10, "temperature": 0.025, "head_epochs": 10,
                           "batch_size": 256},
        "UniformPruner": {"lr": 5e-4, "head_epochs": 10, "batch_size": 256, "pruning_ratio": 0.9},
    },
}


def paper_parameters(estimator, *, dataset: str = "cifar100", limited_data: bool = False) -> dict:
    """The MVP paper's hyperparameters for ``estimator``.

    Parameters
    ----------
    estimator : IterativeFilterPruner, MetaVotePruner or UniformPruner (class or instance)
    dataset : {"cifar100", "tiered-imagenet"}, default="cifar100"
        The paper's two settings (section 3.1 and 4).
    limited_data : bool, default=False
        IFP's rate for 100 training images per class (1e-3 instead of 1e-4). MVP and
        Uniform use one rate either way.

    Returns
    -------
    dict
        Constructor parameters: ``lr``, ``head_epochs`` (K), ``batch_size``, and per
        estimator ``n_iterations`` / ``prune_every`` / ``pruning_ratio`` (IFP),
        ``n_neighbors`` / ``temperature`` (MVP), ``pruning_ratio`` (Uniform).

    Examples
    --------
    >>> from metaprune import IterativeFilterPruner
    >>> from metaprune.pruners.paper import paper_parameters
    >>> paper_parameters(IterativeFilterPruner)["lr"]
    0.0001
    >>> IterativeFilterPruner(**paper_parameters(IterativeFilterPruner, limited_data=True)).lr
    0.001
    """
    if dataset not in PAPER_HYPERPARAMETERS:
        raise ValueError(f"dataset must be one of {sorted(PAPER_HYPERPARAMETERS)}, got {dataset!r}")
    name = estimator.__name__ if isinstance(estimator, type) else type(estimator).__name__
    table = PAPER_HYPERPARAMETERS[dataset]
    key = f"{name}/limited" if limited_data and f"{name}/limited" in table else name
    if key not in table:
        raise ValueError(f"the paper gives no hyperparameters for {name}; it covers "
                         f"{sorted(k for k in table if '/' not in k)}")
    return dict(table[key])
