import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from _digits import digits_task
from metaprune import IterativeFilterPruner, load_pruned
from metaprune.backbone.penultimate import penultimate_features
from metaprune.channels.filter_space import FilterSpace
from metaprune.pruners.linear_head import fit_linear_head
from metaprune.backbone.resnet import cifar_resnet18
from metaprune.pruners.ifp import keep_top_scored
from metaprune.pruners.schedule import default_prune_fraction, kept_per_iteration
from metaprune.meta.voting import iou_per_group

Xtr, Xte, ytr, yte = digits_task()


def _backbone(width=4, seed=0):
    torch.manual_seed(seed)
    return cifar_resnet18(width=width, in_channels=1, num_classes=10)


BACKBONE = _backbone(width=8)
FAST = dict(n_iterations=12, prune_every=4, batch_size=64, lr=0.01, head_epochs=5, random_state=0)


@pytest.fixture(scope="module")
def fitted():
    return IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **FAST).fit(Xtr, ytr)


def test_every_group_holds_exactly_its_target(fitted):
    space = FilterSpace.from_model(BACKBONE)
    expected = {g.name: max(1, round(0.5 * g.size)) for g in space}
    assert fitted.selection_.n_kept == expected
    # the network is physically that small
    assert FilterSpace.from_model(fitted.net_.module_).sizes == expected
    assert fitted.n_params_ == sum(p.numel() for p in fitted.net_.module_.parameters())
    assert fitted.n_params_ < 0.3 * sum(p.numel() for p in BACKBONE.parameters())


def test_kept_counts_follow_the_schedule_formula(fitted):
    space = FilterSpace.from_model(BACKBONE)
    p = default_prune_fraction(0.5, 12, 4)
    prune_records = [r for r in fitted.history_ if r["phase"] == "prune"]
    assert len(prune_records) == 12
    for g in space:
        expected = kept_per_iteration(g.size, max(1, round(0.5 * g.size)), p, 12, 4)
        assert [r["n_kept"][g.name] for r in prune_records] == expected.tolist()
    finetune = [r for r in fitted.history_ if r["phase"] == "finetune"]
    assert len(finetune) == int(np.ceil(len(Xtr) / 64))
    assert fitted.n_iter_ == 12 + len(finetune)


def test_last_event_lands_on_target_with_custom_fraction():
    ifp = IterativeFilterPruner(BACKBONE, pruning_ratio=0.9, prune_fraction=0.2, **FAST).fit(Xtr, ytr)
    space = FilterSpace.from_model(BACKBONE)
    assert ifp.selection_.n_kept == space.n_keep(0.9)


def test_accuracy_on_held_out_digits_clearly_above_chance(fitted):
    assert fitted.score(Xte, yte) > 0.4  # chance is 0.2; 12 iterations at width 8 (0.50 on this CPU kind)
    proba = fitted.predict_proba(Xte)
    assert proba.shape == (len(Xte), 5)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)


def test_same_seed_same_selection_and_predictions(fitted):
    again = IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **FAST).fit(Xtr, ytr)
    assert again.selection_ == fitted.selection_
    np.testing.assert_allclose(again.predict_proba(Xte), fitted.predict_proba(Xte), rtol=1e-5, atol=1e-6)


def test_backbone_is_never_modified():
    before = {k: v.clone() for k, v in BACKBONE.state_dict().items()}
    IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **FAST).fit(Xtr, ytr)
    assert all(torch.equal(before[k], v) for k, v in BACKBONE.state_dict().items())


def test_head_reaches_logistic_regression_optimum():
    features = penultimate_features(BACKBONE, Xtr)
    _, y = np.unique(ytr, return_inverse=True)
    l2 = 1e-3
    head = fit_linear_head(features, y, 5, l2=l2, max_epochs=10)
    ours = head(torch.from_numpy(features)).argmax(1).numpy()
    ref = LogisticRegression(C=1.0 / (l2 * len(y)), max_iter=10000, tol=1e-8).fit(features, y)
    assert (ours == ref.predict(features)).mean() > 0.98
    np.testing.assert_allclose(head.weight.detach().numpy(), ref.coef_, atol=0.05 * np.abs(ref.coef_).max())


