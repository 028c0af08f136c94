"""IFP, MVP, saving and export for every supported architecture family, end to end.

Each torchvision builder is used at random init (the smallest width it offers; MobileNetV2 from
the committed CIFAR checkpoint, see ``PRETRAINED``), with its
BatchNorm statistics recalibrated on the training images (a stand-in for the sane statistics
of pre-trained weights: the default running mean 0 / variance 1 lets activations grow layer
by layer, and VGG's head loss then starts above 100), on a real 3-class task (scikit-learn's digits, upsampled to 32 x 32 RGB): IFP at r = 0.5 for a few
iterations gives a physically smaller network that predicts above chance, saves without
pickle and loads back to the same predictions, and exports to TorchScript and ONNX; MVP
prunes a new task from a two-task bank of the same backbone.
"""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import metaprune
from metaprune import (ConstructorSpec, IterativeFilterPruner, MetaVotePruner, PrunedModelBank,
                       attach_architecture, load_pruned, torchvision_backbone)
from metaprune.backbone.resnet import load_backbone, save_backbone
from metaprune.channels.complexity import count_parameters
from metaprune.channels.filter_space import FilterSpace
from metaprune.export import export_onnx, export_torchscript, load_torchscript
from metaprune.pruners.batchnorm import recalibrate_batchnorm
from test_channels_tracing import TinyNet

ARCHITECTURES = {
    "mobilenet_v2": dict(width_mult=0.25),
    "mobilenet_v3_small": dict(width_mult=0.25),
    "efficientnet_b0": dict(),
    "regnet_y_400mf": dict(),
    "vgg11_bn": dict(),
    "convnext_tiny": dict(),
    "densenet121": dict(),
}
FAST = dict(pruning_ratio=0.5, n_iterations=12, prune_every=6, batch_size=32, head_epochs=20, random_state=0)
# VGG's 25088 -> 4096 -> 4096 classifier has no normalisation: SGD at the default 3e-2 diverges
# (losses above 1000 between pruning events, and the outcome then depends on the thread count)
LEARNING_RATES = {"vgg11_bn": 3e-3}


def _task(classes, seed=0):
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    X = torch.from_numpy((X[keep].reshape(-1, 1, 8, 8) / 16.0).astype(np.float32))
    X = torch.nn.functional.interpolate(X, size=32, mode="bilinear").repeat(1, 3, 1, 1).numpy()
    return train_test_split(X, y[keep], train_size=150, test_size=150, random_state=seed, stratify=y[keep])


Xtr, Xte, ytr, yte = _task((0, 1, 2))


def _backbone(name):
    torch.manual_seed(0)
    return recalibrate_batchnorm(torchvision_backbone(name, num_classes=10, **ARCHITECTURES[name]), Xtr).eval()


# MobileNetV2 at random init makes a few steps chaotic (IFP 0.39-0.90 and MVP 0.34-0.53 over CPU
# kinds, thread counts and learning rates): it starts from the committed CIFAR checkpoint instead
PRETRAINED = {"mobilenet_v2": ("cifar100_mobilenet_v2_wm0.5_simclr.safetensors", 1e-2)}


def _backbone_and_lr(name):
    """The backbone a family's tests prune, and their learning rate."""
    if name in PRETRAINED:
        checkpoint, lr = PRETRAINED[name]
        return load_backbone(Path(metaprune.__file__).parent / "checkpoints" / checkpoint).eval(), lr
    return _backbone(name), LEARNING_RATES.get(name, 3e-2)


