"""Channel groups of any CNN by tracing: torchvision's MobileNets, EfficientNet, RegNet, VGG,
ConvNeXt, DenseNet and a user's own module are cut physically exactly as masking predicts."""

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from torch import nn

from metaprune.channels.complexity import count_flops, count_parameters
from metaprune.channels.filter_space import FilterSpace, head_name
from metaprune.channels.scores import channel_scores
from metaprune.channels.selection import Selection
from metaprune.channels.surgery import channel_masks_applied, extract, shrink_
from metaprune.channels.tracing import trace_filter_space
from metaprune.backbone.penultimate import penultimate
from metaprune.backbone.resnet import cifar_resnet18, cifar_resnet50
from strategies import selections
from test_meta_voting import _brute_force_average

SHAPE = (3, 64, 64)


class TinyNet(nn.Module):
    """A user's own network: a residual sum, a DenseNet-style concatenation read by a
    depthwise convolution, squeeze-and-excitation, and (C, H, W) flattened into a hidden
    Linear layer."""

    def __init__(self, n_classes=4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.grow = nn.Conv2d(8, 4, 1)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.bn = nn.BatchNorm2d(12)
        self.fuse = nn.Conv2d(12, 6, 1)
        self.se_reduce = nn.Conv2d(6, 3, 1)
        self.se_expand = nn.Conv2d(3, 6, 1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.hidden = nn.Linear(6 * 4, 10)
        self.fc = nn.Linear(10, n_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.branch(x))
        x = torch.cat([x, self.grow(x)], dim=1)
        x = self.fuse(nn.functional.silu(self.bn(self.dw(x))))
        scale = torch.sigmoid(self.se_expand(torch.relu(self.se_reduce(x.mean((2, 3), keepdim=True)))))
        x = self.pool(x * scale)
        return self.fc(torch.relu(self.hidden(torch.flatten(x, 1))))


BUILDERS = {
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(width_mult=0.5, num_classes=5),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(width_mult=0.5, num_classes=5),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(num_classes=5),
    "regnet_y_400mf": lambda: torchvision.models.regnet_y_400mf(num_classes=5),
    "vgg11_bn": lambda: torchvision.models.vgg11_bn(num_classes=5),
    "convnext_tiny": lambda: torchvision.models.convnext_tiny(num_classes=5),
    "densenet121": lambda: torchvision.models.densenet121(num_classes=5),
    "tiny": TinyNet,
}
# groups, head, groups kept in blocks (grouped convolutions)
EXPECTED = {"mobilenet_v2": (25, "classifier.1", 0), "mobilenet_v3_small": (26, "classifier.3", 0),
            "efficientnet_b0": (40, "classifier.1", 0), "regnet_y_400mf": (37, "fc", 16),
            "vgg11_bn": (10, "classifier.6", 0), "convnext_tiny": (22, "classifier.2", 0),
            "densenet121": (120, "classifier", 0), "tiny": (5, "fc", 0)}
_CACHE: dict = {}


def _randomised(net, seed=0):
    """Non-trivial normalisation statistics, so that a wrong mask or cut cannot hide."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
        elif isinstance(m, nn.LayerNorm):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    for name, p in net.named_parameters():
        if name.endswith("layer_scale"):
            p.data.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return net.eval()


def _net(name):
    if name not in _CACHE:
        torch.manual_seed(0)
        net = _randomised(BUILDERS[name]())
        _CACHE[name] = (net, *trace_filter_space(net, SHAPE))
    return _CACHE[name]


def _ten_percent(space, seed=0):
    rng = np.random.default_rng(seed)
    kept = {}
    for g in space:
        blocks = g.size // g.unit
        chosen = np.sort(rng.choice(blocks, max(1, round(0.1 * blocks)), replace=False))
        kept[g.name] = (chosen[:, None] * g.unit + np.arange(g.unit)).ravel()
    return Selection(kept, space)


def _assert_extract_equals_masked(name, selection):
    net, space, _ = _net(name)
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(1))
    small = extract(net, selection, space)
    with torch.no_grad():
        got = small(x)
        with channel_masks_applied(net, selection, space):
            expected = net(x)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-4 * max(scale, 1e-3)
    return small


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_groups_head_and_blocks(name):
    net, space, info = _net(name)
    n_groups, head, n_blocked = EXPECTED[name]
    assert (len(space), info.head, head_name(space), head_name(net)) == (n_groups, head, head, head)
    assert sum(g.unit > 1 for g in space) == n_blocked
    # every convolution's and every Linear's weight has its axes, and the head reads a group
    for module_name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            axes = space.tensor_axes(f"{module_name}.weight")
            assert len(axes) == 2 and any(a is not None for a in axes)
    assert space.tensor_axes(f"{head}.weight")[0] is None
    assert all(g.activations for g in space)
    assert FilterSpace.from_dict(space.to_dict()) == space


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_ten_percent_network_equals_masked_and_is_small(name):
    net, space, _ = _net(name)
    selection = _ten_percent(space)
    small = _assert_extract_equals_masked(name, selection)
    dense_flops, small_flops = count_flops(net, SHAPE), count_flops(small, SHAPE)
    bound = 0.1 if name == "tiny" else 0.05  # 1 of 3, 4 or 8 channels is not 10%
    assert 0 < small_flops < bound * dense_flops
    assert count_parameters(small) < bound * count_parameters(net)
    scores = channel_scores(small, torch.randn(3, *SHAPE), space)
    assert {g: len(v) for g, v in scores.items()} == selection.n_kept
    assert all(np.isfinite(v).all() for v in scores.values())


@pytest.mark.parametrize("name", ["tiny", "mobilenet_v3_small", "regnet_y_400mf", "densenet121", "convnext_tiny"])
@settings(max_examples=4, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=__import__("hypothesis").strategies.data())
def test_extract_equals_masked_on_drawn_selections(name, data):
    _, space, _ = _net(name)
    _assert_extract_equals_masked(name, data.draw(selections(space)))


def test_shrink_in_two_steps_equals_one_extract():
    net, space, _ = _net("densenet121")
    half, tenth = _ten_percent(space, seed=3), None
    half = Selection({g: np.sort(np.random.default_rng(1).choice(space[g].size, space[g].size // 2, replace=False))
                      for g in space.names}, space)
    tenth = Selection({g: half[g][: max(1, len(half[g]) // 5)] for g in space.names}, space)
    once = extract(net, tenth, space)
    twice = shrink_(extract(net, half, space), space, half, tenth)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(twice(x), once(x))


def test_penultimate_features_are_the_heads_input():
    net, space, _ = _net("mobilenet_v3_small")
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        feats = penultimate(net, x)
        torch.testing.assert_close(net.classifier[3](feats), net(x))
    assert feats.shape == (3, net.classifier[3].in_features)


@pytest.mark.parametrize("make", [lambda: cifar_resnet18(width=4), lambda: cifar_resnet50(width=2),
                                  lambda: torchvision.models.resnet18(num_classes=3)])
def test_tracing_a_resnet_finds_its_layout_groups(make):
    """The ResNet walk (its group names, kept for the shipped checkpoints and banks) and the
    tracer agree on which tensors every group indexes."""
    net = make()
    walked, (traced, _) = FilterSpace.from_model(net), trace_filter_space(net, (3, 32, 32))
    assert len(walked) == len(traced)
    pairs = set()
    for key, _ in (*net.named_parameters(), *net.named_buffers()):
        a_axes, b_axes = walked.tensor_axes(key), traced.tensor_axes(key)
        n = max(len(a_axes), len(b_axes))  # (out,) and (out, None) say the same
        pairs.update(zip(a_axes + (None,) * (n - len(a_axes)), b_axes + (None,) * (n - len(b_axes))))
    mapping = dict(pairs)
    assert len(mapping) == len(pairs) == len(set(mapping.values()))  # a bijection between the groups
    assert {walked[a].size for a in mapping if a} == {traced[b].size for b in mapping.values() if b}


def test_blocks_of_a_grouped_convolution_are_enforced():
    _, space, _ = _net("regnet_y_400mf")
    group = next(g for g in space if g.unit > 1)
    kept = {g.name: np.arange(g.size) for g in space}
    kept[group.name] = np.arange(group.unit + 1)
    with pytest.raises(ValueError, match=f"whole blocks of {group.unit}"):
        Selection(kept, space)
    assert space.n_keep(0.9)[group.name] % group.unit == 0


class _Reshaping(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 62 * 62, 2)

    def forward(self, x):
        return self.fc(self.conv(x).view(x.shape[0], -1))


class _Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:
            x = -x
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("net, match", [
    (_Reshaping(), "graph node 'view' calls the method 'view'"),
    (_Branching(), "cannot be traced by torch.fx"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4 * 62 * 62, 2)),
     "module '1' \\(GroupNorm\\)"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 8, 3, groups=4), nn.Flatten(), nn.Linear(8 * 60 * 60, 2)),
     "convolution '1' has groups=4 and 4 -> 8 channels"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)), "no task head"),
])
def test_what_cannot_be_pruned_is_refused_naming_the_module(net, match):
    with pytest.raises(TypeError, match=match):
        FilterSpace.from_model(net, SHAPE)


@pytest.mark.parametrize("name", ["tiny", "densenet121"])
@settings(max_examples=3, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=__import__("hypothesis").strategies.data())
def test_weight_averaging_over_concatenated_and_flattened_axes(name, data):
    """MVP's averaged initialisation, computed in the pruned numbering, equals the brute force
    through full-size tensors, where axes are concatenations (DenseNet) or flattened (C, H, W)."""
    from metaprune.meta.voting import average_weights

    net, space, _ = _net(name)
    head = f"{space.head}."
    fallback = {k: v for k, v in net.state_dict().items() if not k.startswith(head)}
    tuned = []
    for i in range(2):
        torch.manual_seed(10 + i)
        tuned.append(_randomised(BUILDERS[name](), seed=10 + i))
    sels = [data.draw(selections(space)) for _ in tuned]
    target = data.draw(selections(space))
    neighbours = [(sel, extract(t, sel, space).state_dict()) for sel, t in zip(sels, tuned)]
    got = average_weights(neighbours, target, space, fallback)
    expected = _brute_force_average(neighbours, target, space, fallback)
    for k in fallback:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-6, atol=1e-7, msg=k)
    extract(net, target, space).load_state_dict(got, strict=False)