def test_head_with_a_prior_reaches_the_optimum_centred_on_it():
    features = penultimate_features(BACKBONE, Xtr)
    _, y = np.unique(ytr, return_inverse=True)
    rng = np.random.default_rng(0)
    centre = rng.normal(size=(5, features.shape[1])).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    # no steps: the prior as it is
    head = fit_linear_head(features, y, 5, max_epochs=0, prior=(centre, bias))
    assert np.array_equal(head.weight.detach().numpy(), centre) and np.array_equal(head.bias.detach().numpy(), bias)
    # a zero prior is the usual head
    plain = fit_linear_head(features, y, 5, l2=1e-3)
    zero = fit_linear_head(features, y, 5, l2=1e-3, prior=(np.zeros_like(centre), np.zeros(5)))
    torch.testing.assert_close(zero.weight, plain.weight)
    # the fit is a stationary point of cross-entropy + l2/2 ||W - centre||^2 (the bias unpenalised)
    for l2 in (1e-2, 1.0):
        head = fit_linear_head(features, y, 5, l2=l2, max_epochs=30, prior=(centre, bias))
        weight = head.weight.detach().clone().requires_grad_(True)
        b = head.bias.detach().clone().requires_grad_(True)
        feats = torch.from_numpy(features)
        loss = torch.nn.functional.cross_entropy(feats @ weight.T + b, torch.from_numpy(y)) \
            + 0.5 * l2 * (weight - torch.from_numpy(centre)).pow(2).sum()
        grad_w, grad_b = torch.autograd.grad(loss, (weight, b))
        assert grad_w.abs().max() < 1e-3 and grad_b.abs().max() < 1e-3
    assert np.abs(head.weight.detach().numpy() - centre).max() < np.abs(centre).max()  # pulled towards it
    with pytest.raises(ValueError, match="prior shapes"):
        fit_linear_head(features, y, 5, prior=(centre[:4], bias[:4]))


def test_keep_top_scored_breaks_ties_by_index():
    assert keep_top_scored(np.array([2, 5, 7, 9]), np.array([0.0, 1.0, 0.0, 1.0]), 3).tolist() == [2, 5, 9]


def test_string_labels_and_save_load_round_trip(tmp_path):
    labels = np.array(["zero", "one", "two", "three", "four"])
    ifp = IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **FAST).fit(Xtr, labels[ytr])
    assert set(ifp.predict(Xte)) <= set(labels)
    path = tmp_path / "pruned.safetensors"
    ifp.save(path)
    loaded = load_pruned(path)
    assert loaded.selection == ifp.selection_
    np.testing.assert_allclose(loaded.predict_proba(Xte), ifp.predict_proba(Xte), rtol=1e-4, atol=1e-6)
    assert (loaded.predict(Xte) == ifp.predict(Xte)).all()


def test_pickle_clone_pipeline_grid_search_and_cross_val(fitted):
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.predict_proba(Xte), fitted.predict_proba(Xte), rtol=1e-5)
    unfitted = clone(fitted)
    assert not hasattr(unfitted, "net_") and unfitted.get_params()["pruning_ratio"] == 0.5

    # images arrive as uint8 NHWC; the first pipeline step turns them into float NCHW
    to_nchw = FunctionTransformer(lambda x: (np.asarray(x, np.float32) / 255.0).transpose(0, 3, 1, 2))
    raw = (Xtr.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    pipe = make_pipeline(to_nchw, IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **FAST)).fit(raw, ytr)
    assert pipe.score((Xte.transpose(0, 2, 3, 1) * 255).astype(np.uint8), yte) > 0.5

    search = GridSearchCV(IterativeFilterPruner(BACKBONE, **FAST), {"pruning_ratio": [0.5, 0.9], "lr": [0.01]}, cv=2)
    search.fit(Xtr, ytr)
    assert set(search.cv_results_["param_pruning_ratio"]) == {0.5, 0.9}
    assert search.best_estimator_.selection_.n_kept["layer4"] in (32, 6)

    scores = cross_val_score(IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **FAST), Xtr, ytr, cv=2)
    assert scores.shape == (2,) and scores.min() > 0.4