@functools.lru_cache(maxsize=None)
def _fitted_ifp(name):
    """(backbone, IFP fitted at r = 0.5 on the 3-class task): fitted once, checked by two tests."""
    backbone, lr = _backbone_and_lr(name)
    return backbone, IterativeFilterPruner(backbone, **FAST, lr=lr).fit(Xtr, ytr)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_ifp_gives_a_smaller_network_that_predicts_saves_and_exports(name, tmp_path):
    backbone, ifp = _fitted_ifp(name)
    space = FilterSpace.from_model(backbone, Xtr.shape[1:])
    assert ifp.selection_.n_kept == space.n_keep(0.5)
    assert count_parameters(ifp.net_.module_) < 0.6 * count_parameters(backbone)
    predicted = ifp.predict(Xte)
    assert set(predicted) <= set(ytr) and len(predicted) == len(Xte)

    ifp.save(tmp_path / "pruned.safetensors")
    loaded = load_pruned(tmp_path / "pruned.safetensors")
    np.testing.assert_array_equal(loaded.predict(Xte), predicted)
    assert loaded.selection == ifp.selection_

    scripted, classes, _ = load_torchscript(export_torchscript(ifp, tmp_path / "pruned.pt"))
    with torch.no_grad():
        torch.testing.assert_close(scripted(torch.from_numpy(Xte[:4])), ifp.net_.module_(torch.from_numpy(Xte[:4])),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(classes, ifp.classes_)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(export_onnx(ifp, tmp_path / "pruned.onnx")),
                                   providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: Xte[:4]})[0]
    with torch.no_grad():
        np.testing.assert_allclose(logits, ifp.net_.module_(torch.from_numpy(Xte[:4])).numpy(), rtol=1e-3,
                                   atol=1e-4)


# at random init ConvNeXt gives features a few SGD steps cannot use: it has no BatchNorm to
# recalibrate, and its first pruning event renormalises its LayerNorms over fewer channels
# (loss ~25 after it); the pruned network then predicts one class. Real pre-trained weights
# are needed there.
_AT_CHANCE = pytest.mark.xfail(strict=True, reason="random-init features (see above); accuracy stays at chance")


@pytest.mark.parametrize("name", [pytest.param(n, marks=_AT_CHANCE) if n == "convnext_tiny"
                                  else n for n in sorted(ARCHITECTURES)])
def test_ifp_accuracy_is_above_chance(name):
    assert _fitted_ifp(name)[1].score(Xte, yte) > 0.4  # chance 1/3; 0.61-0.90 measured (MobileNetV2 0.62-0.81)


@pytest.mark.parametrize("name", ["mobilenet_v2", "regnet_y_400mf", "densenet121"])
def test_mvp_prunes_a_new_task_from_a_two_task_bank(name, tmp_path):
    backbone, lr = _backbone_and_lr(name)
    bank = PrunedModelBank(backbone, tmp_path / "bank.sqlite")
    for task_id, classes in (("a", (0, 1, 2)), ("b", (1, 2, 3))):
        X, _, y, _ = _task(classes, seed=1)
        bank.add(task_id, X, y, IterativeFilterPruner(**FAST, lr=lr))
    reopened = PrunedModelBank.open(tmp_path / "bank.sqlite", read_only=True)
    assert reopened.task_ids == ["a", "b"] and reopened.filter_space == bank.filter_space
    Xn, Xn_test, yn, yn_test = _task((2, 3, 4), seed=2)
    mvp = MetaVotePruner(reopened, n_neighbors=2, pruning_ratio=0.5, n_iterations=12, batch_size=32,
                         head_epochs=20, random_state=0, lr=lr).fit(Xn, yn)
    assert {task_id for task_id, _ in mvp.neighbors_} == {"a", "b"}
    assert mvp.selection_.n_kept == bank.filter_space.n_keep(0.5)
    assert mvp.score(Xn_test, yn_test) > 0.4  # chance is 1/3


def test_a_users_own_network_saves_and_loads_with_its_constructor(tmp_path):
    torch.manual_seed(0)
    net = attach_architecture(TinyNet(n_classes=4), ConstructorSpec("TinyNet", {}, num_classes=4,
                                                                    constructor=TinyNet))
    save_backbone(net, tmp_path / "tiny.safetensors")
    with pytest.raises(ValueError, match="pass architectures=\\{'TinyNet'"):
        load_backbone(tmp_path / "tiny.safetensors")
    back = load_backbone(tmp_path / "tiny.safetensors", architectures={"TinyNet": TinyNet})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x), net.eval()(x))
    ifp = IterativeFilterPruner(back, **FAST).fit(Xtr, ytr)
    ifp.save(tmp_path / "pruned.safetensors")
    loaded = load_pruned(tmp_path / "pruned.safetensors", architectures={"TinyNet": TinyNet})
    np.testing.assert_array_equal(loaded.predict(Xte), ifp.predict(Xte))


def test_a_network_without_a_recipe_is_refused_when_saved(tmp_path):
    import torchvision

    with pytest.raises(TypeError, match="architecture recipe"):
        save_backbone(torchvision.models.mobilenet_v2(width_mult=0.25), tmp_path / "x.safetensors")
