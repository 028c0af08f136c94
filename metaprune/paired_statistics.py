"""Paired comparisons of two methods over the same tasks.

A claim such as "MVP beats IFP 5x" is judged on the per-task differences ``a[t] - b[t]``
(the same test tasks for both methods), not on two means: the tasks' own spread (some are
easy, some hard) cancels in the difference. Two pure functions give the evidence:

- :func:`bootstrap_mean_ci`: a percentile-bootstrap confidence interval of the mean
  difference, resampling tasks;
- :func:`sign_test`: the exact two-sided sign test (ties dropped), which assumes nothing
  about the differences' distribution.

:func:`compare_paired` pairs two ``{task: value}`` mappings and returns both as a
:class:`PairedComparison`, whose :meth:`~PairedComparison.verdict` says whether a claim
holds, fails, or cannot be decided by the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest

__all__ = ["bootstrap_mean_ci", "sign_test", "SignTest", "PairedComparison", "compare_paired"]

VERDICTS = ("holds", "fails", "undecided")


def _differences(differences) -> np.ndarray:
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"differences must be one value per task (1-D), got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("differences contain NaN or infinite values")
    return d


def bootstrap_mean_ci(differences, confidence: float = 0.95, n_resamples: int = 10_000,
                      random_state=None) -> tuple:
    """Percentile-bootstrap confidence interval of the mean of paired differences.

    Parameters
    ----------
    differences : array-like of shape (n_tasks,)
        One difference per task; at least two.
    confidence : float, default=0.95
        Coverage of the interval, in (0, 1).
    n_resamples : int, default=10000
        Bootstrap resamples of the tasks (with replacement).
    random_state : int, numpy Generator or None
        Seeds the resampling.

    Returns
    -------
    (low, high) : tuple of float
        The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled means.
    """
    d = _differences(differences)
    if d.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 tasks, got {d.size}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(random_state)
    means = d[rng.integers(0, d.size, size=(int(n_resamples), d.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class SignTest:
    """Counts of positive, zero and negative differences and the exact two-sided p-value."""

    wins: int
    ties: int
    losses: int
    p_value: float


def sign_test(differences) -> SignTest:
    """Exact two-sided sign test of "the median difference is zero"; ties are dropped.

    With no non-zero difference the p-value is 1 (nothing speaks against zero).
    """
    d = _differences(differences)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    n = wins + losses
    p = 1.0 if n == 0 else float(binomtest(wins, n, 0.5, alternative="two-sided").pvalue)
    return SignTest(wins=wins, ties=int(d.size) - n, losses=losses, p_value=p)


@dataclass(frozen=True)
class PairedComparison:
    """Evidence on ``a - b`` over the tasks both methods were run on.

    Attributes
    ----------
    tasks : tuple of str
        The paired tasks, sorted.
    mean_a, mean_b, mean_difference : float
        Means over those tasks.
    ci_low, ci_high : float
        Bootstrap confidence interval of ``mean_difference``.
    confidence : float
        Its coverage.
    sign : SignTest
        Wins (``a > b``), ties, losses and the sign test's p-value.
    """

    tasks: tuple
    mean_a: float
    mean_b: float
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    sign: SignTest

    @property
    def n(self) -> int:
        return len(self.tasks)

    def verdict(self, margin: float = 0.0, *, within: bool = False) -> str:
        """Whether the claim holds, fails, or the data cannot decide it.

        Parameters
        ----------
        margin : float, default=0
            For a claim ``a >= b + margin`` (the default): "holds" when the whole interval
            lies above ``margin``, "fails" when it lies below, else "undecided".
        within : bool, default=False
            Judge instead the claim ``|a - b| <= margin``: "holds" when the interval lies
            inside ``(-margin, margin)``, "fails" when it lies wholly outside, else
            "undecided".
        """
        low, high = self.ci_low, self.ci_high
        if within:
            if margin <= 0:
                raise ValueError(f"an equivalence margin must be positive, got {margin}")
            if -margin < low and high < margin:
                return "holds"
            if low > margin or high < -margin:
                return "fails"
            return "undecided"
        if low > margin:
            return "holds"
        if high < margin:
            return "fails"
        return "undecided"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["tasks"] = list(self.tasks)
        return out


def compare_paired(a, b, *, confidence: float = 0.95, n_resamples: int = 10_000,
                   random_state=0) -> PairedComparison:
    """Pair two methods' per-task values and summarise ``a - b``.

    Parameters
    ----------
    a, b : mapping of task id to float, or sequences of equal length
        Mappings are paired on the tasks both contain (at least two); sequences
        position by position.
    confidence, n_resamples, random_state
        Passed to :func:`bootstrap_mean_ci`.

    Returns
    -------
    PairedComparison

    Examples
    --------
    >>> mvp = {"t0": 0.70, "t1": 0.80, "t2": 0.50, "t3": 0.60}
    >>> ifp = {"t0": 0.60, "t1": 0.71, "t2": 0.40, "t3": 0.52}
    >>> c = compare_paired(mvp, ifp)
    >>> round(c.mean_difference, 4), (c.sign.wins, c.sign.ties, c.sign.losses)
    (0.0925, (4, 0, 0))
    >>> c.verdict(), c.verdict(0.05)
    ('holds', 'holds')
    """
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("pass two mappings {task: value} or two sequences, not one of each")
    if isinstance(a, Mapping):
        tasks = tuple(sorted(set(a) & set(b), key=str))
        if len(tasks) < 2:
            raise ValueError(f"the two methods share {len(tasks)} task(s); a paired comparison needs at least 2")
        va = np.array([a[t] for t in tasks], dtype=float)
        vb = np.array([b[t] for t in tasks], dtype=float)
    else:
        if not isinstance(a, (Sequence, np.ndarray)) or not isinstance(b, (Sequence, np.ndarray)):
            raise TypeError("a and b must be mappings or sequences")
        va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if va.shape != vb.shape or va.ndim != 1:
            raise ValueError(f"a and b must be 1-D and of equal length, got shapes {va.shape} and {vb.shape}")
        tasks = tuple(str(i) for i in range(va.size))
    d = _differences(va - vb)
    low, high = bootstrap_mean_ci(d, confidence, n_resamples, random_state)
    return PairedComparison(tasks=tasks, mean_a=float(va.mean()), mean_b=float(vb.mean()),
                            mean_difference=float(d.mean()), ci_low=low, ci_high=high, confidence=confidence,
                            sign=sign_test(d))
