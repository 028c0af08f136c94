import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from metaprune import IterativeFilterPruner, PrunedModelBank, load_pruned
from metaprune.cli.parser import main
from metaprune.backbone.resnet import backbone_metadata, cifar_resnet18, load_backbone, save_backbone

from _safetensors import rewrite


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "metaprune", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_demo_runs_end_to_end_and_writes_results(tmp_path):
    out = tmp_path / "demo"
    proc = run("demo", "--out", str(out), "--bank-tasks", "3", "--test-tasks", "1", "--pretrain-epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "| MVP (30 it) |" in proc.stdout and "| Uniform (30 it) |" in proc.stdout
    result = json.loads((out / "demo_results.json").read_text())
    assert {r["method"] for r in result["rows"]} == {"MVP (30 it)", "IFP (30 it)", "IFP (150 it)", "Uniform (30 it)"}
    # one row per method and test task; 5-way tasks (chance 0.2): measured 0.82 (IFP 30 it) to 0.905 (IFP 150 it)
    # on an AVX2 machine, 0.48 (IFP 30 it) to 0.935 (MVP) on an AVX-512 one (other kernels round otherwise)
    assert len(result["rows"]) == 4 and all(r["accuracy"] > 0.4 for r in result["rows"])
    assert (out / "demo.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    backbone = cifar_resnet18(width=2, in_channels=1, num_classes=3)
    save_backbone(backbone, root / "backbone.safetensors", metadata={"made_by": "test"})
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    y = np.arange(40) % 2
    ifp = IterativeFilterPruner(backbone, pruning_ratio=0.5, n_iterations=2, prune_every=1, batch_size=16,
                                head_epochs=1, random_state=0)
    bank = PrunedModelBank(backbone, path=root / "bank.sqlite")
    bank.add("task-a", X, y, ifp)
    bank.close()
    ifp.fit(X, y).save(root / "pruned.safetensors")
    return root


def test_inspect_bank_pruned_network_and_backbone(files):
    proc = run("inspect", str(files / "bank.sqlite"))
    assert proc.returncode == 0, proc.stderr
    assert "1 tasks" in proc.stdout and "task-a" in proc.stdout
    proc = run("inspect", str(files / "pruned.safetensors"))
    assert proc.returncode == 0 and "kept channels" in proc.stdout and "layer4=8" in proc.stdout
    proc = run("inspect", str(files / "backbone.safetensors"))
    assert proc.returncode == 0 and '"made_by": "test"' in proc.stdout


def test_errors_are_one_line_with_exit_code_2(files, tmp_path):
    missing = run("inspect", str(tmp_path / "nope.sqlite"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "no such file" in missing.stderr
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    bad = run("inspect", str(junk))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    wrong = run("demo", "--bank-tasks", "many")
    assert wrong.returncode == 2 and "invalid int value" in wrong.stderr
    assert run("frobnicate").returncode == 2


# Device strings no machine runs: a malformed one, a device type metaprune does not run on, a GPU index
# beyond any machine's, and plain cuda where there is no GPU.
BAD_DEVICES = ["nonsense", "meta", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])


def test_device_is_checked_before_any_work(files, tmp_path, capsys):
    backbone = files / "backbone.safetensors"
    commands = {
        "evaluate": ["evaluate", files / "pruned.safetensors", "--data", "digits"],
        "prune": ["prune", "--method", "uniform", "--backbone", backbone, "--data", "digits",
                  "--out", tmp_path / "pruned.safetensors"],
        "build-bank": ["build-bank", "--backbone", backbone, "--data", "digits",
                       "--bank", tmp_path / "bank.sqlite", "--n-tasks", "1"],
        "pretrain": ["pretrain", "--data", "digits", "--out", tmp_path / "backbone.safetensors"],
    }
    for command, args in commands.items():
        for device in BAD_DEVICES:
            status, out, err = call(capsys, *args, "--device", device)
            assert one_line_error(status, err, command) and "--device: " in err and repr(device) in err, err
            assert out == ""
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
    if not torch.cuda.is_available():  # the case, in a real process
        proc = run("evaluate", files / "pruned.safetensors", "--data", "digits", "--device", "cuda")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert "no cuda device is available on this machine" in proc.stderr


def _damaged_pruned_files(files, folder):
    """The damaged pruned-network files of issue 18: huge widths in the spec, a negative input shape."""
    blob = (files / "pruned.safetensors").read_bytes()
    wide, huge = [2000, 4000, 8000, 16000], [10**6, 4, 8, 16]
    return {
        "wide": rewrite(blob, folder / "wide.safetensors", spec=lambda s: {**s, "planes": wide}),
        "huge": rewrite(blob, folder / "huge.safetensors", spec=lambda s: {**s, "planes": huge}),
        "negative": rewrite(blob, folder / "negative.safetensors", input_shape=lambda s: [1, -8, 8]),
    }


def test_damaged_pruned_files_are_one_line_errors(files, tmp_path, capsys):
    damaged = _damaged_pruned_files(files, tmp_path)
    for case, path in damaged.items():
        for command in (["inspect", path], ["evaluate", path, "--data", "digits"]):
            status, _, err = call(capsys, *command)
            assert one_line_error(status, err, command[0]) and str(path) in err, (case, err)
    # in a real process: one line, and the process stays small (it grew to 24 GB before the fix)
    code = ("import resource, subprocess, sys; "
            "p = subprocess.run([sys.executable, '-m', 'metaprune', 'inspect', "
            f"{str(damaged['wide'])!r}], capture_output=True, text=True); "
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.stderr.write(p.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    status, peak_kib = map(int, proc.stdout.split())
    assert status == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "the spec and selection do not fit together" in proc.stderr
    assert peak_kib < 4 * 2**20, f"inspect peaked at {peak_kib / 2**20:.1f} GiB"


# ---------------------------------------------------------------------------------------------------------
# pretrain -> build-bank -> prune -> evaluate -> export, each in a subprocess on tiny data
# ---------------------------------------------------------------------------------------------------------

COMMANDS = {
    "demo": ["--bank-tasks", "--pretrain-epochs", "--quiet"],
    "pretrain": ["--data", "--method", "--width", "--epochs", "--out", "--checkpoint", "--resume", "--seed",
                 "--quiet"],
    "build-bank": ["--backbone", "--data", "--bank", "--n-tasks", "--n-way", "--tasks", "--write-tasks",
                   "--n-jobs", "--pruning-ratio", "--iterations", "--prune-every", "--lr", "--batch-size",
                   "--seed"],
    "prune": ["--method", "--data", "--classes", "--bank", "--backbone", "--out", "--n-neighbors",
              "--iterations", "--pruning-ratio", "--lr", "--seed", "--test-fraction"],
    "evaluate": ["--data", "--classes", "--json", "--held-out"],
    "export": ["--format", "--out"],
    "inspect": ["--limit"],
}

# 3-way digit tasks of 15 training images per class, pruned in 2 iterations (+ one fine-tuning epoch)
TINY_TASKS = ["--n-way", "3", "--n-test-per-class", "20", "--n-train-per-class", "15", "--iterations", "2",
              "--batch-size", "32"]


def call(capsys, *args):
    """Run the command line in this process: (exit status, stdout, stderr)."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --help and usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(status, err, command):
    lines = err.strip().splitlines()
    return status == 2 and len(lines) == 1 and lines[0].startswith(f"metaprune {command}: error:") \
        and "Traceback" not in err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def pretrained(run_dir):
    proc = run("pretrain", "--data", "digits", "--width", "2", "--epochs", "1", "--method", "simclr",
               "--checkpoint", run_dir / "ckpt.safetensors", "--out", run_dir / "backbone.safetensors",
               "--seed", "1")
    return proc, run_dir / "backbone.safetensors"


@pytest.fixture(scope="module")
def bank_built(pretrained, run_dir):
    proc = run("build-bank", "--backbone", pretrained[1], "--data", "digits",
               "--bank", run_dir / "bank.sqlite", "--n-tasks", "2", *TINY_TASKS,
               "--write-tasks", run_dir / "tasks.json")
    return proc, run_dir / "bank.sqlite"


@pytest.fixture(scope="module")
def mvp_pruned(bank_built, pretrained, run_dir):
    proc = run("prune", "--method", "mvp", "--bank", bank_built[1], "--backbone", pretrained[1],
               "--data", "digits", "--classes", "1,4,7", "--iterations", "2", "--batch-size", "32",
               "--test-fraction", "0.3", "--out", run_dir / "mvp.safetensors")
    return proc, run_dir / "mvp.safetensors"


def test_pretrain_writes_a_backbone_with_its_normalisation_and_checkpoint(pretrained, run_dir, capsys):
    proc, path = pretrained
    assert proc.returncode == 0, proc.stderr
    assert "simclr for 1 epochs on 1797 images" in proc.stdout
    assert "SimSiamPretrainer(simclr)" in proc.stderr  # the epoch progress bar
    net = load_backbone(path)
    assert net.conv1.in_channels == 1 and net.conv1.out_channels == 2
    meta = backbone_metadata(path)
    assert meta["method"] == "simclr" and meta["epochs"] == 1 and meta["data"] == "digits"
    assert len(meta["mean"]) == 1 and 0.2 < meta["mean"][0] < 0.4 and meta["std"][0] > 0.1
    assert (run_dir / "ckpt.safetensors").is_file()
    # an existing checkpoint is never restarted silently; --resume continues it (finished: nothing to do)
    again = ["pretrain", "--data", "digits", "--width", 2, "--epochs", 1, "--seed", 1,
             "--checkpoint", run_dir / "ckpt.safetensors", "--out", run_dir / "again.safetensors"]
    status, _, err = call(capsys, *again)
    assert one_line_error(status, err, "pretrain") and "--resume" in err
    status, out, err = call(capsys, *again, "--resume", "--quiet")
    assert status == 0, err
    assert "resumed from the checkpoint" in out and err == ""
    assert torch.equal(load_backbone(run_dir / "again.safetensors").conv1.weight, net.conv1.weight)


def test_build_bank_writes_tasks_and_bank_and_resumes(bank_built, pretrained, run_dir, capsys):
    proc, path = bank_built
    assert proc.returncode == 0, proc.stderr
    assert "2 task(s) pruned and added, 0 already stored" in proc.stdout and "bank build" in proc.stderr
    tasks = json.loads((run_dir / "tasks.json").read_text())
    assert tasks["data"] == "digits" and [t["task_id"] for t in tasks["tasks"]] == ["task-0000", "task-0001"]
    bank = PrunedModelBank.open(path, read_only=True)
    assert bank.task_ids == ["task-0000", "task-0001"]
    assert [list(bank.record(t).classes) for t in bank.task_ids] == [t["classes"] for t in tasks["tasks"]]
    first = {t: bank.record(t).created for t in bank.task_ids}
    bank.close()
    # the same task file again: nothing to prune
    status, out, err = call(capsys, "build-bank", "--backbone", pretrained[1], "--data", "digits",
                            "--bank", path, "--tasks", run_dir / "tasks.json", "--quiet")
    assert status == 0, err
    assert "0 task(s) pruned and added, 2 already stored; 2 tasks" in out
    # more sampled tasks with the same seed: only the missing one is pruned
    proc = run("build-bank", "--backbone", pretrained[1], "--data", "digits", "--bank", path,
               "--n-tasks", "3", *TINY_TASKS, "--n-jobs", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "1 task(s) pruned and added, 2 already stored; 3 tasks" in proc.stdout
    assert proc.stderr == ""  # --quiet: no progress bar
    with PrunedModelBank.open(path, read_only=True) as bank:
        assert bank.task_ids == ["task-0000", "task-0001", "task-0002"]
        assert {t: bank.record(t).created for t in first} == first  # untouched
    status, out, _ = call(capsys, "inspect", path, "--limit", 2)
    assert status == 0 and "3 tasks" in out and "FLOPs/image" in out and "and 1 more tasks" in out


def test_prune_mvp_saves_a_network_and_evaluate_reproduces_its_held_out_accuracy(mvp_pruned, bank_built):
    proc, path = mvp_pruned
    assert proc.returncode == 0, proc.stderr
    assert "classes [1, 4, 7]" in proc.stdout and "voting bank tasks: task-000" in proc.stdout
    assert "FLOPs/image" in proc.stdout and "held-out accuracy" in proc.stdout
    model = load_pruned(path)
    assert model.classes_.tolist() == [1, 4, 7] and model.input_shape == (1, 8, 8)
    meta = model.metadata
    assert meta["method"] == "mvp" and meta["class_names"] == ["1", "4", "7"] and meta["test_fraction"] == 0.3
    assert meta["mean"] == backbone_metadata(bank_built[1].parent / "backbone.safetensors")["mean"]
    printed = float(proc.stdout.split("held-out accuracy ")[1].split()[0])
    assert abs(printed - meta["test_accuracy"]) < 1e-4

    proc = run("evaluate", path, "--data", "digits", "--held-out", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["normalisation"] == "stored" and report["classes"] == [1, 4, 7]
    # the same split and the same normalisation as prune
    assert report["accuracy"] == pytest.approx(meta["test_accuracy"], abs=1e-9)
    assert report["n_images"] == meta["n_test"] and set(report["per_class"]) == {"1", "4", "7"}
    assert sum(r["n_images"] for r in report["per_class"].values()) == report["n_images"]


def test_prune_ifp_and_uniform_then_evaluate_and_inspect(pretrained, run_dir, capsys):
    for method in ("ifp", "uniform"):
        out_path = run_dir / f"{method}.safetensors"
        status, out, err = call(capsys, "prune", "--method", method, "--backbone", pretrained[1],
                                "--data", "digits", "--classes", "0,9", "--iterations", 2,
                                "--pruning-ratio", 0.5, "--batch-size", 32, "--out", out_path, "--quiet")
        assert status == 0, err
        assert f"pruned network {out_path}: {method}, classes [0, 9]" in out and "held-out" not in out
        model = load_pruned(out_path)
        assert model.metadata["method"] == method and model.classes_.tolist() == [0, 9]
        assert len(model.selection["layer4"]) == 8  # half of 16
    status, out, err = call(capsys, "evaluate", run_dir / "ifp.safetensors", "--data", "digits",
                            "--classes", "9")
    assert status == 0, err
    assert "on 180 images" in out and "  9: " in out and "  0: " not in out
    status, out, _ = call(capsys, "inspect", run_dir / "uniform.safetensors")
    assert status == 0 and '"method": "uniform"' in out and "FLOPs/image" in out


def test_npz_and_image_folder_data(pretrained, tmp_path, capsys):
    from PIL import Image

    from metaprune.cli.data_args import load_data
    from metaprune.data.loaders import load_digits_images

    digits = load_digits_images()
    keep = np.flatnonzero(np.isin(digits.labels, [2, 5, 8]))[:60]
    npz = tmp_path / "task.npz"
    np.savez(npz, images=digits.images[keep, :, :, 0] / 255.0, labels=digits.labels[keep])  # float (N, H, W)
    data = load_data(str(npz))
    assert data.images.shape == (60, 8, 8, 1) and set(data.labels.tolist()) == {2, 5, 8}
    assert np.array_equal(data.images, digits.images[keep])
    status, out, err = call(capsys, "prune", "--method", "ifp", "--backbone", pretrained[1], "--data", npz,
                            "--iterations", 2, "--batch-size", 16, "--test-fraction", 0.25,
                            "--out", tmp_path / "npz.safetensors", "--quiet")
    assert status == 0, err
    assert "classes [2, 5, 8]" in out and "on 15 images" in out

    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    assert load_data(str(root), image_size=8).images.shape == (12, 8, 8, 3)
    rgb = tmp_path / "rgb.safetensors"
    save_backbone(cifar_resnet18(width=2, in_channels=3, num_classes=2), rgb)  # no stored normalisation
    folder_net = tmp_path / "folder.safetensors"
    status, out, err = call(capsys, "prune", "--method", "uniform", "--backbone", rgb, "--data", root,
                            "--image-size", 8, "--iterations", 2, "--out", folder_net, "--quiet")
    assert status == 0, err
    assert "classes [0, 1] (cat, dog)" in out
    model = load_pruned(folder_net)
    assert model.input_shape == (3, 8, 8) and len(model.metadata["mean"]) == 3
    status, out, err = call(capsys, "evaluate", folder_net, "--data", root, "--image-size", 8,
                            "--classes", "dog", "--json")
    assert status == 0, err
    assert json.loads(out)["n_images"] == 6 and set(json.loads(out)["per_class"]) == {"dog"}
    # the wrong data for a network: other channels, other size, other class names
    status, _, err = call(capsys, "prune", "--method", "uniform", "--backbone", rgb, "--data", npz, "--out",
                          tmp_path / "x.safetensors")
    assert one_line_error(status, err, "prune") and "channel" in err
    status, _, err = call(capsys, "evaluate", folder_net, "--data", root, "--image-size", 10)
    assert one_line_error(status, err, "evaluate") and "(3, 10, 10)" in err
    status, _, err = call(capsys, "evaluate", folder_net, "--data", "digits")
    assert one_line_error(status, err, "evaluate")


def test_export_torchscript_in_a_subprocess_and_onnx(mvp_pruned, run_dir, capsys):
    from metaprune.export import load_torchscript

    proc = run("export", mvp_pruned[1], "--format", "torchscript", "--out", run_dir / "mvp.pt")
    assert proc.returncode == 0, proc.stderr
    assert "as torchscript to" in proc.stdout and proc.stderr == ""
    module, classes, input_shape = load_torchscript(run_dir / "mvp.pt")
    assert classes.tolist() == [1, 4, 7] and tuple(input_shape) == (1, 8, 8)
    x = torch.randn(4, 1, 8, 8)
    expected = load_pruned(mvp_pruned[1]).module(x)
    assert torch.allclose(module(x), expected, atol=1e-5)
    pytest.importorskip("onnx")
    from metaprune.export import read_onnx_metadata

    status, out, err = call(capsys, "export", mvp_pruned[1], "--format", "onnx",
                            "--out", run_dir / "mvp.onnx")
    assert status == 0, err
    classes, input_shape = read_onnx_metadata(run_dir / "mvp.onnx")
    assert classes.tolist() == [1, 4, 7] and tuple(input_shape) == (1, 8, 8)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_sub_command(command, capsys):
    status, out, _ = call(capsys, command, "--help")
    assert status == 0
    assert out.startswith(f"usage: metaprune {command}")
    assert all(option in out for option in COMMANDS[command]), [o for o in COMMANDS[command] if o not in out]


def test_help_in_a_subprocess(capsys):
    proc = run("build-bank", "--help")
    assert proc.returncode == 0 and "--n-tasks" in proc.stdout and "resumable" in proc.stdout
    status, out, _ = call(capsys, "--help")
    assert status == 0 and all(c in out for c in COMMANDS)


def test_user_errors_are_one_line_with_exit_code_2_in_a_subprocess(tmp_path):
    proc = run("prune", "--method", "mvp", "--bank", tmp_path / "missing.sqlite", "--data", "digits",
               "--out", tmp_path / "x.safetensors")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "missing.sqlite" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("prune", "--method", "magic", "--data", "digits", "--out", tmp_path / "x.safetensors")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "invalid choice" in proc.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_user_errors_are_one_line_with_exit_code_2(pretrained, bank_built, mvp_pruned, tmp_path, capsys):
    backbone, bank, pruned = pretrained[1], bank_built[1], mvp_pruned[1]
    new = tmp_path / "b.safetensors"
    bad_json = tmp_path / "tasks.json"
    bad_json.write_text("{not json")
    other = tmp_path / "other" / "backbone.safetensors"
    other.parent.mkdir()
    torch.manual_seed(1)
    save_backbone(cifar_resnet18(width=2, in_channels=1, num_classes=10), other)
    cases = [
        # (command line, text expected in the error)
        (["pretrain", "--data", "digits", "--out", new, "--method", "byol"], "invalid choice"),
        (["pretrain", "--data", "digits", "--out", new, "--epochs", "0"], "positive"),
        (["pretrain", "--data", "digits", "--out", new, "--resume"], "--checkpoint"),
        (["pretrain", "--data", tmp_path / "nowhere", "--out", new], "no such data set"),
        (["pretrain", "--out", new], "--data"),
        (["build-bank", "--backbone", backbone, "--data", "digits", "--bank", tmp_path / "b.sqlite"],
         "--n-tasks"),
        (["build-bank", "--backbone", tmp_path / "none.safetensors", "--data", "digits", "--bank",
          tmp_path / "b.sqlite", "--n-tasks", 1], "no backbone file"),
        (["build-bank", "--backbone", backbone, "--data", "digits", "--bank", tmp_path / "b.sqlite",
          "--tasks", bad_json], "not a JSON task list"),
        (["build-bank", "--backbone", backbone, "--data", "digits", "--bank", tmp_path / "b.sqlite",
          "--tasks", tmp_path / "none.json"], "no task file"),
        (["build-bank", "--backbone", backbone, "--data", "digits", "--bank", tmp_path / "b.sqlite",
          "--n-tasks", 1, "--n-test-per-class", 500], "n_test_per_class"),
        (["build-bank", "--backbone", backbone, "--data", "digits", "--bank", backbone, "--n-tasks", 1],
         "bank"),
        (["prune", "--method", "ifp", "--data", "digits", "--out", tmp_path / "p.safetensors"], "--backbone"),
        (["prune", "--method", "mvp", "--data", "digits", "--out", tmp_path / "p.safetensors"], "--bank"),
        (["prune", "--method", "uniform", "--backbone", backbone, "--bank", bank, "--data", "digits",
          "--out", tmp_path / "p.safetensors"], "--bank applies to --method mvp only"),
        (["prune", "--method", "ifp", "--backbone", backbone, "--n-neighbors", 3, "--data", "digits",
          "--out", tmp_path / "p.safetensors"], "--n-neighbors"),
        (["prune", "--method", "mvp", "--bank", bank, "--data", "digits", "--n-neighbors", 9,
          "--out", tmp_path / "p.safetensors"], "n_neighbors=9"),
        (["prune", "--method", "mvp", "--bank", bank, "--backbone", other, "--data", "digits",
          "--out", tmp_path / "p.safetensors"], "is not the backbone of the bank"),
        (["prune", "--method", "ifp", "--backbone", backbone, "--data", "digits", "--classes", "3",
          "--out", tmp_path / "p.safetensors"], "two classes"),
        (["prune", "--method", "ifp", "--backbone", backbone, "--data", "digits", "--classes", "3,cat",
          "--out", tmp_path / "p.safetensors"], "unknown class 'cat'"),
        (["prune", "--method", "ifp", "--backbone", backbone, "--data", "digits", "--pruning-ratio", 1.5,
          "--out", tmp_path / "p.safetensors"], "(0, 1)"),
        (["prune", "--method", "ifp", "--backbone", pruned, "--data", "digits",
          "--out", tmp_path / "p.safetensors"], "not a metaprune backbone"),
        (["evaluate", tmp_path / "none.safetensors", "--data", "digits"], "no pruned-network file"),
        (["evaluate", backbone, "--data", "digits"], "not a metaprune pruned-network file"),
        (["evaluate", pruned, "--data", "digits", "--classes", "2,3"], "does not predict"),
        (["evaluate", pruned, "--data", "digits", "--classes", "1", "--held-out"], "held-out"),
        (["evaluate", pruned, "--data", "digits", "--split", "test"], "single split"),
        (["evaluate", pruned, "--data", "cifar100:" + str(tmp_path / "none.npz")], "does not exist"),
        (["evaluate", pruned], "--data"),
        (["export", pruned, "--format", "tflite", "--out", tmp_path / "m.tfl"], "invalid choice"),
        (["export", tmp_path / "none.safetensors", "--out", tmp_path / "m.pt"], None),
        (["inspect", bad_json], "not a metaprune"),
        (["inspect", tmp_path / "nope.sqlite", "--limit", "-1"], "non-negative"),
    ]
    for argv, expected in cases:
        command = argv[0]
        status, out, err = call(capsys, *argv)
        assert one_line_error(status, err, command), (argv, status, err)
        assert expected is None or expected in err, (argv, err)
    assert not list(tmp_path.glob("*.safetensors")) and not (tmp_path / "b.sqlite").exists()


def test_data_argument_helpers(tmp_path):
    from pathlib import Path

    from metaprune.cli.data_args import holdout_split, load_npz_images, parse_classes, stored_normalisation
    from metaprune.data.preprocessing import CIFAR100_MEAN, CIFAR100_STD

    # a class name wins over an id; other integers are ids
    assert parse_classes("dog, 3,1", ("cat", "dog", "3", "bird")) == [1, 2]
    with pytest.raises(ValueError, match="unknown class 'fish'"):
        parse_classes("cat,fish", ("cat", "dog"))
    with pytest.raises(ValueError, match="unknown class '7'"):
        parse_classes("7", ("cat", "dog"))

    images = np.zeros((4, 5, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", images=images, labels=np.array(["dog", "cat", "dog", "emu"]))
    data = load_npz_images(tmp_path / "s.npz")
    assert data.class_names == ("cat", "dog", "emu") and data.labels.tolist() == [1, 0, 1, 2]
    np.savez(tmp_path / "nchw.npz", images=np.zeros((4, 3, 8, 8), np.float32), labels=np.arange(4))
    with pytest.raises(ValueError, match="channels-first"):
        load_npz_images(tmp_path / "nchw.npz")
    np.savez(tmp_path / "f.npz", images=np.full((2, 4, 4), 3.0), labels=np.arange(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_npz_images(tmp_path / "f.npz")
    np.savez(tmp_path / "nolabels.npz", images=images)
    with pytest.raises(ValueError, match="labels"):
        load_npz_images(tmp_path / "nolabels.npz")

    shipped = Path(__file__).parent.parent / "metaprune" / "checkpoints"
    shipped = shipped / "cifar100_resnet18_w16_simclr.safetensors"
    mean, std = stored_normalisation(backbone_metadata(shipped))
    assert mean == pytest.approx(CIFAR100_MEAN) and std == pytest.approx(CIFAR100_STD)
    assert stored_normalisation({"made_by": "test"}) is None

    labels = np.repeat([3, 7, 9], [10, 20, 30])
    train, test = holdout_split(labels, 0.3, random_state=5)
    assert np.intersect1d(train, test).size == 0 and len(train) + len(test) == 60
    assert np.bincount(labels[test])[[3, 7, 9]].tolist() == [3, 6, 9]  # stratified
    again = holdout_split(labels, 0.3, random_state=5)
    assert np.array_equal(again[1], test)
    with pytest.raises(ValueError, match="leaves a class"):
        holdout_split(np.array([0, 0, 1, 1]), 0.3)
