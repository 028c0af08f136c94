import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from metaprune.backbone.resnet import cifar_resnet18, spec_of
from metaprune.backbone.pretrain import (
    SimSiamPretrainer,
    SupervisedPretrainer,
    extract_features,
    knn_accuracy,
    negative_cosine_similarity,
    nt_xent_loss,
    penultimate,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors: intra-op threads only add overhead (and oversubscribe a shared machine)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(n=32, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


SMALL = dict(width=4, batch_size=8, verbose=0, random_state=0)


# --------------------------------------------------------------------------- losses
def test_negative_cosine_value_and_stop_gradient():
    torch.manual_seed(0)
    p = torch.randn(5, 7, requires_grad=True)
    z = torch.randn(5, 7, requires_grad=True)
    loss = negative_cosine_similarity(p, z)
    expected = -(nn.functional.normalize(p, dim=1) * nn.functional.normalize(z, dim=1)).sum(1).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None  # stop-gradient: nothing flows into the target branch


def test_simsiam_objective_target_branch_gets_no_gradient_through_z():
    from metaprune.backbone.pretrain import SimSiamObjective

    torch.manual_seed(0)
    obj = SimSiamObjective(feat_dim=6, proj_dim=8, pred_dim=2)
    f1 = torch.randn(10, 6, requires_grad=True)
    f2 = torch.randn(10, 6, requires_grad=True)
    # only the D(p1, z2) term: f2 reaches the loss only through z2 (stop-gradient)
    z2 = obj.projector(f2)
    loss = negative_cosine_similarity(obj.predictor(obj.projector(f1)), z2)
    loss.backward()
    assert f1.grad is not None and f1.grad.abs().sum() > 0
    assert f2.grad is None
    # the symmetric loss is the mean of both directions and lies in [-1, 1]
    val = obj([f1.detach(), f2.detach()]).detach()
    with torch.no_grad():  # by hand: -(mean cos(p1, z2) + mean cos(p2, z1)) / 2 (train-mode BN: same batch)
        z1, z2 = obj.projector(f1), obj.projector(f2)
        p1, p2 = obj.predictor(z1), obj.predictor(z2)
        cos = lambda a, b: (a / a.norm(dim=1, keepdim=True) * (b / b.norm(dim=1, keepdim=True))).sum(1).mean()
        torch.testing.assert_close(val, -0.5 * (cos(p1, z2) + cos(p2, z1)))


def test_nt_xent_prefers_matching_views():
    torch.manual_seed(0)
    z = torch.randn(16, 8)
    assert nt_xent_loss(z, z + 0.01 * torch.randn_like(z)) < nt_xent_loss(z, torch.randn(16, 8))


# --------------------------------------------------------------------------- k-NN
def test_knn_accuracy_separable_is_one():
    rng = np.random.default_rng(0)
    n_cls, d = 10, 16
    centers = np.eye(d)[:n_cls] * 10
    ytr = np.repeat(np.arange(n_cls), 20)
    yte = np.repeat(np.arange(n_cls), 5)
    ftr = centers[ytr] + 0.1 * rng.normal(size=(len(ytr), d))
    fte = centers[yte] + 0.1 * rng.normal(size=(len(yte), d))
    assert knn_accuracy(ftr, ytr, fte, yte, k=5, n_way=5, n_tasks=20) == 1.0


def test_knn_accuracy_random_features_near_chance():
    rng = np.random.default_rng(0)
    ytr = np.repeat(np.arange(10), 50)
    yte = np.repeat(np.arange(10), 50)
    acc = knn_accuracy(rng.normal(size=(500, 32)), ytr, rng.normal(size=(500, 32)), yte, n_way=5, n_tasks=50)
    assert abs(acc - 0.2) < 0.06


def test_knn_accuracy_validates():
    with pytest.raises(ValueError):
        knn_accuracy(np.zeros((4, 2)), np.arange(4), np.zeros((4, 3)), np.arange(4), n_way=2)
    with pytest.raises(ValueError):
        knn_accuracy(np.zeros((4, 2)), [0, 0, 1, 1], np.zeros((4, 2)), [0, 0, 1, 1], n_way=5)


def test_extract_features_matches_identity_head_and_does_not_mutate():
    torch.manual_seed(0)
    net = cifar_resnet18(width=4).eval()
    X = _images(6)
    feats = extract_features(net, X, batch_size=4)
    assert feats.shape == (6, 32)
    assert isinstance(net.fc, nn.Linear) and not net.training
    x = torch.from_numpy(X.transpose(0, 3, 1, 2).copy()).float() / 255
    mean = torch.tensor([0.507, 0.487, 0.441]).view(1, 3, 1, 1)
    std = torch.tensor([0.267, 0.256, 0.276]).view(1, 3, 1, 1)
    ref_net = cifar_resnet18(width=4)
    ref_net.load_state_dict(net.state_dict())
    ref_net.fc = nn.Identity()
    with torch.no_grad():
        ref = ref_net.eval()((x - mean) / std)
        torch.testing.assert_close(penultimate(net, (x - mean) / std), ref)
    np.testing.assert_allclose(feats, ref.numpy(), atol=1e-5)


# --------------------------------------------------------------------------- fit
def test_simsiam_fit_returns_backbone_of_right_spec():
    est = SimSiamPretrainer(epochs=2, **SMALL)
    assert est.get_params()["epochs"] == 2 and not hasattr(est, "backbone_")
    est.fit(_images())
    assert est.fit(_images()) is est
    assert spec_of(est.backbone_) == spec_of(cifar_resnet18(width=4))
    assert isinstance(est.backbone_.fc, nn.Linear) and est.backbone_.fc.out_features == 100
    assert not est.backbone_.training
    assert len(est.history_) == 2 and all(np.isfinite(h["loss"]) for h in est.history_)
    assert est.transform(_images(5)).shape == (5, 32)


def test_fit_does_not_modify_given_backbone_and_accepts_normalised_floats():
    torch.manual_seed(1)
    net = cifar_resnet18(width=4, num_classes=7)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    X = np.random.default_rng(0).normal(size=(16, 3, 8, 8)).astype(np.float32)
    est = SimSiamPretrainer(backbone=net, method="simclr", epochs=1, **SMALL).fit(X)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert est.backbone_.fc.out_features == 7


def test_supervised_fit():
    X = _images(24)
    y = np.array(["a", "b", "c"] * 8)
    est = SupervisedPretrainer(epochs=2, **SMALL).fit(X, y)
    assert list(est.classes_) == ["a", "b", "c"]
    assert est.backbone_.fc.out_features == 3
    assert len(est.history_) == 2
    with pytest.raises(ValueError):
        SupervisedPretrainer(epochs=1, **SMALL).fit(X, None)


def test_bad_input_raises():
    with pytest.raises(ValueError):
        SimSiamPretrainer(epochs=1, **SMALL).fit(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError):
        SimSiamPretrainer(epochs=1, method="nope", **SMALL).fit(_images(8))


def test_lr_schedule_warmup_then_cosine():
    from metaprune.backbone.lr_schedule import warmup_cosine_learning_rate

    lrs = [warmup_cosine_learning_rate(1.0, s, 100, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.01


def test_checkpoint_is_safetensors_and_resume_needs_same_params(tmp_path):
    from safetensors import safe_open

    ckpt = tmp_path / "run.ckpt"
    SimSiamPretrainer(epochs=1, checkpoint_path=ckpt, **SMALL).fit(_images())
    with safe_open(str(ckpt), framework="pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    state = json.loads(meta["state"])
    assert state["epoch"] == 1 and meta["format"] == "metaprune.pretrain_checkpoint"
    assert any(k.startswith("optim.") for k in keys) and "rng.torch" in keys
    assert not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(ValueError, match="other parameters"):
        SimSiamPretrainer(epochs=1, lr=0.5, checkpoint_path=ckpt, **SMALL).fit(_images())
    # a finished run resumes to the end at once and returns the same weights
    again = SimSiamPretrainer(epochs=1, checkpoint_path=ckpt, **SMALL).fit(_images())
    assert len(again.history_) == 1
    # a damaged checkpoint is a clear ValueError, not the safetensors library's own error
    blob = ckpt.read_bytes()
    for damaged, phrase in ((blob[: len(blob) // 2], "not a readable safetensors pre-training checkpoint"),
                            (b"\x00" * 64, "not a readable safetensors pre-training checkpoint")):
        ckpt.write_bytes(damaged)
        with pytest.raises(ValueError, match=phrase):
            SimSiamPretrainer(epochs=1, checkpoint_path=ckpt, **SMALL).fit(_images())


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {root!r})
    from metaprune import pretrain
    from metaprune.backbone.pretrain import loop

    original = loop.BasePretrainer._save_checkpoint

    def save_then_die(self, path, state):
        original(self, path, state)
        if state["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill right after the first checkpoint

    loop.BasePretrainer._save_checkpoint = save_then_die
    X = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3), dtype=np.uint8)
    pretrain.SimSiamPretrainer(width=4, batch_size=8, verbose=0, random_state=0, epochs=3,
                               warmup_epochs=1, checkpoint_path=sys.argv[1]).fit(X)
    """
)


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    ckpt = tmp_path / "killed.ckpt"
    script = tmp_path / "killme.py"
    script.write_text(_KILL_SCRIPT.format(root=str(ROOT)))
    proc = subprocess.run([sys.executable, str(script), str(ckpt)], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with open(ckpt, "rb"):
        pass
    params = dict(epochs=3, warmup_epochs=1, **SMALL)
    resumed = SimSiamPretrainer(checkpoint_path=ckpt, **params).fit(_images())
    straight = SimSiamPretrainer(**params).fit(_images())
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    for (k, a), b in zip(resumed.backbone_.state_dict().items(), straight.backbone_.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), atol=1e-4, rtol=1e-4, msg=k)
    np.testing.assert_allclose(
        [h["loss"] for h in resumed.history_], [h["loss"] for h in straight.history_], atol=1e-5
    )
