import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metaprune.channels.filter_space import FilterSpace
from metaprune.backbone.resnet import cifar_resnet18, cifar_resnet50
from metaprune.channels.scores import channel_scores
from metaprune.channels.selection import Selection
from metaprune.channels.surgery import channel_masks_applied, extract

X = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("factory", [lambda: cifar_resnet18(4), lambda: cifar_resnet50(2)])
def test_every_channel_scored_non_negative(factory):
    net = factory().eval()
    space = FilterSpace.from_model(net)
    scores = channel_scores(net, X, space, batch_size=3)
    assert list(scores) == list(space.names)
    for g in space:
        assert scores[g.name].shape == (g.size,)
        assert np.all(scores[g.name] >= 0) and np.all(np.isfinite(scores[g.name]))


def test_scores_match_hand_computation():
    net = cifar_resnet18(4).eval()
    space = FilterSpace.from_model(net)
    scores = channel_scores(net, X, space, batch_size=4)
    with torch.no_grad():
        stem = F.relu(net.bn1(net.conv1(X)))
        b0 = net.layer1[0](stem)
        inner = F.relu(net.layer1[1].bn1(net.layer1[1].conv1(b0)))
        b1 = net.layer1[1](b0)
    np.testing.assert_allclose(scores["layer1.1.conv1"], inner.mean((2, 3)).mean(0).numpy(), rtol=1e-5)
    stream = torch.stack([t.mean((2, 3)).mean(0) for t in (stem, b0, b1)]).mean(0)
    np.testing.assert_allclose(scores["layer1"], stream.numpy(), rtol=1e-5)


def test_pruned_scores_equal_masked_full_scores_at_kept_channels():
    net = cifar_resnet18(4).eval()
    space = FilterSpace.from_model(net)
    sel = Selection({g.name: np.arange(0, g.size, 2) for g in space}, space)
    pruned = channel_scores(extract(net, sel, space), X, space)
    with channel_masks_applied(net, sel, space):
        masked = channel_scores(net, X, space)
    for g in space.names:
        np.testing.assert_allclose(pruned[g], masked[g][sel[g]], rtol=1e-4, atol=1e-6)


def test_bad_input():
    net = cifar_resnet18(4)
    space = FilterSpace.from_model(net)
    with pytest.raises(ValueError, match="shape"):
        channel_scores(net, torch.zeros(3, 8, 8), space)
    with pytest.raises(ValueError, match="empty"):
        channel_scores(net, torch.zeros(0, 3, 8, 8), space)
