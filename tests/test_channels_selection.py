import numpy as np
import pytest

from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18
from metaprune.channels.selection import Selection


@pytest.fixture(scope="module")
def space():
    return FilterSpace.from_model(cifar_resnet18(width=8))


def test_full_selection_keeps_everything(space):
    full = Selection.full(space)
    assert full.n_kept == space.sizes
    assert np.array_equal(full["layer4"], np.arange(64))


def test_indices_are_sorted_read_only_and_round_trip(space):
    sel = Selection({g.name: [g.size - 1, 0] for g in space}, space)
    assert np.array_equal(sel["layer2"], [0, 15])
    with pytest.raises(ValueError):
        sel["layer2"][0] = 3
    assert Selection.from_dict(sel.to_dict(), space) == sel
    assert hash(Selection.from_dict(sel.to_dict())) == hash(sel)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update({"layer9": [0]}), "unknown group 'layer9'"),
    (lambda d: d.update({"layer2": [0, 16]}), "group 'layer2': channel index 16 out of range"),
    (lambda d: d.update({"layer3": [1, 1]}), "group 'layer3': channel 1 is listed more than once"),
    (lambda d: d.update({"layer4": []}), "group 'layer4': a group must keep at least one channel"),
    (lambda d: d.update({"layer1": [-1]}), "group 'layer1': negative"),
    (lambda d: d.update({"layer1": [0.5]}), "group 'layer1': kept indices must be integers"),
    (lambda d: d.pop("layer1.0.conv1"), r"lacks groups \['layer1.0.conv1'\]"),
])
def test_invalid_selections_name_the_group(space, change, message):
    d = Selection.full(space).to_dict()
    change(d)
    with pytest.raises(ValueError, match=message):
        Selection(d, space)


def test_positions_in_and_subset(space):
    outer = Selection({g.name: np.arange(0, g.size, 2) for g in space}, space)
    inner = Selection({g.name: np.arange(0, g.size, 4) for g in space}, space)
    pos = inner.positions_in(outer)
    assert np.array_equal(outer["layer3"][pos["layer3"]], inner["layer3"])
    assert inner.subset_of(outer) and not outer.subset_of(inner)
    with pytest.raises(ValueError, match="no longer has"):
        outer.positions_in(inner)


def test_masks(space):
    sel = Selection({g.name: [0, 3] for g in space}, space)
    masks = sel.masks(space)
    assert masks["layer2"].sum() == 2 and masks["layer2"][3] and masks["layer2"].shape == (16,)
