"""Votes, channel sampling and weight averaging of meta-vote pruning (metaprune.meta.voting)."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18, cifar_resnet50
from metaprune.channels.selection import Selection
from metaprune.channels.surgery import extract
from metaprune.channels.transfer import expand_state, gather_state
from metaprune.meta.voting import (average_head, average_weights, iou_per_group, sample_channels, uniform_channels,
                                   vote_counts)
from strategies import selections

SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=60, deadline=None)


def _randomised(net, seed):
    """``net`` with every floating tensor redrawn (running variances positive), in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
                if key.endswith("running_var"):
                    tensor.abs_().add_(0.1)
    return net


def _backbone_state(net):
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}


# pre-trained networks and neighbours' fine-tuned copies (heads with another class count)
BACKBONES = [_randomised(cifar_resnet18(width=4, num_classes=3), 0),
             _randomised(cifar_resnet50(width=2, num_classes=3), 1)]
SPACES = [FilterSpace.from_model(net) for net in BACKBONES]
TUNED = [[_randomised(cifar_resnet18(width=4, num_classes=7), 10 + i) for i in range(4)],
         [_randomised(cifar_resnet50(width=2, num_classes=7), 20 + i) for i in range(4)]]


def _neighbours(which, sels):
    return [(sel, extract(TUNED[which][i], sel, SPACES[which]).state_dict()) for i, sel in enumerate(sels)]


@st.composite
def vote_problems(draw, max_groups=3, max_size=40):
    """(votes, n_keep): random groups of non-negative votes and a valid n_keep per group."""
    n_groups = draw(st.integers(1, max_groups))
    votes, n_keep = {}, {}
    for g in range(n_groups):
        size = draw(st.integers(1, max_size))
        votes[f"g{g}"] = draw(arrays(np.float64, size, elements=st.floats(0, 1e3, allow_subnormal=False)))
        n_keep[f"g{g}"] = draw(st.integers(1, size))
    return votes, n_keep


temperatures = st.floats(1e-300, 1e300, allow_subnormal=False)


# -- vote_counts -------------------------------------------------------------------------------------

@SLOW
@given(sels=st.lists(selections(SPACES[1]), min_size=0, max_size=5))
def test_vote_counts_equals_brute_force_counting(sels):
    space = SPACES[1]
    votes = vote_counts(sels, space.sizes)
    assert list(votes) == list(space.names)
    for g in space:
        expected = [sum(int(k in set(sel[g.name].tolist())) for sel in sels) for k in range(g.size)]
        assert votes[g.name].dtype == np.int64
        assert votes[g.name].tolist() == expected


@SLOW
@given(sels=st.lists(selections(SPACES[0]), min_size=1, max_size=5), data=st.data())
def test_neighbour_order_does_not_change_votes_or_sample(sels, data):
    space = SPACES[0]
    perm = data.draw(st.permutations(range(len(sels))))
    shuffled = [sels[i] for i in perm]
    votes, votes_shuffled = vote_counts(sels, space.sizes), vote_counts(shuffled, space.sizes)
    assert all(np.array_equal(votes[g], votes_shuffled[g]) for g in votes)
    n_keep = space.n_keep(0.5)
    assert sample_channels(votes, n_keep, 0.025, 3) == sample_channels(votes_shuffled, n_keep, 0.025, 3)


def test_vote_counts_rejects_missing_group_and_out_of_range():
    with pytest.raises(ValueError, match="'b'"):
        vote_counts([Selection({"a": [0]})], {"a": 2, "b": 3})
    with pytest.raises(ValueError, match="'a'.*out of range"):
        vote_counts([Selection({"a": [5]})], {"a": 2})
    assert vote_counts([], {"a": 3})["a"].tolist() == [0, 0, 0]


# -- sample_channels ---------------------------------------------------------------------------------

@FAST
@given(problem=vote_problems(), temperature=temperatures, seed=st.integers(0, 2**32 - 1))
def test_sample_keeps_exactly_n_keep_sorted_unique_in_range(problem, temperature, seed):
    votes, n_keep = problem
    sel = sample_channels(votes, n_keep, temperature, seed)
    assert list(sel) == list(votes)
    for g, kept in sel.items():
        assert kept.dtype == np.int64 and len(kept) == n_keep[g]
        assert np.all(np.diff(kept) > 0) and kept[0] >= 0 and kept[-1] < len(votes[g])


