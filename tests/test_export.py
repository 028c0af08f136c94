"""Deployment export: TorchScript and ONNX files predict what the estimator predicts."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from _digits import digits_task
from metaprune import IterativeFilterPruner, load_pruned
from metaprune.export import export_onnx, export_torchscript, load_torchscript, read_onnx_metadata
from metaprune.backbone.resnet import cifar_resnet18

NAMES = np.array(["zero", "one", "two"])


def _backbone():
    torch.manual_seed(0)
    return cifar_resnet18(width=2, in_channels=1, num_classes=3)


def _pruner(backbone):
    return IterativeFilterPruner(backbone, pruning_ratio=0.5, n_iterations=2, prune_every=1, batch_size=16,
                                 head_epochs=1, random_state=0)


@pytest.fixture(scope="module")
def task():
    return digits_task(classes=(0, 1, 2))


@pytest.fixture(scope="module")
def fitted(task):
    X_train, _, y_train, _ = task
    return _pruner(_backbone()).fit(X_train, y_train)


@pytest.fixture(scope="module")
def fitted_str(task):
    X_train, _, y_train, _ = task
    return _pruner(_backbone()).fit(X_train, NAMES[y_train])


def _run_torchscript(path, X):
    module, classes, input_shape = load_torchscript(path)
    with torch.no_grad():
        logits = module(torch.as_tensor(X)).numpy()
    return logits, classes, input_shape


def _softmax(logits):
    return torch.softmax(torch.as_tensor(logits), dim=1).numpy()


def _logits(estimator, X):
    return estimator.net_.forward(X).numpy()


def test_torchscript_predicts_like_the_estimator(fitted, task, tmp_path):
    X = task[1]
    path = export_torchscript(fitted, tmp_path / "model.pt")
    assert path == tmp_path / "model.pt" and path.is_file()
    logits, classes, input_shape = _run_torchscript(path, X)
    assert_array_equal(classes, fitted.classes_)
    assert input_shape == fitted.input_shape_ == (1, 8, 8)
    assert_array_equal(classes[logits.argmax(axis=1)], fitted.predict(X))
    assert_allclose(logits, _logits(fitted, X), atol=1e-5)
    assert_allclose(_softmax(logits), fitted.predict_proba(X), atol=1e-5)


def test_export_leaves_the_estimator_untouched(fitted, task, tmp_path):
    X = task[1]
    module = fitted.net_.module_
    before = (fitted.predict_proba(X), module.training, [p.requires_grad for p in module.parameters()])
    export_torchscript(fitted, tmp_path / "model.pt")
    assert fitted.net_.module_ is module and module.training == before[1]
    assert [p.requires_grad for p in module.parameters()] == before[2]
    assert_array_equal(fitted.predict_proba(X), before[0])


@pytest.mark.parametrize("n", [1, 5, 17])
def test_torchscript_takes_any_batch_size(fitted, task, tmp_path, n):
    X = task[1][:n]
    logits, classes, _ = _run_torchscript(export_torchscript(fitted, tmp_path / "model.pt"), X)
    assert logits.shape == (n, 3)
    assert_array_equal(classes[logits.argmax(axis=1)], fitted.predict(X))


def test_torchscript_from_a_saved_pruned_model(fitted, task, tmp_path):
    X = task[1]
    fitted.save(tmp_path / "pruned.safetensors")
    loaded = load_pruned(tmp_path / "pruned.safetensors")
    logits, classes, input_shape = _run_torchscript(export_torchscript(loaded, tmp_path / "model.pt"), X)
    assert input_shape == (1, 8, 8)
    assert_array_equal(classes[logits.argmax(axis=1)], fitted.predict(X))
    assert_allclose(_softmax(logits), fitted.predict_proba(X), atol=1e-5)


def test_string_labels_round_trip(fitted_str, task, tmp_path):
    X = task[1]
    expected = fitted_str.predict(X)
    assert set(expected) <= set(NAMES)
    logits, classes, _ = _run_torchscript(export_torchscript(fitted_str, tmp_path / "model.pt"), X)
    assert_array_equal(classes, np.sort(NAMES))
    assert_array_equal(classes[logits.argmax(axis=1)], expected)
    fitted_str.save(tmp_path / "pruned.safetensors")
    from_file = export_torchscript(load_pruned(tmp_path / "pruned.safetensors"), tmp_path / "from_file.pt")
    logits, classes, _ = _run_torchscript(from_file, X)
    assert_array_equal(classes[logits.argmax(axis=1)], expected)


def test_torchscript_runs_without_metaprune_or_torchvision(fitted, task, tmp_path):
    X = task[1][:4]
    path = export_torchscript(fitted, tmp_path / "model.pt")
    np.save(tmp_path / "X.npy", X)
    script = (
        "import sys, json; sys.modules['metaprune'] = None; sys.modules['torchvision'] = None\n"
        "import numpy as np, torch\n"
        "extra = {'metaprune.json': ''}\n"
        f"m = torch.jit.load({str(path)!r}, _extra_files=extra)\n"
        f"logits = m(torch.as_tensor(np.load({str(tmp_path / 'X.npy')!r})))\n"
        "classes = json.loads(extra['metaprune.json'])['classes']['values']\n"
        "print(json.dumps([classes[i] for i in logits.argmax(1).tolist()]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[-2] == str(fitted.predict(X).tolist())


def test_unscriptable_network_is_traced(fitted, task, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("not scriptable")

    monkeypatch.setattr(torch.jit, "script", refuse)
    X = task[1]
    logits, classes, _ = _run_torchscript(export_torchscript(fitted, tmp_path / "model.pt"), X[:7])
    assert_array_equal(classes[logits.argmax(axis=1)], fitted.predict(X[:7]))
    assert_allclose(_softmax(logits), fitted.predict_proba(X[:7]), atol=1e-5)


def test_input_shape_override_is_checked_and_stored(fitted, tmp_path):
    path = export_torchscript(fitted, tmp_path / "m.pt", input_shape=(1, 16, 16))
    _, _, input_shape = load_torchscript(path)
    assert input_shape == (1, 16, 16)
    with pytest.raises(ValueError, match="3 channels but the network expects 1"):
        export_torchscript(fitted, tmp_path / "bad.pt", input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="3 positive ints"):
        export_torchscript(fitted, tmp_path / "bad.pt", input_shape=(8, 8))
    assert not (tmp_path / "bad.pt").exists()


@pytest.mark.parametrize("export", [export_torchscript, export_onnx])
def test_unfitted_or_wrong_objects_are_refused(export, tmp_path):
    if export is export_onnx:
        pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="IterativeFilterPruner is not fitted yet"):
        export(_pruner(_backbone()), tmp_path / "m")
    with pytest.raises(ValueError, match="cannot export a ResNet: expected a fitted metaprune pruner"):
        export(_backbone(), tmp_path / "m")
    with pytest.raises(ValueError, match="cannot export a str"):
        export("pruned.safetensors", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_labels_that_do_not_match_the_outputs_are_refused(fitted, tmp_path):
    fitted.save(tmp_path / "pruned.safetensors")
    loaded = load_pruned(tmp_path / "pruned.safetensors")
    loaded.classes_ = loaded.classes_[:2]
    with pytest.raises(ValueError, match="outputs of shape \\(3,\\) for 2 classes"):
        export_torchscript(loaded, tmp_path / "m.pt")


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")
def test_load_torchscript_refuses_foreign_files(tmp_path):
    plain = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(plain, str(tmp_path / "plain.pt"))
    with pytest.raises(ValueError, match="no metaprune metadata"):
        load_torchscript(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        load_torchscript(tmp_path / "junk.pt")
    damaged = {"metaprune.json": '{"format": "other"}'}
    torch.jit.save(plain, str(tmp_path / "damaged.pt"), _extra_files=damaged)
    with pytest.raises(ValueError, match="damaged metaprune metadata"):
        load_torchscript(tmp_path / "damaged.pt")
    with pytest.raises(FileNotFoundError):
        load_torchscript(tmp_path / "missing.pt")


def test_onnx_missing_gives_install_hint(fitted, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    hint = r"ONNX export needs the 'onnx' extra: pip install 'metaprune\[onnx\]'"
    with pytest.raises(ImportError, match=hint):
        export_onnx(fitted, tmp_path / "m.onnx")


def _onnx_session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("source", ["estimator", "pruned_model"])
def test_onnx_predicts_like_the_estimator(fitted, task, tmp_path, source):
    onnx = pytest.importorskip("onnx")
    X = task[1]
    model = fitted
    if source == "pruned_model":
        fitted.save(tmp_path / "pruned.safetensors")
        model = load_pruned(tmp_path / "pruned.safetensors")
    path = export_onnx(model, tmp_path / "model.onnx")
    assert path == tmp_path / "model.onnx"
    proto = onnx.load(str(path))
    assert "metaprune" in {entry.key for entry in proto.metadata_props}
    classes, input_shape = read_onnx_metadata(path)
    assert_array_equal(classes, fitted.classes_)
    assert input_shape == (1, 8, 8)
    session = _onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["input"]
    for n in (len(X), 1, 5):  # exported with a batch of 2
        (logits,) = session.run(["logits"], {"input": X[:n]})
        assert logits.shape == (n, 3)
        assert_array_equal(classes[logits.argmax(axis=1)], fitted.predict(X[:n]))
        assert_allclose(_softmax(logits), fitted.predict_proba(X[:n]), atol=1e-4)


def test_onnx_string_labels(fitted_str, task, tmp_path):
    pytest.importorskip("onnx")
    X = task[1]
    path = export_onnx(fitted_str, tmp_path / "model.onnx", opset=13)
    classes, _ = read_onnx_metadata(path)
    assert_array_equal(classes, np.sort(NAMES))
    (logits,) = _onnx_session(path).run(None, {"input": X})
    assert_array_equal(classes[logits.argmax(axis=1)], fitted_str.predict(X))


def test_read_onnx_metadata_refuses_foreign_files(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="no metaprune metadata"):
        read_onnx_metadata(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="not an ONNX model"):
        read_onnx_metadata(tmp_path / "junk.onnx")
