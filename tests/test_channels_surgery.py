import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18, cifar_resnet50, resnet18
from metaprune.channels.selection import Selection
from metaprune.channels.surgery import channel_masks_applied, extract, mask_channels, shrink_
from strategies import selections


def _randomised(net, seed=0):
    """Give BatchNorms non-trivial statistics so masking errors cannot hide."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


NETS = {"basic": _randomised(cifar_resnet18(width=4, num_classes=5)),
        "bottleneck": _randomised(cifar_resnet50(width=2, num_classes=5))}
SPACES = {k: FilterSpace.from_model(v) for k, v in NETS.items()}
X = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _check_extract_equals_masked(kind, sel):
    net, space = NETS[kind], SPACES[kind]
    small = extract(net, sel, space)
    with torch.no_grad(), channel_masks_applied(net, sel, space):
        expected = net(X)
    with torch.no_grad():
        got = small(X)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert FilterSpace.from_model(small).sizes == sel.n_kept


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sel=selections(SPACES["basic"]))
def test_extract_equals_masked_forward_basic_block(sel):
    _check_extract_equals_masked("basic", sel)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sel=selections(SPACES["bottleneck"]))
def test_extract_equals_masked_forward_bottleneck(sel):
    _check_extract_equals_masked("bottleneck", sel)


def test_full_selection_is_identity_and_original_untouched():
    net, space = NETS["basic"], SPACES["basic"]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    small = extract(net, Selection.full(space), space)
    with torch.no_grad():
        torch.testing.assert_close(small(X), net(X))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_masks_really_change_the_output_and_are_removable():
    net, space = NETS["basic"], SPACES["basic"]
    sel = Selection({g.name: [0] for g in space}, space)
    with torch.no_grad():
        plain = net(X)
        handles = mask_channels(net, sel, space)
        masked = net(X)
        for h in handles:
            h.remove()
        again = net(X)
    assert not torch.allclose(plain, masked)
    torch.testing.assert_close(plain, again)


def test_shrink_twice_equals_one_extract_and_keeps_training_state():
    net = _randomised(resnet18(width=8, num_classes=3), seed=2)
    space = FilterSpace.from_model(net)
    rng = np.random.default_rng(0)
    half = Selection({g.name: np.sort(rng.choice(g.size, g.size // 2, replace=False)) for g in space}, space)
    quarter = Selection({g.name: half[g.name][::2] for g in space}, space)
    staged = extract(net, half, space)
    staged.train()
    staged.fc.weight.requires_grad_(False)
    shrink_(staged, space, half, quarter)
    assert staged.training and not staged.fc.weight.requires_grad and staged.layer1[0].conv1.weight.requires_grad
    direct = extract(net, quarter, space)
    staged.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(staged(x), direct(x))


def test_shrink_rejects_channels_already_gone():
    net, space = NETS["basic"], SPACES["basic"]
    a = Selection({g.name: [0] for g in space}, space)
    b = Selection({g.name: [1] for g in space}, space)
    small = extract(net, a, space)
    with pytest.raises(ValueError, match="no longer has"):
        shrink_(small, space, a, b)
