"""Task similarity (metaprune.meta.similarity): shared classes and Hungarian-matched prototypes."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

from metaprune.backbone.penultimate import class_prototypes
from metaprune.backbone.resnet import cifar_resnet18
from metaprune.meta.similarity import (PrototypeSimilarity, SharedClassSimilarity, TaskSimilarity,
                                  prototype_similarities, prototype_similarity, shared_class_counts)

FAST = settings(max_examples=60, deadline=None)


class ToyBank:
    """Test double of the bank protocol that TaskSimilarity documents; not a real bank.

    ``tasks`` maps task id -> class labels; ``protos`` (optional) maps task id ->
    ``(classes, prototypes)``.
    """

    def __init__(self, tasks, backbone=None, protos=None, label_kind="int"):
        self._tasks, self._protos = dict(tasks), protos or {}
        self.backbone, self.label_kind = backbone, label_kind
        self.task_ids = list(self._tasks)

    def __len__(self):
        return len(self._tasks)

    def class_incidence(self):
        labels = [np.asarray(list(c)) for c in self._tasks.values()]
        classes = np.unique(np.concatenate(labels)) if labels else np.zeros(0, int)
        return classes, np.array([np.isin(classes, c) for c in labels], dtype=bool).reshape(len(labels), -1)

    def prototypes(self, task_ids=None):
        return [self._protos.get(t) for t in (self.task_ids if task_ids is None else task_ids)]


def _digits(per_class=25):
    """The first ``per_class`` images of every digit, as (n, 1, 8, 8) float32 in [0, 1]."""
    X, y = load_digits(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    return (X[keep].reshape(-1, 1, 8, 8) / 16.0).astype(np.float32), y[keep]


with torch.random.fork_rng():
    torch.manual_seed(0)
    BACKBONE = cifar_resnet18(width=4, in_channels=1, num_classes=10).eval()
X_DIGITS, Y_DIGITS = _digits()
TASK_CLASSES = {"t0": (0, 1, 2), "t1": (3, 4, 5, 6), "t2": (7, 8), "t3": (1, 2, 9)}


def _task(classes):
    keep = np.isin(Y_DIGITS, classes)
    return X_DIGITS[keep], Y_DIGITS[keep]


DIGIT_BANK = ToyBank(TASK_CLASSES, BACKBONE,
                     {t: class_prototypes(BACKBONE, *_task(c)) for t, c in TASK_CLASSES.items()})

prototype_arrays = st.integers(1, 5).flatmap(lambda n: st.integers(1, 6).flatmap(
    lambda d: arrays(np.float64, (n, d), elements=st.floats(-10, 10, allow_subnormal=False))))


def _same_width(a, b):
    """``b`` cut or zero-padded to ``a``'s number of features."""
    d = a.shape[1]
    return b[:, :d] if b.shape[1] >= d else np.pad(b, ((0, 0), (0, d - b.shape[1])))


def _unit(p):
    norms = np.linalg.norm(p, axis=1, keepdims=True)
    return p / np.where(norms > 0, norms, 1)


# -- pure functions ----------------------------------------------------------------------------------

@FAST
@given(incidence=arrays(bool, st.tuples(st.integers(1, 8), st.integers(1, 12))), data=st.data())
def test_shared_class_counts_is_row_wise_intersection(incidence, data):
    query = data.draw(arrays(bool, incidence.shape[1]))
    counts = shared_class_counts(incidence, query)
    assert counts.dtype == np.int64
    assert counts.tolist() == [int(np.sum(row & query)) for row in incidence]
    assert np.array_equal(shared_class_counts(incidence.astype(int), query.astype(int)), counts)


def test_shared_class_counts_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="n_classes"):
        shared_class_counts(np.ones((2, 3), bool), np.ones(4, bool))


@FAST
@given(a=prototype_arrays, b=prototype_arrays)
def test_prototype_similarity_is_symmetric_and_bounded(a, b):
    b = _same_width(a, b)
    s = prototype_similarity(a, b)
    assert s == pytest.approx(prototype_similarity(b, a), abs=1e-12)
    assert -1 - 1e-12 <= s <= 1 + 1e-12


@FAST
@given(a=prototype_arrays, seed=st.integers(0, 2**32 - 1))
def test_a_task_is_maximally_similar_to_itself_in_any_class_order(a, seed):
    assume(np.all(np.linalg.norm(a, axis=1) > 1e-3))
    permuted = a[np.random.default_rng(seed).permutation(len(a))] * 3.0  # scale does not matter
    assert prototype_similarity(a, a) == pytest.approx(1.0)
    assert prototype_similarity(a, permuted) == pytest.approx(1.0)


@FAST
@given(a=prototype_arrays, b=prototype_arrays)
def test_matching_is_the_best_one_to_one_assignment(a, b):
    b = _same_width(a, b)
    cos = _unit(a) @ _unit(b).T
    small, large = sorted(cos.shape)
    if cos.shape[0] > cos.shape[1]:
        cos = cos.T
    best = max(np.mean([cos[i, j] for i, j in enumerate(cols)])
               for cols in itertools.permutations(range(large), small))
    assert prototype_similarity(a, b) == pytest.approx(best, abs=1e-12)


