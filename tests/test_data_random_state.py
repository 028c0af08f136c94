"""Tests of metaprune.data.random_state: one numpy Generator from any random_state."""

import numpy as np
import pytest

from metaprune.data.random_state import as_generator


def _draws(generator):
    return generator.integers(2**31, size=5).tolist()


def test_int_seeds_are_default_rng():
    for seed in (0, 7, np.int64(3)):
        assert _draws(as_generator(seed)) == _draws(np.random.default_rng(int(seed)))


def test_a_generator_is_used_as_is():
    generator = np.random.default_rng(1)
    assert as_generator(generator) is generator


def test_a_random_state_seeds_a_new_generator_reproducibly():
    first = _draws(as_generator(np.random.RandomState(5)))
    assert first == _draws(as_generator(np.random.RandomState(5)))
    legacy = np.random.RandomState(5)
    assert first == _draws(np.random.default_rng(legacy.randint(np.iinfo(np.int32).max)))
    legacy, reference = np.random.RandomState(5), np.random.RandomState(5)
    as_generator(legacy)
    reference.randint(np.iinfo(np.int32).max)  # the RandomState is advanced by exactly one draw
    assert legacy.randint(100) == reference.randint(100)


def test_none_gives_fresh_entropy():
    assert isinstance(as_generator(None), np.random.Generator)


@pytest.mark.parametrize("value", [1.5, "0", [0]])
def test_other_values_are_refused(value):
    with pytest.raises(ValueError, match="random_state must be None, an int"):
        as_generator(value)