@FAST
@given(problem=vote_problems(), temperature=st.sampled_from([1e-6, 1e-12, 1e-300, 1e-310]),
       integer=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_zero_temperature_limit_keeps_the_top_voted(problem, temperature, integer, seed):
    votes, n_keep = problem
    if integer:  # vote counts: many ties
        votes = {g: np.floor(v / 100) for g, v in votes.items()}
    else:  # distinct values, at least 1 apart
        votes = {g: np.random.default_rng(seed).permutation(len(v)).astype(float) for g, v in votes.items()}
    sel = sample_channels(votes, n_keep, temperature, seed)
    for g, kept in sel.items():
        chosen = np.zeros(len(votes[g]), bool)
        chosen[kept] = True
        if not chosen.all():
            assert votes[g][chosen].min() >= votes[g][~chosen].max()


@FAST
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_zero_votes_are_never_chosen_at_paper_temperature(data, seed):
    size = data.draw(st.integers(2, 64))
    n_neighbours = data.draw(st.integers(1, 10))
    votes = data.draw(arrays(np.int64, size, elements=st.integers(0, n_neighbours)))
    n_voted = int((votes > 0).sum())
    if n_voted == 0:
        votes[0] = 1
        n_voted = 1
    n_keep = data.draw(st.integers(1, n_voted))
    kept = sample_channels({"g": votes}, {"g": n_keep}, 0.025, seed)["g"]
    assert np.all(votes[kept] > 0)


def test_very_large_temperature_is_uniform():
    votes = {"g": np.arange(10) * 5}  # strongly skewed votes, washed out by tau
    rng = np.random.default_rng(1234)
    draws = 4000
    freq = np.zeros(10)
    for _ in range(draws):
        freq[sample_channels(votes, {"g": 3}, 1e9, rng)["g"]] += 1
    freq /= draws
    # each channel is kept with probability 3/10; binomial sd ~0.0072, tolerance ~4.5 sd
    np.testing.assert_allclose(freq, 0.3, atol=0.033)


def test_inclusion_frequencies_follow_sequential_softmax_sampling():
    """Gumbel top-k equals drawing from softmax(v / tau) one channel at a time without replacement."""
    v, tau, n_keep = np.array([2.0, 1.0, 0.0, 0.5]), 0.7, 2
    p = np.exp(v / tau) / np.exp(v / tau).sum()
    expected = np.zeros(len(v))  # P(k is among the 2 draws) by enumerating ordered pairs
    for i, j in itertools.permutations(range(len(v)), 2):
        prob = p[i] * p[j] / (1 - p[i])
        expected[[i, j]] += prob
    rng = np.random.default_rng(7)
    draws = 5000
    freq = np.zeros(len(v))
    for _ in range(draws):
        freq[sample_channels({"g": v}, {"g": n_keep}, tau, rng)["g"]] += 1
    np.testing.assert_allclose(freq / draws, expected, atol=0.03)


def test_sample_is_reproducible_and_independent_of_group_order():
    votes = {"a": np.arange(20) % 3, "b": np.ones(30)}
    n_keep = {"a": 5, "b": 7}
    first = sample_channels(votes, n_keep, 0.5, 11)
    again = sample_channels(dict(reversed(list(votes.items()))), n_keep, 0.5, np.random.default_rng(11))
    assert first == again and list(again) == ["b", "a"]
    assert sample_channels(votes, n_keep, 0.5, np.random.RandomState(0)).n_kept == n_keep


@pytest.mark.parametrize("votes, n_keep, temperature, match", [
    ({"a": [1, 2]}, {"a": 1}, 0.0, "temperature"),
    ({"a": [1, 2]}, {"a": 1}, -1.0, "temperature"),
    ({"a": [1, 2]}, {"a": 1}, float("nan"), "temperature"),
    ({"a": [1, 2]}, {"a": 3}, 1.0, "'a'.*n_keep"),
    ({"a": [1, 2]}, {"a": 0}, 1.0, "'a'.*n_keep"),
    ({"a": [1, -2]}, {"a": 1}, 1.0, "'a'.*non-negative"),
    ({"a": [1, 2]}, {}, 1.0, "'a'.*n_keep"),
    ({"a": [1, 2]}, {"a": 1, "b": 1}, 1.0, "'b'"),
])
def test_sample_rejects_bad_arguments(votes, n_keep, temperature, match):
    with pytest.raises(ValueError, match=match):
        sample_channels(votes, n_keep, temperature, 0)


@FAST
@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_uniform_channels_is_sample_channels_on_zero_votes(sizes, seed, data):
    sizes = {f"g{i}": s for i, s in enumerate(sizes)}
    n_keep = {g: data.draw(st.integers(1, s)) for g, s in sizes.items()}
    sel = uniform_channels(sizes, n_keep, seed)
    assert sel.n_kept == n_keep and all(sel[g][-1] < sizes[g] for g in sizes)
    assert sel == sample_channels({g: np.zeros(s) for g, s in sizes.items()}, n_keep, 1.0, seed)


# -- iou ---------------------------------------------------------------------------------------------

@FAST
@given(a=selections(SPACES[0]), b=selections(SPACES[0]))
def test_iou_per_group_matches_sets(a, b):
    iou = iou_per_group(a, b)
    assert iou == iou_per_group(b, a) and iou_per_group(a, a) == {g: 1.0 for g in a}
    for g in a:
        sa, sb = set(a[g].tolist()), set(b[g].tolist())
        assert iou[g] == pytest.approx(len(sa & sb) / len(sa | sb))


# -- average_weights ---------------------------------------------------------------------------------

def _brute_force_average(neighbours, target, space, fallback):
    """Sum of expanded values over sum of presence masks, fallback where nobody has it; then gathered."""
    total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in fallback.items()}
    count = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in fallback.items()}
    for sel, state in neighbours:
        values, present = expand_state({k: v for k, v in state.items() if k in fallback}, sel, space)
        for k in fallback:
            if space.tensor_axes(k) and fallback[k].is_floating_point():
                total[k] += values[k].double()
                count[k] += present[k].double()
    full = {k: torch.where(count[k] > 0, (total[k] / count[k].clamp(min=1)).to(v.dtype), v)
            for k, v in fallback.items()}
    return gather_state(full, target, space)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from([0, 1]), data=st.data())
