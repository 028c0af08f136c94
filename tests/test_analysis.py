import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metaprune import IterativeFilterPruner
from metaprune.analysis import (TrainingMonitor, covered_histogram, selection_at, vote_recall,
                                weight_change)
from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18
from metaprune.channels.selection import Selection

SIZE = 12


@st.composite
def selections(draw, n):
    return [Selection({"g": sorted(draw(st.sets(st.integers(0, SIZE - 1), min_size=1, max_size=SIZE)))})
            for _ in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: selections(n + 1)))
def test_recall_and_histogram_match_brute_force(sels):
    target, neighbours = sels[0], sels[1:]
    n = len(neighbours)
    votes = [sum(k in set(s["g"].tolist()) for s in neighbours) for k in range(SIZE)]
    kept = set(target["g"].tolist())
    d = covered_histogram(target, neighbours, {"g": SIZE})["g"]
    b = vote_recall(target, neighbours, {"g": SIZE})["g"]
    assert d.shape == (n + 1,) and d.sum() == len(kept)
    for a in range(n + 1):
        assert d[a] == sum(1 for k in kept if votes[k] == a)
    for a in range(1, n + 1):
        with_a = [k for k in range(SIZE) if votes[k] == a]
        if with_a:
            assert b[a - 1] == pytest.approx(sum(k in kept for k in with_a) / len(with_a))
        else:
            assert np.isnan(b[a - 1])


def test_recall_is_one_when_neighbours_equal_the_target():
    t = Selection({"g": [1, 4, 5]})
    assert vote_recall(t, [t, t, t], {"g": 8})["g"].tolist()[-1] == 1.0
    assert covered_histogram(t, [t, t, t], {"g": 8})["g"].tolist() == [0, 0, 0, 3]


def test_analysis_errors():
    t = Selection({"g": [1]})
    with pytest.raises(ValueError, match="neighbour"):
        vote_recall(t, [], {"g": 4})
    with pytest.raises(ValueError, match="lacks group"):
        covered_histogram(Selection({"h": [0]}), [t], {"g": 4})


def test_weight_change_compares_only_shared_weights():
    torch.manual_seed(0)
    net = cifar_resnet18(width=2, num_classes=3)
    space = FilterSpace.from_model(net)
    full = Selection.full(space)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    later = {g: np.arange(1, space.sizes[g]) for g in space.names}  # channel 0 pruned everywhere
    later = Selection(later, space)
    from metaprune.channels.transfer import gather_state
    after = gather_state(state, later, space)
    after = {k: v + 0.5 if k == "conv1.weight" else v for k, v in after.items()}
    change = weight_change(state, full, after, later, space)
    assert change["conv1.weight"] == pytest.approx(0.5)
    assert change["layer1.0.conv1.weight"] == 0.0 and "fc.weight" in change
    assert not any(k.endswith("running_mean") or k.endswith("bn1.weight") for k in change)


def test_monitor_and_pruning_path_on_an_ifp_run():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(48, 1, 8, 8)).astype(np.float32)
    y = np.arange(48) % 3
    X[y == 1] += 1.0
    torch.manual_seed(0)
    backbone = cifar_resnet18(width=4, in_channels=1, num_classes=3)
    monitor = TrainingMonitor(every=2, X_eval=X, y_eval=y, snapshots=True)
    ifp = IterativeFilterPruner(backbone, pruning_ratio=0.5, n_iterations=6, prune_every=2, batch_size=16,
                                head_epochs=1, finetune_epochs=0, callbacks=[("monitor", monitor)],
                                random_state=0).fit(X, y)
    monitor = dict(ifp.net_.callbacks_)["monitor"]
    assert monitor.iterations_ == [1, 3, 5]
    assert len(monitor.accuracy_) == 3
    import copy

    at_end = copy.deepcopy(ifp.net_.module_).eval()  # the final shape: no pruning event after iteration 4
    at_end.load_state_dict(monitor.snapshots_[-1])  # as it stood at iteration 5, before BN recalibration
    with torch.no_grad():
        assert monitor.accuracy_[-1] == float(np.mean(at_end(torch.from_numpy(X)).argmax(1).numpy() == y))
    assert [it for it, _ in ifp.pruning_path_] == [0, 2, 4][: len(ifp.pruning_path_)]
    assert ifp.pruning_path_[-1][1] == ifp.selection_
    space = ifp.filter_space_
    sels = [selection_at(ifp.pruning_path_, it, space) for it in monitor.iterations_]
    assert sels[-1] == ifp.selection_
    for (s0, w0), (s1, w1) in zip(zip(sels, monitor.snapshots_), zip(sels[1:], monitor.snapshots_[1:])):
        change = weight_change(w0, s0, w1, s1, space)
        assert all(np.isfinite(v) and v >= 0 for v in change.values())
        assert any(v > 0 for v in change.values())  # SGD steps moved weights
    with pytest.raises(ValueError, match="every"):
        TrainingMonitor(every=0).initialize()
