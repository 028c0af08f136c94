import pytest
import torch
import torchvision

from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18, cifar_resnet34, cifar_resnet50, resnet50


@pytest.mark.parametrize("factory, n_groups, n_stream", [(lambda: cifar_resnet18(16), 12, 4),
                                                         (lambda: cifar_resnet34(8), 20, 4),
                                                         (lambda: cifar_resnet50(8), 37, 4)])
def test_group_counts(factory, n_groups, n_stream):
    space = FilterSpace.from_model(factory())
    assert len(space) == n_groups
    assert sum(g.kind == "stream" for g in space) == n_stream


def test_resnet18_groups_and_sizes():
    space = FilterSpace.from_model(cifar_resnet18(width=16))
    assert space.names == ("layer1", "layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2",
                           "layer2.1.conv1", "layer3.0.conv1", "layer3", "layer3.1.conv1",
                           "layer4.0.conv1", "layer4", "layer4.1.conv1")
    assert space.sizes["layer1"] == 16 and space.sizes["layer4"] == 128 and space.sizes["layer3.1.conv1"] == 64
    # the stem writes stage 1's residual stream, so it belongs to group "layer1"
    assert space.module_axes["conv1"] == ("layer1", None)
    assert space.module_axes["layer2.0.downsample.0"] == ("layer2", "layer1")
    assert space.module_axes["layer2.1.conv1"] == ("layer2.1.conv1", "layer2")
    assert space.module_axes["fc"] == (None, "layer4")
    assert ("bn1", True) in space["layer1"].activations and ("layer1.1", False) in space["layer1"].activations


def test_resnet50_stem_is_its_own_group():
    space = FilterSpace.from_model(resnet50())
    assert space["conv1"].kind == "stem" and space["conv1"].size == 64
    assert space.sizes["layer1"] == 256 and space.sizes["layer1.0.conv2"] == 64
    assert space.module_axes["layer1.0.downsample.0"] == ("layer1", "conv1")
    assert space.module_axes["layer1.0.conv1"] == ("layer1.0.conv1", "conv1")


def test_user_modified_torchvision_resnet():
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = torch.nn.Identity()
    space = FilterSpace.from_model(net)
    assert len(space) == 12 and space.sizes["layer4"] == 512


def test_network_without_a_task_head_is_rejected():
    with pytest.raises(TypeError, match="no task head"):
        FilterSpace.from_model(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3)))


def test_serialisation_round_trip_and_unknown_group_error():
    space = FilterSpace.from_model(cifar_resnet50(4))
    assert FilterSpace.from_dict(space.to_dict()) == space
    with pytest.raises(KeyError, match="unknown channel group"):
        space["layer9"]


def test_n_keep_formula():
    space = FilterSpace.from_model(cifar_resnet18(16))
    keep = space.n_keep(0.9)
    assert keep["layer1"] == 2 and keep["layer4"] == 13 and keep["layer3.0.conv1"] == 6
    assert all(v >= 1 for v in FilterSpace.from_model(cifar_resnet18(2)).n_keep(0.99).values())
    with pytest.raises(ValueError, match="pruning_ratio"):
        space.n_keep(1.0)


def test_tensor_axes():
    space = FilterSpace.from_model(cifar_resnet18(16))
    assert space.tensor_axes("layer2.0.conv2.weight") == ("layer2", "layer2.0.conv1")
    assert space.tensor_axes("conv1.weight") == ("layer1",)
    assert space.tensor_axes("layer2.1.bn1.running_var") == ("layer2.1.conv1",)
    assert space.tensor_axes("layer2.1.bn1.num_batches_tracked") == ()
    assert space.tensor_axes("fc.weight") == (None, "layer4")
    assert space.tensor_axes("fc.bias") == (None,)
