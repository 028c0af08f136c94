"""Allowed values of estimator parameters, declared as data and checked in one place.

Each pruner declares its constraints once, as a class attribute mapping parameter names to
a constraint or a tuple of alternatives::

    _parameter_constraints = {
        "pruning_ratio": Interval(float, 0, 1, closed="neither"),
        "surgery": Options("physical", "mask"),
        "prune_fraction": (Options(None), Interval(float, 0, 1, closed="neither")),
    }

Subclasses extend their parent's mapping (``{**Parent._parameter_constraints, ...}``), and
``fit`` checks them all with :func:`check_parameters` before doing any work, so a bad value
fails at once with a message naming the parameter, what is allowed and the value::

    pruning_ratio must be a float in (0, 1), got 1.5

``__init__`` never checks anything (scikit-learn's convention: ``set_params`` and ``clone``
must accept any value).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["Interval", "Options", "check_parameters", "constructor_defaults", "describe",
           "given_parameters"]

_CLOSED = ("both", "left", "right", "neither")


@dataclass(frozen=True)
class Interval:
    """Numbers of one kind between two bounds.

    Parameters
    ----------
    kind : {int, float}
        ``int`` accepts integers (Python or NumPy, not bool); ``float`` accepts any finite
        real number (ints included, not bool, NaN or infinity).
    low, high : number or None
        Bounds; None leaves that side unbounded.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds belong to the interval.

    Examples
    --------
    >>> ratio = Interval(float, 0, 1, closed="neither")
    >>> ratio.accepts(0.5), ratio.accepts(1.0), ratio.describe()
    (True, False, 'a float in (0, 1)')
    >>> Interval(int, 1, None).describe()
    'an int >= 1'
    """

    kind: type
    low: numbers.Real | None
    high: numbers.Real | None
    closed: str = "both"

    def __post_init__(self):
        if self.kind not in (int, float):
            raise ValueError(f"kind must be int or float, got {self.kind!r}")
        if self.closed not in _CLOSED:
            raise ValueError(f"closed must be one of {_CLOSED}, got {self.closed!r}")
        if self.low is not None and self.high is not None and not self.low <= self.high:
            raise ValueError(f"low must not exceed high, got {self.low} > {self.high}")

    @property
    def low_closed(self) -> bool:
        """Whether ``low`` itself is allowed."""
        return self.closed in ("both", "left")

    @property
    def high_closed(self) -> bool:
        """Whether ``high`` itself is allowed."""
        return self.closed in ("both", "right")

    def accepts(self, value) -> bool:
        """Whether ``value`` is a number of this kind within the bounds."""
        if isinstance(value, (bool, np.bool_)):
            return False
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.low is not None and not (value >= self.low if self.low_closed else value > self.low):
            return False
        if self.high is not None and not (value <= self.high if self.high_closed else value < self.high):
            return False
        return True

    def describe(self) -> str:
        """What the interval allows, in words: ``"a float in (0, 1)"``, ``"an int >= 1"``."""
        noun = "an int" if self.kind is int else "a float"
        if self.low is not None and self.high is not None:
            left, right = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
            return f"{noun} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{noun} {'>=' if self.low_closed else '>'} {self.low}"
        if self.high is not None:
            return f"{noun} {'<=' if self.high_closed else '<'} {self.high}"
        return noun


class Options:
    """A fixed set of allowed values (strings, None, True/False...).

    A value matches an option when it is that option (None), a bool equal to it (True,
    False; ints 0 and 1 do not match), or another value of the option's type equal to it.

    Parameters
    ----------
    *values
        The allowed values, in the order messages list them.

    Examples
    --------
    >>> surgery = Options("physical", "mask")
    >>> surgery.accepts("mask"), surgery.accepts("Mask"), surgery.describe()
    (True, False, "one of 'physical', 'mask'")
    >>> Options(None).describe()
    'None'
    """

    def __init__(self, *values):
        if not values:
            raise ValueError("Options needs at least one allowed value")
        self.values = tuple(values)

    def __repr__(self) -> str:
        return f"Options({', '.join(map(repr, self.values))})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Options) and self.values == other.values

    def __hash__(self) -> int:
        return hash(self.values)

    def accepts(self, value) -> bool:
        """Whether ``value`` is one of the options."""
        return any(_matches(value, option) for option in self.values)

    def describe(self) -> str:
        """The options in words: ``"None"``, ``"one of 'physical', 'mask'"``."""
        if len(self.values) == 1:
            return repr(self.values[0])
        return "one of " + ", ".join(map(repr, self.values))


def _matches(value, option) -> bool:
    if option is None:
        return value is None
    if isinstance(option, bool):
        return isinstance(value, (bool, np.bool_)) and bool(value) == option
    return isinstance(value, type(option)) and value == option


def _alternatives(constraint) -> tuple:
    return tuple(constraint) if isinstance(constraint, (tuple, list)) else (constraint,)


def describe(constraint) -> str:
    """What a constraint (or a tuple of alternatives) allows, in words.

    Examples
    --------
    >>> describe((Options(None), Interval(float, 0, 1, closed="neither")))
    'None or a float in (0, 1)'
    """
    return " or ".join(c.describe() for c in _alternatives(constraint))


def _shown(value) -> str:
    """``value`` as messages show it (NumPy scalars as plain Python values)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def check_parameters(params: Mapping, constraints: Mapping) -> None:
    """Check every constrained parameter; raise on the first one out of range.

    Parameters
    ----------
    params : mapping of str to object
        Parameter values by name (e.g. ``estimator.get_params(deep=False)``).
    constraints : mapping of str to constraint
        Allowed values by name: an :class:`Interval`, an :class:`Options`, or a tuple of
        them (any one may match). Parameters without a constraint are not checked.

    Raises
    ------
    ValueError
        ``"<name> must be <what is allowed>, got <value>"`` for the first parameter (in the
        order of ``constraints``) whose value no alternative accepts.
    KeyError
        If a constrained parameter is missing from ``params``.

    Examples
    --------
    >>> limits = {"lr": Interval(float, 0, None, closed="neither")}
    >>> check_parameters({"lr": 0.1}, limits)
    >>> check_parameters({"lr": -1.0}, limits)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a float > 0, got -1.0
    """
    for name, constraint in constraints.items():
        value = params[name]
        if not any(c.accepts(value) for c in _alternatives(constraint)):
            raise ValueError(f"{name} must be {describe(constraint)}, got {_shown(value)}")


def constructor_defaults(estimator) -> dict:
    """The default of every constructor parameter of ``estimator`` (a class or an instance).

    The command line reads its defaults from here, so they cannot drift from the estimators'.

    Examples
    --------
    >>> from metaprune import UniformPruner
    >>> constructor_defaults(UniformPruner)["n_iterations"]
    100
    """
    import inspect

    cls = estimator if isinstance(estimator, type) else type(estimator)
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def given_parameters(**values) -> dict:
    """The parameters whose value is not None: pass them on, leave the rest at the estimator's default.

    Examples
    --------
    >>> given_parameters(lr=0.01, n_iterations=None)
    {'lr': 0.01}
    """
    return {name: value for name, value in values.items() if value is not None}
