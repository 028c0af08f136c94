import torch
from hypothesis import HealthCheck, given, settings

from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18, cifar_resnet50
from metaprune.channels.surgery import extract
from metaprune.channels.transfer import expand_state, gather_state
from strategies import selections

NETS = [cifar_resnet18(width=4, num_classes=3), cifar_resnet50(width=2, num_classes=3)]
SPACES = [FilterSpace.from_model(n) for n in NETS]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sel=selections(SPACES[1]))
def test_expand_gather_round_trip_is_exact(sel):
    net, space = NETS[1], SPACES[1]
    pruned = extract(net, sel, space).state_dict()
    values, present = expand_state(pruned, sel, space)
    back = gather_state(values, sel, space)
    assert set(back) == set(pruned)
    for key, tensor in pruned.items():
        assert torch.equal(back[key], tensor), key
        assert values[key].shape == net.state_dict()[key].shape or key.startswith("fc.")
        assert int(present[key].sum()) == tensor.numel()
        # expanded values equal the pre-trained ones wherever present
        assert torch.equal(values[key][present[key]], net.state_dict()[key][present[key]])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sel=selections(SPACES[0]))
def test_gather_of_full_state_equals_extracted_state(sel):
    net, space = NETS[0], SPACES[0]
    pruned = extract(net, sel, space).state_dict()
    gathered = gather_state(net.state_dict(), sel, space)
    assert all(torch.equal(gathered[k], pruned[k]) for k in pruned)


def test_conv_presence_is_outer_product_of_kept_channels():
    net, space = NETS[0], SPACES[0]
    from metaprune.channels.selection import Selection
    sel = Selection({g.name: list(range(0, g.size, 3)) for g in space}, space)
    _, present = expand_state(extract(net, sel, space).state_dict(), sel, space)
    mask = present["layer2.0.conv2.weight"][:, :, 0, 0]
    out_m, in_m = sel.masks(space)["layer2"], sel.masks(space)["layer2.0.conv1"]
    assert torch.equal(mask, torch.outer(torch.tensor(out_m), torch.tensor(in_m)))
