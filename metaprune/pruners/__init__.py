"""Pruning estimators: scikit-learn classifiers that prune a pre-trained backbone per task."""

from .ifp import IterativeFilterPruner
from .oneshot import MetaVotePruner, UniformPruner

__all__ = ["IterativeFilterPruner", "MetaVotePruner", "UniformPruner"]
