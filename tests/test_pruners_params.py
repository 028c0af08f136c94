"""The parameter constraints of the pruners: declared once, checked at the start of ``fit``.

The cases are generated from the estimators' own ``_parameter_constraints``: every constrained
parameter must reject a value just outside its range (with a message naming the parameter, the
range and the value) and accept its bounds where they are closed. No case trains anything: a
rejected value fails before the data are even looked at (``fit(None, None)``), and an accepted
one gets past the parameter checks to the check of the backbone (None here).
"""

import math
import re

import numpy as np
import pytest
from sklearn.base import clone

from metaprune import IterativeFilterPruner, MetaVotePruner, UniformPruner
from metaprune.pruners.base import BasePruner
from metaprune.pruners.params import Interval, Options, check_parameters, describe

ESTIMATORS = (IterativeFilterPruner, UniformPruner, MetaVotePruner)
# what fit says once every parameter passed: the next check, of the network to prune
PAST_THE_PARAMETERS = {IterativeFilterPruner: "backbone must be", UniformPruner: "backbone must be",
                       MetaVotePruner: "needs a PrunedModelBank"}
# a value for the parameters that a bound of another one must respect (prune_every <= n_iterations)
RELATED = {IterativeFilterPruner: {"prune_every": 1}, UniformPruner: {}, MetaVotePruner: {}}
# the parameters each estimator must constrain, written out so that the generated cases cannot
# silently shrink to nothing
EXPECTED = {
    "common": {"pruning_ratio", "n_iterations", "head_epochs", "head_l2", "lr", "batch_size", "momentum",
               "weight_decay", "score_batch_size", "recalibrate_bn"},
    IterativeFilterPruner: {"prune_every", "prune_fraction", "finetune_epochs", "surgery"},
    UniformPruner: set(),
    MetaVotePruner: {"n_neighbors", "temperature", "exclude_shared_classes"},
}


def _alternatives(constraint):
    return constraint if isinstance(constraint, tuple) else (constraint,)


def _outside(constraint):
    """Values just outside one constraint (some may be accepted by another alternative)."""
    if isinstance(constraint, Options):
        if any(isinstance(v, bool) for v in constraint.values):
            return [1, "yes"]  # ints and strings are not bools
        return ["not-an-option"]
    values = ["0.5"]  # a number in a string is not a number
    for bound, closed, away in ((constraint.low, constraint.low_closed, -math.inf),
                                (constraint.high, constraint.high_closed, math.inf)):
        if bound is None:
            continue
        if constraint.kind is int:
            values.append(bound + (1 if away > 0 else -1) if closed else bound)
        else:
            values.append(float(np.nextafter(bound, away)) if closed else float(bound))
    if constraint.kind is int:
        values += [(constraint.low or 0) + 1.5, True]  # not ints
    else:
        values += [math.nan, True]
    return values


def _bounds(constraint):
    """The values at the edges of one constraint that it must accept."""
    if isinstance(constraint, Options):
        return list(constraint.values)
    edges = ((constraint.low, constraint.low_closed), (constraint.high, constraint.high_closed))
    return [b for b, closed in edges if b is not None and closed]


def _cases(values_of):
    cases = []
    for cls in ESTIMATORS:
        for name, constraint in cls._parameter_constraints.items():
            alternatives = _alternatives(constraint)
            for alternative in alternatives:
                for value in values_of(alternative):
                    accepted = any(a.accepts(value) for a in alternatives)
                    if (values_of is _outside) != accepted:
                        cases.append(pytest.param(cls, name, value, id=f"{cls.__name__}-{name}={value!r}"))
    return cases


REJECTED = _cases(_outside)
ACCEPTED = _cases(_bounds)


def test_the_generated_cases_cover_every_expected_parameter():
    for cls in ESTIMATORS:
        expected = EXPECTED["common"] | EXPECTED[cls]
        assert expected <= set(cls._parameter_constraints), cls
        rejected = {p.values[1] for p in REJECTED if p.values[0] is cls}
        assert rejected == set(cls._parameter_constraints), cls  # every constrained parameter has a case
    assert len(REJECTED) > 100 and len(ACCEPTED) > 30


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_declarations_extend_the_base_and_name_constructor_parameters(cls):
    assert set(BasePruner._parameter_constraints) <= set(cls._parameter_constraints)
    assert set(cls._parameter_constraints) <= set(cls().get_params(deep=False))


@pytest.mark.parametrize("cls, name, value", REJECTED)
def test_fit_rejects_a_value_just_outside_the_range(cls, name, value):
    est = cls().set_params(**{name: value})
    shown = repr(value.item() if isinstance(value, np.generic) else value)
    message = f"{name} must be {describe(cls._parameter_constraints[name])}, got {shown}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        est.fit(None, None)  # checked before anything looks at the data


@pytest.mark.parametrize("cls, name, value", ACCEPTED)
def test_fit_accepts_the_closed_bounds(cls, name, value):
    est = cls(**RELATED[cls]).set_params(**{name: value})
    check_parameters(est.get_params(deep=False), cls._parameter_constraints)
    with pytest.raises(ValueError, match=PAST_THE_PARAMETERS[cls]):
        est.fit(None, None)


# -- hand-written cases ------------------------------------------------------------------