def test_average_equals_brute_force_through_expand_state(which, data):
    space = SPACES[which]
    sels = data.draw(st.lists(selections(space), min_size=1, max_size=4))
    target = data.draw(selections(space))
    fallback = _backbone_state(BACKBONES[which])
    neighbours = _neighbours(which, sels)
    got = average_weights(neighbours, target, space, fallback)
    expected = _brute_force_average(neighbours, target, space, fallback)
    assert list(got) == list(fallback)
    for k in fallback:
        assert got[k].shape == expected[k].shape and got[k].dtype == fallback[k].dtype, k
        torch.testing.assert_close(got[k], expected[k], rtol=1e-6, atol=1e-7, msg=k)
    # and the result loads into the target's physically pruned network
    extract(BACKBONES[which], target, space).load_state_dict(got, strict=False)


@SLOW
@given(sel=selections(SPACES[0]), target=selections(SPACES[0]))
def test_single_neighbour_is_reproduced_where_it_has_weights(sel, target):
    space, fallback = SPACES[0], _backbone_state(BACKBONES[0])
    [(sel, state)] = _neighbours(0, [sel])
    got = average_weights([(sel, state)], target, space, fallback)
    values, present = expand_state({k: state[k] for k in fallback}, sel, space)
    values, present = gather_state(values, target, space), gather_state(present, target, space)
    fallback_cut = gather_state(fallback, target, space)
    for k in fallback:
        if not space.tensor_axes(k):
            assert torch.equal(got[k], fallback[k]), k
            continue
        assert torch.equal(got[k][present[k]], values[k][present[k]]), k
        assert torch.equal(got[k][~present[k]], fallback_cut[k][~present[k]]), k


@SLOW
@given(sels=st.lists(selections(SPACES[0]), min_size=2, max_size=4), target=selections(SPACES[0]),
       data=st.data())
def test_neighbour_order_does_not_change_averaged_weights(sels, target, data):
    space, fallback = SPACES[0], _backbone_state(BACKBONES[0])
    neighbours = _neighbours(0, sels)
    perm = data.draw(st.permutations(range(len(neighbours))))
    got = average_weights(neighbours, target, space, fallback)
    shuffled = average_weights([neighbours[i] for i in perm], target, space, fallback)
    for k in got:
        torch.testing.assert_close(got[k], shuffled[k], rtol=1e-6, atol=1e-7, msg=k)


