"""The committed pre-trained checkpoints load, verify and come with a card."""

from pathlib import Path

import pytest
import torch

import metaprune
from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import backbone_metadata, load_backbone

CHECKPOINTS = sorted((Path(metaprune.__file__).parent / "checkpoints").glob("*.safetensors"))


def test_the_self_supervised_checkpoint_ships():
    assert any("simclr" in p.name or "simsiam" in p.name for p in CHECKPOINTS)


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.stem)
def test_checkpoint_loads_with_its_fingerprint_and_card(path):
    net = load_backbone(path)  # verifies the stored fingerprint
    if "resnet18" in path.stem:  # the CIFAR ResNet-18 at width 16
        assert net.conv1.kernel_size == (3, 3) and net.layer1[0].conv1.out_channels == 16
        assert len(FilterSpace.from_model(net)) == 12
    else:  # a torchvision builder rebuilt from its recipe (MobileNetV2 at width 0.5)
        assert type(net).__name__ == "MobileNetV2" and len(FilterSpace.from_model(net, (3, 32, 32))) == 25
    assert path.stat().st_size < 4_000_000
    meta = backbone_metadata(path)
    assert meta, "checkpoint metadata says how it was made"
    card = path.with_suffix(".md").read_text()
    assert "k-NN" in card and "command" in card
    with torch.no_grad():
        out = net.eval()(torch.zeros(2, 3, 32, 32))
    assert torch.isfinite(out).all()