@pytest.mark.parametrize("params, X, y, message", [
    ({}, np.zeros((10, 8, 8), np.float32), np.arange(10) % 2, "shape"),
    ({}, np.zeros((10, 3, 8, 8), np.float32), np.arange(10) % 2, "3 channels but the network expects 1"),
    ({}, np.zeros((10, 1, 8, 8), np.float32), np.arange(9) % 2, "10 samples but y has 9"),
    ({}, np.zeros((10, 1, 8, 8), np.float32), np.zeros(10), "at least 2 classes"),
    ({}, np.full((10, 1, 8, 8), np.nan, np.float32), np.arange(10) % 2, "NaN"),
    ({"pruning_ratio": 1.0}, Xtr[:10], ytr[:10], "pruning_ratio"),
    ({"pruning_ratio": 0.0}, Xtr[:10], ytr[:10], "pruning_ratio"),
    ({"prune_every": 20}, Xtr[:10], ytr[:10], "must not exceed n_iterations"),
    ({"lr": -1.0}, Xtr[:10], ytr[:10], r"lr must be a float > 0, got -1.0"),
])
def test_bad_input_gives_clear_errors(params, X, y, message):
    with pytest.raises(ValueError, match=message):
        IterativeFilterPruner(BACKBONE, **{**FAST, **params}).fit(X, y)


def test_unfitted_and_wrong_backbone_errors():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        IterativeFilterPruner(BACKBONE).predict(Xte)
    with pytest.raises(ValueError, match="backbone must be"):
        IterativeFilterPruner(None).fit(Xtr, ytr)


def test_flattened_input_with_input_shape():
    flat = Xtr.reshape(len(Xtr), -1)
    ifp = IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, input_shape=(1, 8, 8), **FAST).fit(flat, ytr)
    assert ifp.predict(Xte.reshape(len(Xte), -1)).shape == (len(Xte),)
    with pytest.raises(ValueError, match="input_shape"):
        IterativeFilterPruner(BACKBONE, **FAST).fit(flat, ytr)


def test_mask_mode_follows_the_same_trajectory_as_physical_pruning():
    # masks and surgery compute the same function; only float summation order differs.
    # Until the second pruning event both runs are the same computation; later events may
    # break near-ties between channel scores differently, so selections stay close, not equal.
    params = {**FAST, "lr": 1e-3, "pruning_ratio": 0.5}
    physical = IterativeFilterPruner(BACKBONE, **params).fit(Xtr, ytr)
    masked = IterativeFilterPruner(BACKBONE, surgery="mask", **params).fit(Xtr, ytr)
    losses_masked = [r["loss"] for r in masked.history_]
    losses_physical = [r["loss"] for r in physical.history_]
    h = params["prune_every"]
    np.testing.assert_allclose(losses_masked[:h], losses_physical[:h], rtol=1e-4)
    iou = iou_per_group(masked.selection_, physical.selection_)
    assert np.mean(list(iou.values())) > 0.8, iou
    assert masked.selection_.n_kept == physical.selection_.n_kept
    assert masked.n_params_ == physical.n_params_
    assert (masked.predict(Xte) == physical.predict(Xte)).mean() > 0.7


def test_prune_every_none_is_30_percent_of_the_run():
    """The default h is round(0.3 J) (the paper's 60 of 200): the same fit as that h given explicitly."""
    params = dict(FAST, n_iterations=10, prune_every=None, n_threads=1)
    default = IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **params).fit(Xtr, ytr)
    explicit = IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **dict(params, prune_every=3)).fit(Xtr, ytr)
    assert [j for j, _ in default.pruning_path_] == [0, 3, 6]
    assert [j for j, _ in explicit.pruning_path_] == [0, 3, 6]
    assert [r["loss"] for r in default.history_] == [r["loss"] for r in explicit.history_]
    # a short run no longer trips over a fixed h larger than it
    short = IterativeFilterPruner(BACKBONE, pruning_ratio=0.5, **dict(params, n_iterations=2)).fit(Xtr, ytr)
    assert [j for j, _ in short.pruning_path_] == [0, 1]
