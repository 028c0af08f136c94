"""Pruning estimators: scikit-learn classifiers that prune a pre-trained backbone per task."""

from .ifp import IterativeFilterPruner
from .oneshot import MetaVotePruner, UniformPruner
from .many import fit_many
from .paper import paper_parameters

__all__ = ["IterativeFilterPruner", "MetaVotePruner", "UniformPruner", "fit_many", "paper_parameters"]
