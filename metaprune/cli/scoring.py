"""The images a pruned network is scored on, and its score: the held-out split and the accuracy report.

``metaprune prune --test-fraction`` holds out part of every class (:func:`holdout_split`) and
records the split in the network's metadata; ``metaprune evaluate --held-out`` reads it back
(:func:`stored_holdout`) to score the same images. :func:`accuracy_report` is the accuracy,
overall and per class.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stored_holdout", "holdout_split", "accuracy_report"]


def stored_holdout(metadata, source):
    """The held-out split ``metaprune prune --test-fraction`` recorded in a pruned network's metadata.

    Parameters
    ----------
    metadata : dict
        :attr:`metaprune.channels.pruned_model.PrunedModel.metadata`, with ``test_fraction`` and ``seed``.
    source : str or path-like
        The network's file, named in the messages.

    Returns
    -------
    test_fraction : float
        In (0, 1).
    seed : int
        The ``random_state`` of :func:`holdout_split`.

    Raises
    ------
    ValueError
        If the network was pruned without a held-out part, or the entries are damaged.
    """
    fraction = metadata.get("test_fraction")
    if fraction is None or fraction is False or (isinstance(fraction, (int, float)) and fraction == 0):
        raise ValueError(f"{source} was pruned without a held-out part (metaprune prune --test-fraction)")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"{source}: the stored test_fraction {str(fraction)[:40]} is not a number in (0, 1) "
                         f"(damaged metadata?)")
    seed = metadata.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"{source}: the stored seed {str(seed)[:40]} is not an integer in 0..{2**32 - 1} "
                         f"(damaged metadata?)")
    return float(fraction), seed


def holdout_split(labels, test_fraction, random_state=0):
    """Stratified split of a task's images into training and held-out positions.

    Parameters
    ----------
    labels : array-like of shape (n,)
    test_fraction : float
        Fraction of every class held out, in [0, 1); 0 holds nothing out.
    random_state : int, default=0

    Returns
    -------
    train_index, test_index : ndarray of int
        Sorted positions; the same arguments give the same split.

    Raises
    ------
    ValueError
        If ``test_fraction`` is out of range or leaves a class without a training or a
        held-out image.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    positions = np.arange(len(labels))
    if not 0 <= test_fraction < 1:
        raise ValueError(f"the test fraction must be in [0, 1), got {test_fraction}")
    if test_fraction == 0:
        return positions, positions[:0]
    _, counts = np.unique(labels, return_counts=True)
    if counts.min() * test_fraction < 1 or counts.min() * (1 - test_fraction) < 1:
        raise ValueError(f"a test fraction of {test_fraction} leaves a class of {counts.min()} images "
                         f"without a training or held-out image")
    train, test = train_test_split(positions, test_size=test_fraction, stratify=labels,
                                   random_state=random_state)
    return np.sort(train), np.sort(test)


def accuracy_report(y_true, y_pred, class_names=None) -> dict:
    """Overall and per-class accuracy.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        Global class ids.
    class_names : sequence of str, optional
        Names indexed by class id, used as the keys of ``per_class``.

    Returns
    -------
    dict
        ``accuracy`` (float), ``n_images`` (int) and ``per_class``: per true class (its name,
        or its id as text), ``{"accuracy": float, "n_images": int}``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class = {}
    for c in np.unique(y_true):
        hit = y_true == c
        name = class_names[int(c)] if class_names is not None else str(c)
        per_class[name] = {"accuracy": float(np.mean(y_pred[hit] == c)), "n_images": int(hit.sum())}
    accuracy = float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")
    return {"accuracy": accuracy, "n_images": int(len(y_true)), "per_class": per_class}
