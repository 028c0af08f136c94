import pytest
import torch
import torchvision

from metaprune.backbone.resnet import (ResNetSpec, backbone_metadata, cifar_resnet18, cifar_resnet50, fingerprint,
                              load_backbone, resnet18, resnet50, save_backbone, spec_of)


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("ours, theirs", [(resnet18, torchvision.models.resnet18),
                                          (resnet50, torchvision.models.resnet50)])
def test_full_width_matches_torchvision_layout(ours, theirs):
    assert _shapes(ours()) == _shapes(theirs())


def test_cifar_variant_has_small_stem_and_width_multiplier():
    net = cifar_resnet18(width=16, in_channels=1, num_classes=7)
    assert isinstance(net, torchvision.models.ResNet)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.in_channels == 1
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert [getattr(net, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 7)


@pytest.mark.parametrize("factory", [lambda: cifar_resnet18(8), lambda: cifar_resnet50(4, in_channels=1),
                                     torchvision.models.resnet18])
def test_spec_round_trip_rebuilds_same_shapes(factory):
    net = factory()
    spec = spec_of(net)
    assert ResNetSpec.from_dict(spec.to_dict()) == spec
    assert _shapes(spec.build()) == _shapes(net)


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="block"):
        ResNetSpec(block="dense")
    with pytest.raises(ValueError, match="unknown ResNetSpec fields"):
        ResNetSpec.from_dict({"block": "basic", "evil": 1})
    with pytest.raises(TypeError, match="ResNet"):
        spec_of(torch.nn.Linear(2, 2))


def test_save_load_round_trip_keeps_weights_and_metadata(tmp_path):
    net = cifar_resnet18(width=4)
    net.bn1.running_mean.normal_()
    path = tmp_path / "b.safetensors"
    save_backbone(net, path, metadata={"epochs": 3})
    loaded = load_backbone(path)
    assert fingerprint(loaded) == fingerprint(net)
    assert backbone_metadata(path) == {"epochs": 3}
    x = torch.randn(2, 3, 8, 8)
    net.eval(), loaded.eval()
    assert torch.equal(net(x), loaded(x))


def test_fingerprint_changes_with_any_weight():
    net = cifar_resnet18(width=4)
    before = fingerprint(net)
    assert fingerprint(net) == before
    with torch.no_grad():
        net.layer3[1].conv2.weight[0, 0, 0, 0] += 1e-3
    assert fingerprint(net) != before


def test_corrupted_backbone_file_raises_clear_error(tmp_path):
    net = cifar_resnet18(width=4)
    path = tmp_path / "b.safetensors"
    save_backbone(net, path)
    data = bytearray(path.read_bytes())
    data[-20:] = bytes(20 * [0x7F])  # flip weight bytes: header stays readable
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="fingerprint"):
        load_backbone(path)
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable"):
        load_backbone(path)
    with pytest.raises(FileNotFoundError):
        load_backbone(tmp_path / "missing.safetensors")


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a metaprune backbone"):
        load_backbone(path)
