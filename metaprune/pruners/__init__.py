"""Pruning estimators: scikit-learn classifiers that prune a pre-trained backbone per task."""

from .ifp import IterativeFilterPruner

__all__ = ["IterativeFilterPruner"]