@pytest.mark.parametrize("est, message", [
    (IterativeFilterPruner(pruning_ratio=1.5), "pruning_ratio must be a float in (0, 1), got 1.5"),
    (UniformPruner(pruning_ratio=0), "pruning_ratio must be a float in (0, 1), got 0"),
    (MetaVotePruner(pruning_ratio=1.0), "pruning_ratio must be None or a float in (0, 1), got 1.0"),
    (IterativeFilterPruner(pruning_ratio=None), "pruning_ratio must be a float in (0, 1), got None"),
    (IterativeFilterPruner(n_iterations=0), "n_iterations must be an int >= 1, got 0"),
    (UniformPruner(n_iterations=-1), "n_iterations must be an int >= 0, got -1"),
    (IterativeFilterPruner(prune_every=2.0), "prune_every must be None or an int >= 1, got 2.0"),
    (IterativeFilterPruner(surgery="Mask"), "surgery must be one of 'physical', 'mask', got 'Mask'"),
    (IterativeFilterPruner(prune_fraction=1.0), "prune_fraction must be None or a float in (0, 1), got 1.0"),
    (IterativeFilterPruner(finetune_epochs=-1), "finetune_epochs must be an int >= 0, got -1"),
    (UniformPruner(lr=float("nan")), "lr must be a float > 0, got nan"),
    (UniformPruner(lr=np.float64(-0.5)), "lr must be a float > 0, got -0.5"),
    (MetaVotePruner(momentum=1.0), "momentum must be a float in [0, 1), got 1.0"),
    (MetaVotePruner(batch_size=True), "batch_size must be an int >= 1, got True"),
    (MetaVotePruner(temperature=0.0), "temperature must be a float > 0, got 0.0"),
    (MetaVotePruner(n_neighbors=0), "n_neighbors must be an int >= 1, got 0"),
    (MetaVotePruner(weight_decay=-1e-4), "weight_decay must be a float >= 0, got -0.0001"),
    (MetaVotePruner(exclude_shared_classes="no"),
     "exclude_shared_classes must be one of True, False, got 'no'"),
])
def test_messages_name_the_parameter_the_range_and_the_value(est, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        est.fit(None, None)


@pytest.mark.parametrize("est", [
    IterativeFilterPruner(batch_size=np.int64(8), lr=np.float32(0.1), momentum=0, prune_fraction=0.5),
    UniformPruner(n_iterations=0, head_epochs=0, weight_decay=0, head_l2=0.0, recalibrate_bn=np.True_),
    MetaVotePruner(n_neighbors=np.int32(1), pruning_ratio=None, temperature=1, exclude_shared_classes=True),
])
def test_numpy_scalars_and_plain_ints_are_accepted(est):
    with pytest.raises(ValueError, match=PAST_THE_PARAMETERS[type(est)]):
        est.fit(None, None)


def test_prune_every_may_not_exceed_n_iterations():
    with pytest.raises(ValueError, match=re.escape("prune_every (h=20) must not exceed n_iterations (J=12)")):
        IterativeFilterPruner(object(), n_iterations=12, prune_every=20).fit(None, None)


def test_init_and_set_params_do_not_validate():
    est = IterativeFilterPruner(lr=-1, surgery="bogus", pruning_ratio=2)
    assert clone(est).get_params()["lr"] == -1
    assert MetaVotePruner().set_params(temperature=-1).temperature == -1


def test_the_first_bad_parameter_in_declaration_order_is_named():
    with pytest.raises(ValueError, match="^pruning_ratio"):
        IterativeFilterPruner(pruning_ratio=2, lr=-1).fit(None, None)


# -- the constraint types --------------------------------------------------------------


def test_interval_bounds_and_words():
    assert Interval(float, 0, 1, closed="neither").describe() == "a float in (0, 1)"
    assert Interval(float, 0, 1, closed="left").describe() == "a float in [0, 1)"
    assert Interval(int, 1, 5).describe() == "an int in [1, 5]"
    assert Interval(int, None, 5, closed="neither").describe() == "an int < 5"
    assert Interval(float, 0, None, closed="neither").describe() == "a float > 0"
    closed = Interval(int, 1, 5)
    assert closed.accepts(1) and closed.accepts(5) and not closed.accepts(0) and not closed.accepts(6)
    assert not closed.accepts(2.0) and not closed.accepts(True) and closed.accepts(np.uint8(3))
    real = Interval(float, 0, None)
    assert real.accepts(0) and real.accepts(1e300) and not real.accepts(math.inf) and not real.accepts("1")
    with pytest.raises(ValueError, match="closed"):
        Interval(float, 0, 1, closed="open")
    with pytest.raises(ValueError, match="kind"):
        Interval(complex, 0, 1)
    with pytest.raises(ValueError, match="low must not exceed high"):
        Interval(int, 2, 1)


def test_options_match_by_type():
    flags = Options(True, False)
    assert flags.accepts(True) and flags.accepts(np.False_) and not flags.accepts(1) and not flags.accepts(0)
    none = Options(None)
    assert none.accepts(None) and not none.accepts(0) and none.describe() == "None"
    words = Options("physical", "mask")
    assert words.accepts(np.str_("mask")) and not words.accepts(b"mask")
    assert words == Options("physical", "mask") and repr(words) == "Options('physical', 'mask')"
    with pytest.raises(ValueError):
        Options()


def test_check_parameters_reads_only_the_constrained_names():
    limits = {"a": Interval(int, 0, None), "b": (Options(None), Options("x"))}
    check_parameters({"a": 0, "b": None, "c": object()}, limits)
    with pytest.raises(ValueError, match=re.escape("b must be None or 'x', got 'y'")):
        check_parameters({"a": 0, "b": "y"}, limits)
    with pytest.raises(KeyError):
        check_parameters({"b": None}, limits)