def test_hand_made_matching():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]])
    # cosines: a0-b0 0, a0-b1 .707, a0-b2 -1, a1-b0 1, a1-b1 .707; best: a0-b1, a1-b0
    assert prototype_similarity(a, b) == pytest.approx((1.0 + np.sqrt(0.5)) / 2)


@FAST
@given(q=prototype_arrays, tasks=st.lists(prototype_arrays, min_size=1, max_size=5))
def test_vectorised_similarities_equal_pairwise(q, tasks):
    tasks = [_same_width(q, t) for t in tasks]
    np.testing.assert_allclose(prototype_similarities(q, tasks), [prototype_similarity(q, t) for t in tasks],
                               atol=1e-12)


def test_prototype_functions_reject_bad_input():
    with pytest.raises(ValueError, match="feature dimension"):
        prototype_similarities(np.ones((2, 3)), [np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="NaN"):
        prototype_similarity(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="non-empty"):
        prototype_similarity(np.ones((0, 2)), np.ones((1, 2)))
    assert prototype_similarities(np.ones((2, 3)), []).shape == (0,)


# -- estimators --------------------------------------------------------------------------------------

@FAST
@given(tasks=st.lists(st.sets(st.integers(0, 15), min_size=1, max_size=6), min_size=1, max_size=8),
       query=st.lists(st.integers(0, 20), min_size=1, max_size=30), as_str=st.booleans())
def test_shared_class_similarity_equals_set_intersection_size(tasks, query, as_str):
    conv = str if as_str else int
    bank = ToyBank({f"t{i}": [conv(c) for c in t] for i, t in enumerate(tasks)},
                   label_kind="str" if as_str else "int")
    got = SharedClassSimilarity().fit(bank).similarities(None, [conv(c) for c in query])
    assert got.shape == (len(tasks),) and got.dtype == np.float64
    assert got.tolist() == [len(set(query) & t) for t in tasks]


def test_prototype_similarity_of_a_bank_task_with_its_own_data_is_one():
    sim = PrototypeSimilarity().fit(DIGIT_BANK)
    X, y = _task(TASK_CLASSES["t1"])
    scores = sim.similarities(X, y)
    assert scores.shape == (len(DIGIT_BANK),)
    assert scores[1] == pytest.approx(1.0, abs=1e-5)
    assert np.argmax(scores) == 1 and np.all(scores[[0, 2, 3]] < 1 - 1e-4)
    # the same as the pure functions on the backbone's prototypes
    _, protos = class_prototypes(BACKBONE, X, y)
    banked = [p for _, p in DIGIT_BANK.prototypes()]
    np.testing.assert_allclose(scores, prototype_similarities(protos, banked))
    # flattened rows are not images: a clear error, not a crash in the network
    with pytest.raises(ValueError, match="input_shape"):
        sim.similarities(X.reshape(len(X), -1), y)


def test_similarities_are_symmetric_between_two_banked_tasks():
    sim = PrototypeSimilarity().fit(DIGIT_BANK)
    s03 = sim.similarities(*_task(TASK_CLASSES["t0"]))[3]
    s30 = sim.similarities(*_task(TASK_CLASSES["t3"]))[0]
    assert s03 == pytest.approx(s30, abs=1e-6)
    shared = SharedClassSimilarity().fit(DIGIT_BANK)
    assert shared.similarities(None, TASK_CLASSES["t0"])[3] == 2
    assert shared.similarities(None, TASK_CLASSES["t3"])[0] == 2


def test_errors_are_clear():
    with pytest.raises(ValueError, match="no tasks"):
        SharedClassSimilarity().fit(ToyBank({}))
    with pytest.raises(ValueError, match="prototypes"):
        PrototypeSimilarity().fit(ToyBank(TASK_CLASSES, BACKBONE))
    with pytest.raises(ValueError, match="int.*str"):
        SharedClassSimilarity().fit(DIGIT_BANK).similarities(None, ["cat", "dog"])
    with pytest.raises(ValueError, match="str.*int"):
        SharedClassSimilarity().fit(ToyBank({"a": ["cat"]}, label_kind="str")).similarities(None, [1, 2])
    with pytest.raises(ValueError, match="X"):
        PrototypeSimilarity().fit(DIGIT_BANK).similarities(None, [0, 1])
    with pytest.raises(ValueError, match="y"):
        SharedClassSimilarity().fit(DIGIT_BANK).similarities(None, None)
    with pytest.raises(ValueError, match="batch_size"):
        PrototypeSimilarity(batch_size=0).fit(DIGIT_BANK).similarities(*_task((0, 1)))
    with pytest.raises(NotFittedError):
        SharedClassSimilarity().similarities(None, [0])


def test_user_subclass_and_sklearn_protocol():
    with pytest.raises(TypeError):
        TaskSimilarity()

    class Newest(TaskSimilarity):
        """Prefers later bank tasks, whatever the query."""

        def _similarities(self, X, y):
            return np.arange(len(self.task_ids_))

    assert Newest().fit(DIGIT_BANK).similarities(None, [0]).tolist() == [0.0, 1.0, 2.0, 3.0]
    est = PrototypeSimilarity(batch_size=32, device="cpu")
    assert clone(est).get_params() == {"batch_size": 32, "device": "cpu"}
    assert est.fit(DIGIT_BANK) is est and est.task_ids_ == DIGIT_BANK.task_ids
