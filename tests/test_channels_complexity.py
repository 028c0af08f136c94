import numpy as np
import pytest

from metaprune.channels.complexity import count_flops, count_parameters
from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18, resnet50
from metaprune.channels.selection import Selection
from metaprune.channels.surgery import extract


def _keep_fraction(space, fraction):
    return Selection({g.name: np.arange(max(1, round(fraction * g.size))) for g in space}, space)


@pytest.mark.parametrize("factory, shape", [(lambda: cifar_resnet18(64), (3, 32, 32)),
                                            (lambda: resnet50(32), (3, 64, 64))])
def test_flops_of_ten_percent_network_are_one_to_two_percent(factory, shape):
    net = factory()
    space = FilterSpace.from_model(net)
    small = extract(net, _keep_fraction(space, 0.1), space)
    ratio = count_flops(small, shape) / count_flops(net, shape)
    assert 0.008 < ratio < 0.02


def test_parameter_count_and_flops_of_known_layers():
    net = cifar_resnet18(4, num_classes=10)
    n = sum(p.numel() for p in net.parameters())
    assert count_parameters(net) == n
    net.fc.weight.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == n - net.fc.weight.numel()
    # stem conv alone: 2 * (3*3*3) * 4 channels * 8 * 8 positions
    assert count_flops(net.conv1, (3, 8, 8)) == 2 * 27 * 4 * 64