def test_no_neighbours_or_disjoint_neighbours_give_the_pretrained_weights():
    space, fallback = SPACES[0], _backbone_state(BACKBONES[0])
    target = Selection({g.name: [0] for g in space}, space)
    other = Selection({g.name: [g.size - 1] for g in space}, space)
    expected = gather_state(fallback, target, space)
    for neighbours in ([], _neighbours(0, [other])):
        got = average_weights(neighbours, target, space, fallback)
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_average_of_identical_neighbours_is_their_weights_and_ignores_heads():
    space, fallback = SPACES[0], _backbone_state(BACKBONES[0])
    full = Selection.full(space)
    tuned = TUNED[0][0]
    state = tuned.state_dict()  # has fc.* with 7 classes: not in the fallback, ignored
    got = average_weights([(full, state), (full, state)], full, space, fallback)
    for k in fallback:
        if space.tensor_axes(k):
            torch.testing.assert_close(got[k], state[k], rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(got[k], fallback[k])


def test_average_rejects_a_state_that_does_not_match_its_selection():
    space, fallback = SPACES[0], _backbone_state(BACKBONES[0])
    full = Selection.full(space)
    small = Selection({g.name: [0, 1] for g in space}, space)
    with pytest.raises(ValueError, match="conv1.weight: axis 0"):
        average_weights([(small, BACKBONES[0].state_dict())], full, space, fallback)
    with pytest.raises(ValueError, match="neighbour 0.*lacks"):
        average_weights([(full, {"conv1.weight": fallback["conv1.weight"]})], full, space, fallback)


@pytest.mark.parametrize("temperature", [1e-3, 1e-310])
def test_tiny_temperature_breaks_ties_uniformly(temperature):
    votes = {"g": np.array([3, 3, 3, 3, 1, 0])}
    rng = np.random.default_rng(5)
    freq = np.zeros(6)
    for _ in range(2000):
        freq[sample_channels(votes, {"g": 2}, temperature, rng)["g"]] += 1
    np.testing.assert_allclose(freq / 2000, [0.5, 0.5, 0.5, 0.5, 0, 0], atol=0.05)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_average_keeps_the_fallback_dtype(dtype):
    space = SPACES[0]
    fallback = {k: v.to(dtype) if v.is_floating_point() else v for k, v in _backbone_state(BACKBONES[0]).items()}
    sels = [uniform_channels(space.sizes, space.n_keep(0.5), seed) for seed in range(3)]
    target = uniform_channels(space.sizes, space.n_keep(0.5), 9)
    neighbours = _neighbours(0, sels)
    got = average_weights(neighbours, target, space, fallback)
    expected = _brute_force_average(neighbours, target, space, fallback)
    for k in fallback:
        assert got[k].dtype == fallback[k].dtype, k
        torch.testing.assert_close(got[k], expected[k], msg=k)


# -- average_head ------------------------------------------------------------------------------------

@SLOW
@given(sels=st.lists(selections(SPACES[0]), min_size=1, max_size=4), target=selections(SPACES[0]), data=st.data())
def test_average_head_equals_brute_force_over_full_size_heads(sels, target, data):
    space = SPACES[0]
    neighbours = _neighbours(0, sels)  # heads of 7 classes on each neighbour's kept layer4 channels
    labels = [data.draw(st.permutations(range(10)))[:7] for _ in sels]
    classes = data.draw(st.permutations(range(10)))[:3]
    weight, bias, known = average_head(neighbours, labels, classes, target, space)
    n_full = space.sizes["layer4"]
    for row, label in enumerate(classes):
        columns, biases = [], []
        for (sel, state), names in zip(neighbours, labels):
            if label in names:
                full = np.full(n_full, np.nan)
                full[sel["layer4"]] = state["fc.weight"][names.index(label)].numpy()
                columns.append(full[target["layer4"]])
                biases.append(float(state["fc.bias"][names.index(label)]))
        assert known[row] == bool(columns)
        if columns:
            stacked = np.array(columns)
            present = ~np.isnan(stacked)
            expected = np.where(present.any(0), np.nansum(stacked, 0) / np.maximum(present.sum(0), 1), 0.0)
            np.testing.assert_allclose(weight[row], expected, rtol=1e-6, atol=1e-7)
            assert bias[row] == pytest.approx(np.mean(biases), rel=1e-6, abs=1e-7)
        else:
            assert not weight[row].any() and bias[row] == 0.0


def test_average_head_rejects_mismatched_heads_and_class_lists():
    space = SPACES[0]
    full = Selection.full(space)
    small = Selection({g.name: [0, 1] for g in space}, space)
    state = TUNED[0][0].state_dict()  # 7 classes over every layer4 channel
    with pytest.raises(ValueError, match="2 neighbours but 1 class lists"):
        average_head([(full, state), (full, state)], [list(range(7))], [0, 1], full, space)
    with pytest.raises(ValueError, match="7 classes and its selection keeps 2 features"):
        average_head([(small, state)], [list(range(7))], [0, 1], full, space)
    with pytest.raises(ValueError, match="shape"):
        average_head([(full, state)], [list(range(5))], [0, 1], full, space)
