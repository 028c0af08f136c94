"""A loaded pruned network (``PrunedModel``): predictions, scikit-learn's ``score``, input checks."""

import numpy as np
import pytest
import torch

from metaprune.channels.filter_space import FilterSpace
from metaprune.channels.pruned_model import build_pruned_module, load_pruned, save_pruned
from metaprune.backbone.resnet import cifar_resnet18, spec_of
from metaprune.channels.selection import Selection
from metaprune.channels.surgery import extract


def _saved(path, classes):
    torch.manual_seed(0)
    net = cifar_resnet18(width=4, in_channels=1, num_classes=3)
    space = FilterSpace.from_model(net)
    selection = Selection({g.name: np.arange(0, g.size, 2) for g in space}, space)
    pruned = extract(net, selection, space)
    pruned.fc = torch.nn.Linear(pruned.fc.in_features, len(classes))
    save_pruned(path, pruned, selection, classes, spec_of(net), (1, 8, 8))
    return load_pruned(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _saved(tmp_path_factory.mktemp("model") / "pruned.safetensors", [3, 7, 9])


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(12, 1, 8, 8)).astype(np.float32)


def test_score_is_the_accuracy_of_predict(model, images):
    predicted = model.predict(images)
    y = predicted.copy()
    y[0] = next(c for c in (3, 7, 9) if c != predicted[0])
    expected = float(np.mean(predicted == y))
    assert model.score(images, y) == pytest.approx(expected)
    assert model.score(images, predicted) == 1.0
    assert isinstance(model.score(images, y), float)
    # flattened rows and tensors are images too
    assert model.score(images.reshape(12, -1), predicted) == 1.0
    assert model.score(torch.from_numpy(images), list(predicted)) == 1.0


def test_score_with_string_labels(tmp_path, images):
    model = _saved(tmp_path / "named.safetensors", ["cat", "dog"])
    predicted = model.predict(images)
    assert set(predicted) <= {"cat", "dog"}
    assert model.score(images, np.asarray(predicted, dtype=str)) == 1.0
    assert model.score(images, np.where(predicted == "cat", "dog", "cat")) == 0.0


@pytest.mark.parametrize("X, message", [
    (np.zeros((2, 3, 8, 8), np.float32), "X has 3 channels but the network expects 1"),
    (np.zeros((2, 1, 16, 16), np.float32), r"shape \(1, 16, 16\) .* trained on \(1, 8, 8\)"),
    (np.zeros((2, 50), np.float32), "cannot reshape rows of 50 features"),
    (np.zeros(64, np.float32), "1-D array"),
    (np.full((2, 1, 8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((0, 1, 8, 8), np.float32), "0 sample"),
])
def test_predict_proba_and_score_refuse_wrong_images(model, X, message):
    with pytest.raises(ValueError, match=message):
        model.predict_proba(X)
    with pytest.raises(ValueError, match=message):
        model.score(X, np.full(len(X), 3))


def test_score_refuses_labels_of_another_length(model, images):
    with pytest.raises(ValueError, match="one label per image; X has 12 images and y has shape \\(11,\\)"):
        model.score(images, np.full(11, 3))
    with pytest.raises(ValueError, match="1-D"):
        model.score(images, np.full((12, 2), 3))


def test_predict_proba_rows_sum_to_one(model, images):
    proba = model.predict_proba(images)
    assert proba.shape == (12, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_build_pruned_module_is_built_at_its_pruned_size(model):
    module = build_pruned_module(model.spec, model.selection, 3)
    assert {k: v.shape for k, v in module.state_dict().items()} == \
        {k: v.shape for k, v in model.module.state_dict().items()}
    assert all(torch.isfinite(t).all() for t in module.state_dict().values())
    assert torch.equal(module.bn1.weight, torch.ones_like(module.bn1.weight))
    with pytest.raises(ValueError, match="out of range"):
        build_pruned_module(model.spec, Selection({**model.selection, "layer1": [0, 99]}), 3)
