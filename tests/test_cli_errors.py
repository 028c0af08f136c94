"""Every error path of the command line is one line on stderr and exit status 2.

One parametrised test walks the error paths of every sub-command: bad numbers and choices,
missing and conflicting options, missing, damaged and wrong files, folders given for files,
devices and thread counts, data that does not fit a backbone, bank or pruned network, and
damaged task files and metadata. Each case runs ``metaprune.cli.parser.main`` in this process and
checks the exit status, that stderr is exactly one line ``metaprune <command>: error: ...``
(argparse's usage errors end with ``(see 'metaprune <command> --help')``), that the line
holds a key phrase of the message, that nothing was printed on stdout or warned, and that
nothing was written to the output folder.

The inputs are tiny files made once per module: width-2 CIFAR ResNet-18 backbones saved
with :func:`metaprune.backbone.resnet.save_backbone`, a bank of two 2-iteration IFP tasks on digits
(``tests/_bank_worker.setup``), pruned networks, a pre-training checkpoint, and damaged
copies of them.
"""

import json
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from metaprune.bank import PrunedModelBank
from metaprune.cli.parser import main
from metaprune.backbone.resnet import cifar_resnet18, save_backbone

from _bank_worker import setup
from _safetensors import rewrite

COMMANDS = ("demo", "pretrain", "build-bank", "prune", "evaluate", "export", "inspect")
USAGE = "usage"  # an argparse error: the line ends with "(see 'metaprune <command> --help')"
JOB = "job"  # an error raised by the work: ValueError / OSError caught by main


# ------------------------------------------------------------------------------------------- fixtures
def _npz(path, images, labels, **arrays):
    np.savez(path, images=images, labels=labels, **arrays)
    return path


def _image_folder(root, sizes, bad=False):
    """An image folder with classes 'a' and 'b': ``sizes`` maps a class to its (H, W) (None: no image)."""
    rng = np.random.default_rng(0)
    for name, size in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(3 if size else 0):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    if bad:
        (root / "b" / "bad.png").write_bytes(b"not a png")
    return root


def _quiet_main(argv):
    status = main([str(a) for a in argv])
    assert status == 0, argv


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The inputs of the error paths (made once; no case writes to them)."""
    root = tmp_path_factory.mktemp("inputs")
    f = SimpleNamespace(root=root)
    X, y, backbone, tasks, pruner = setup(n_tasks=2)  # digits 8x8, width-2 backbone, 2-iteration IFP
    f.backbone = root / "backbone.safetensors"
    save_backbone(backbone, f.backbone, metadata={"made_by": "test"})
    torch.manual_seed(1)
    f.other = root / "other.safetensors"
    save_backbone(cifar_resnet18(width=2, in_channels=1, num_classes=10), f.other)
    f.rgb = root / "rgb.safetensors"
    save_backbone(cifar_resnet18(width=2, in_channels=3, num_classes=10), f.rgb)
    f.bad_mean = root / "bad-mean.safetensors"
    save_backbone(backbone, f.bad_mean, metadata={"mean": {"a": 1}, "std": [0.2]})
    f.rgb_mean = root / "rgb-mean.safetensors"
    save_backbone(backbone, f.rgb_mean, metadata={"mean": [0.1, 0.2, 0.3], "std": [0.2, 0.2, 0.2]})
    f.bank = root / "bank.sqlite"
    with PrunedModelBank(backbone, path=f.bank) as bank:
        bank.build(tasks, pruner, X, y, progress=False)
    f.pruned = root / "pruned.safetensors"  # classes 1, 4, 7 with a held-out part
    _quiet_main(["prune", "--method", "uniform", "--backbone", f.backbone, "--data", "digits", "--classes",
                 "1,4,7", "--iterations", 2, "--test-fraction", 0.3, "--out", f.pruned, "--quiet"])
    f.no_holdout = root / "no-holdout.safetensors"
    _quiet_main(["prune", "--method", "uniform", "--backbone", f.backbone, "--data", "digits", "--classes",
                 "1,4", "--iterations", 2, "--out", f.no_holdout, "--quiet"])
    blob = f.pruned.read_bytes()

    def damaged(name, **entries):  # the pruned network with metadata entries replaced
        return rewrite(blob, root / f"{name}.safetensors", metadata=lambda old: {**old, **entries})

    f.bad_seed = damaged("bad-seed", seed=[1])
    f.bad_fraction = damaged("bad-fraction", test_fraction="abc")
    f.bad_stats = damaged("bad-stats", mean=[0.1, 0.2])  # two channels' statistics for 1-channel images
    f.checkpoint = root / "ckpt.safetensors"
    _quiet_main(["pretrain", "--data", "digits", "--width", 2, "--epochs", 1, "--checkpoint", f.checkpoint,
                 "--out", root / "pretrained.safetensors", "--quiet"])
    for name in ("backbone", "bank", "pruned", "checkpoint"):
        path = getattr(f, name)
        truncated = root / f"truncated-{path.name}"
        truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        setattr(f, f"truncated_{name}", truncated)
    f.random = root / "random.bin"
    f.random.write_bytes(np.random.default_rng(0).bytes(4096))
    f.empty = root / "empty.bin"
    f.empty.write_bytes(b"")
    f.text = root / "notes.txt"
    f.text.write_text("hello")
    f.folder = root / "folder"
    f.folder.mkdir()
    f.random_npz = root / "random.npz"
    f.random_npz.write_bytes(np.random.default_rng(1).bytes(4096))

    rng = np.random.default_rng(0)
    digits_labels = np.array([1, 4, 7] * 10)
    f.rgb_npz = _npz(root / "rgb.npz", rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8), digits_labels)
    f.big_npz = _npz(root / "big.npz", rng.integers(0, 256, (30, 16, 16), dtype=np.uint8), digits_labels)
    f.two_class_npz = _npz(root / "two-class.npz", rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
                           np.arange(20) % 2)
    f.renamed_npz = _npz(root / "renamed.npz", rng.integers(0, 256, (30, 8, 8), dtype=np.uint8),
                         digits_labels, class_names=np.array(list("abcdefghij")))
    f.no_labels_npz = root / "no-labels.npz"
    np.savez(f.no_labels_npz, images=np.zeros((4, 8, 8), np.uint8))
    f.nchw_npz = _npz(root / "nchw.npz", np.zeros((4, 3, 8, 8), np.float32), np.arange(4))
    f.float_npz = _npz(root / "float.npz", np.full((4, 8, 8), 3.0), np.arange(4))
    f.complex_npz = _npz(root / "complex.npz", np.zeros((4, 8, 8), np.complex64), np.arange(4))
    f.no_pixels_npz = _npz(root / "no-pixels.npz", np.zeros((4, 0, 8), np.uint8), np.arange(4))
    f.huge_labels_npz = _npz(root / "huge-labels.npz", np.zeros((4, 8, 8), np.uint8),
                             np.array([0, 1, 2, 10**12]))
    f.big10_npz = _npz(root / "big10.npz", rng.integers(0, 256, (200, 16, 16), dtype=np.uint8),
                       np.arange(200) % 10)
    f.corrupt_folder = _image_folder(root / "corrupt-images", {"a": (8, 8), "b": (8, 8)}, bad=True)
    f.sizes_folder = _image_folder(root / "mixed-sizes", {"a": (8, 8), "b": (10, 10)})
    f.empty_class_folder = _image_folder(root / "empty-class", {"a": (8, 8), "b": None})

    def task_file(name, content):
        path = root / f"{name}.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    def one_task(**fields):
        return {"tasks": [{"task_id": "t", "classes": [0, 1], "train_index": [0, 1, 10, 11],
                           "test_index": [], **fields}]}

    f.tasks_bad_json = task_file("bad-json", "{not json")
    f.tasks_missing_keys = task_file("missing-keys", {"tasks": [{"x": 1}]})
    f.tasks_not_list = task_file("not-a-list", 42)
    f.tasks_empty = task_file("no-tasks", {"tasks": []})
    f.tasks_float = task_file("float-index", one_task(train_index=[1.5, 2]))
    f.tasks_huge = task_file("huge-index", one_task(train_index=[10**30]))
    f.tasks_null = task_file("null-classes", one_task(classes=None))
    f.tasks_deep = task_file("deep", "[" * 100000 + "]" * 100000)
    f.tasks_out_of_range = task_file("out-of-range", one_task(train_index=[0, 1, 99999]))
    f.tasks_other_labels = task_file("other-labels", one_task(train_index=[2, 3, 12, 13]))
    f.tasks_16px = task_file("new-task", one_task(task_id="new-task"))
    return f


# ---------------------------------------------------------------------------------------------- cases
# Each case: (id, command line, key phrase, kind). The command line is a function of the input files
# ``f`` and the output folder ``o`` (which does not exist: nothing may be written there).
D = ["--data", "digits"]


def pretrain(f, o, *extra):
    return ["pretrain", *D, "--width", 2, "--epochs", 1, "--out", o / "backbone.safetensors", "--quiet",
            *extra]


def bank(f, o, *extra, backbone=None, data="digits", bank_file=None, tasks=None):
    source = ["--tasks", tasks] if tasks is not None else ["--n-tasks", 1, "--n-test-per-class", 20,
                                                           "--n-train-per-class", 10]
    return ["build-bank", "--backbone", backbone or f.backbone, "--data", data, "--bank",
            bank_file or o / "bank.sqlite", *source, "--iterations", 2, "--quiet", *extra]


def prune(f, o, *extra, method="uniform", backbone=None, bank_file=None, data="digits"):
    source = ["--bank", bank_file or f.bank] if method == "mvp" else ["--backbone", backbone or f.backbone]
    return ["prune", "--method", method, *source, "--data", data, "--iterations", 2,
            "--out", o / "pruned.safetensors", "--quiet", *extra]


def evaluate(f, o, *extra, model=None, data="digits"):
    return ["evaluate", model or f.pruned, "--data", data, *extra]


def export(f, o, *extra, model=None):
    return ["export", model or f.pruned, "--out", o / "model.pt", *extra]


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def case(id, argv, phrase, kind=JOB, marks=(), env=None):
    """A parameter set."""
    return pytest.param(argv, phrase, kind, env, id=id, marks=marks)


CASES = [
    # ---- the top-level parser
    case("no-command", lambda f, o: [], "the following arguments are required: COMMAND", USAGE),
    case("unknown-command", lambda f, o: ["frobnicate"], "invalid choice: 'frobnicate'", USAGE),
    case("unknown-top-level-option", lambda f, o: ["--bogus"], "required: COMMAND", USAGE),
    # ---- demo
    case("demo-width-0", lambda f, o: ["demo", "--width", 0], "must be a positive integer, got 0", USAGE),
    case("demo-bank-tasks-negative", lambda f, o: ["demo", "--bank-tasks", -1], "got -1", USAGE),
    case("demo-test-tasks-text", lambda f, o: ["demo", "--test-tasks", "x"], "invalid int value: 'x'", USAGE),
    case("demo-pretrain-epochs-0", lambda f, o: ["demo", "--pretrain-epochs", 0], "positive integer", USAGE),
    case("demo-seed-negative", lambda f, o: ["demo", "--seed", -1], "0..4294967295, got -1", USAGE),
    case("demo-seed-text", lambda f, o: ["demo", "--seed", "x"], "invalid int value: 'x'", USAGE),
    case("demo-out-is-a-file", lambda f, o: ["demo", "--out", f.text], "is a file, not a folder", USAGE),
    case("demo-out-under-a-file", lambda f, o: ["demo", "--out", f.text / "results"],
         "notes.txt is a file, not a folder", USAGE),
    case("demo-unknown-option", lambda f, o: ["demo", "--bogus"], "unrecognized arguments: --bogus", USAGE),
    # ---- pretrain
    case("pretrain-no-data", lambda f, o: ["pretrain", "--out", o / "b.safetensors"],
         "the following arguments are required: --data", USAGE),
    case("pretrain-no-out", lambda f, o: ["pretrain", *D],
         "the following arguments are required: --out", USAGE),
    case("pretrain-method", lambda f, o: pretrain(f, o, "--method", "byol"), "invalid choice: 'byol'", USAGE),
    case("pretrain-width-0", lambda f, o: pretrain(f, o, "--width", 0), "positive integer, got 0", USAGE),
    case("pretrain-epochs-0", lambda f, o: pretrain(f, o, "--epochs", 0), "positive integer, got 0", USAGE),
    case("pretrain-batch-size-0", lambda f, o: pretrain(f, o, "--batch-size", 0), "positive integer", USAGE),
    case("pretrain-lr-0", lambda f, o: pretrain(f, o, "--lr", 0),
         "must be positive and finite, got 0", USAGE),
    case("pretrain-lr-inf", lambda f, o: pretrain(f, o, "--lr", "inf"),
         "positive and finite, got inf", USAGE),
    case("pretrain-lr-nan", lambda f, o: pretrain(f, o, "--lr", "nan"),
         "positive and finite, got nan", USAGE),
    case("pretrain-lr-text", lambda f, o: pretrain(f, o, "--lr", "x"), "invalid float value: 'x'", USAGE),
    case("pretrain-warmup-negative", lambda f, o: pretrain(f, o, "--warmup-epochs", -1),
         "warmup_epochs must be in [0, epochs)"),
    case("pretrain-warmup-text", lambda f, o: pretrain(f, o, "--warmup-epochs", "x"), "invalid float", USAGE),
    case("pretrain-resume-without-checkpoint", lambda f, o: pretrain(f, o, "--resume"),
         "--resume needs --checkpoint"),
    case("pretrain-existing-checkpoint-without-resume",
         lambda f, o: pretrain(f, o, "--checkpoint", f.checkpoint),
         "exists: pass --resume to continue it"),
    case("pretrain-checkpoint-random-bytes",
         lambda f, o: pretrain(f, o, "--checkpoint", f.random, "--resume"),
         "is not a readable metaprune pre-training checkpoint", USAGE),
    case("pretrain-checkpoint-truncated",
         lambda f, o: pretrain(f, o, "--checkpoint", f.truncated_checkpoint, "--resume"),
         "is not a readable metaprune pre-training checkpoint", USAGE),
    case("pretrain-checkpoint-is-a-backbone",
         lambda f, o: pretrain(f, o, "--checkpoint", f.backbone, "--resume"),
         "is not a readable metaprune pre-training checkpoint", USAGE),
    case("pretrain-checkpoint-is-a-folder", lambda f, o: pretrain(f, o, "--checkpoint", f.folder, "--resume"),
         "is a folder; give the path of the file to write", USAGE),
    case("pretrain-out-is-a-folder", lambda f, o: pretrain(f, o, "--out", f.folder), "is a folder", USAGE),
    case("pretrain-out-under-a-file", lambda f, o: pretrain(f, o, "--out", f.text / "b.safetensors"),
         "notes.txt is a file, not a folder", USAGE),
    case("pretrain-device-cuda", lambda f, o: pretrain(f, o, "--device", "cuda"),
         "no cuda device is available on this machine", USAGE, marks=NO_CUDA),
    case("pretrain-device-nonsense", lambda f, o: pretrain(f, o, "--device", "nonsense"),
         "--device: unknown device 'nonsense'", USAGE),
    case("pretrain-device-meta", lambda f, o: pretrain(f, o, "--device", "meta"),
         "metaprune runs on cpu, cuda or mps, not meta", USAGE),
    case("pretrain-device-index", lambda f, o: pretrain(f, o, "--device", "cuda:99"), "'cuda:99'", USAGE),
    case("pretrain-threads-0", lambda f, o: pretrain(f, o, "--threads", 0),
         "--threads takes 'auto' or a positive int, got '0'", USAGE),
    case("pretrain-threads-text", lambda f, o: pretrain(f, o, "--threads", "x"), "got 'x'", USAGE),
    case("pretrain-threads-negative", lambda f, o: pretrain(f, o, "--threads", "-3"), "got '-3'", USAGE),
    case("pretrain-seed-too-large", lambda f, o: pretrain(f, o, "--seed", 2**32), "0..4294967295", USAGE),
    case("pretrain-split", lambda f, o: pretrain(f, o, "--split", "val"), "invalid choice: 'val'", USAGE),
    case("pretrain-split-test-of-digits", lambda f, o: pretrain(f, o, "--split", "test"),
         "digits has a single split"),
    case("pretrain-image-size-0", lambda f, o: pretrain(f, o, "--image-size", 0), "positive integer", USAGE),
    case("pretrain-image-size-of-digits", lambda f, o: pretrain(f, o, "--image-size", 8),
         "--image-size applies to image folders only"),
    case("pretrain-unknown-option", lambda f, o: pretrain(f, o, "--bogus"), "unrecognized arguments: --bogus",
         USAGE),
    # ---- data arguments (read the same way by every command; walked with pretrain)
    case("data-empty", lambda f, o: ["pretrain", "--data", "", "--out", o / "b.safetensors"],
         "the data set specification is empty"),
    case("data-unknown-name", lambda f, o: ["pretrain", "--data", "imagenet", "--out", o / "b.safetensors"],
         "no such data set, file or folder: 'imagenet'"),
    case("data-digits-with-a-path", lambda f, o: ["pretrain", "--data", "digits:x", "--out", o / "b"],
         "'digits' takes no path"),
    case("data-missing-file", lambda f, o: ["pretrain", "--data", f.root / "none.npz", "--out", o / "b"],
         "no such data set, file or folder"),
    case("data-not-npz", lambda f, o: ["pretrain", "--data", f.text, "--out", o / "b"],
         "is neither a folder nor an .npz file"),
    case("data-npz-random-bytes", lambda f, o: ["pretrain", "--data", f.random_npz, "--out", o / "b"],
         "corrupted or unreadable .npz file"),
    case("data-npz-no-labels", lambda f, o: ["pretrain", "--data", f.no_labels_npz, "--out", o / "b"],
         "missing array(s) ['labels']"),
    case("data-npz-channels-first", lambda f, o: ["pretrain", "--data", f.nchw_npz, "--out", o / "b"],
         "look channels-first"),
    case("data-npz-float-range", lambda f, o: ["pretrain", "--data", f.float_npz, "--out", o / "b"],
         "float 'images' must hold values in [0, 1]"),
    case("data-npz-complex", lambda f, o: ["pretrain", "--data", f.complex_npz, "--out", o / "b"],
         "'images' must be uint8, integers 0..255 or floats"),
    case("data-npz-no-pixels", lambda f, o: ["pretrain", "--data", f.no_pixels_npz, "--out", o / "b"],
         "hold no pixels"),
    case("data-npz-huge-labels", lambda f, o: ["pretrain", "--data", f.huge_labels_npz, "--out", o / "b"],
         "class ids must be below 65536"),
    case("data-folder-without-classes", lambda f, o: ["pretrain", "--data", f.folder, "--out", o / "b"],
         "has no class sub-folders"),
    case("data-folder-corrupt-image", lambda f, o: ["pretrain", "--data", f.corrupt_folder, "--out", o / "b"],
         "bad.png: cannot read the image"),
    case("data-folder-mixed-sizes", lambda f, o: ["pretrain", "--data", f.sizes_folder, "--out", o / "b"],
         "pass image_size to resize them all"),
    case("data-folder-empty-class",
         lambda f, o: ["pretrain", "--data", f.empty_class_folder, "--out", o / "b"],
         "class folder(s) ['b'] hold no images"),
    case("data-cifar100-missing", lambda f, o: ["pretrain", "--data", f"cifar100:{f.root / 'none'}",
                                                "--out", o / "b"], "does not exist"),
    case("data-cifar100-empty-folder", lambda f, o: ["pretrain", "--data", f"cifar100:{f.folder}",
                                                     "--out", o / "b"], "no CIFAR-100 'train' split found"),
    case("data-cifar100-env-missing", lambda f, o: ["pretrain", "--data", "cifar100", "--out", o / "b"],
         "METAPRUNE_CIFAR100=", env={"METAPRUNE_CIFAR100": "/nonexistent/cifar100.npz"}),
    case("data-fashion-mnist-missing", lambda f, o: ["pretrain", "--data", f"fashion-mnist:{f.root / 'none'}",
                                                     "--out", o / "b"], "does not exist"),
    case("data-fashion-mnist-empty-folder",
         lambda f, o: ["pretrain", "--data", f"fashion-mnist:{f.folder}", "--out", o / "b"],
         "no file train-images-idx3-ubyte"),
    # ---- build-bank
    case("bank-no-backbone", lambda f, o: ["build-bank", *D, "--bank", o / "b.sqlite", "--n-tasks", 1],
         "the following arguments are required: --backbone", USAGE),
    case("bank-no-bank", lambda f, o: ["build-bank", "--backbone", f.backbone, *D, "--n-tasks", 1],
         "the following arguments are required: --bank", USAGE),
    case("bank-no-task-source", lambda f, o: ["build-bank", "--backbone", f.backbone, *D, "--bank", o / "b"],
         "one of the arguments --n-tasks --tasks is required", USAGE),
    case("bank-two-task-sources", lambda f, o: bank(f, o, "--tasks", f.tasks_float),
         "argument --tasks: not allowed with argument --n-tasks", USAGE),
    case("bank-backbone-missing", lambda f, o: bank(f, o, backbone=f.root / "none.safetensors"),
         "no backbone file at"),
    case("bank-backbone-random-bytes", lambda f, o: bank(f, o, backbone=f.random),
         "is not a readable safetensors backbone file"),
    case("bank-backbone-truncated", lambda f, o: bank(f, o, backbone=f.truncated_backbone),
         "is not a readable safetensors backbone file"),
    case("bank-backbone-is-a-pruned-network", lambda f, o: bank(f, o, backbone=f.pruned),
         "is not a metaprune backbone file (format='metaprune.pruned')"),
    case("bank-backbone-is-a-bank", lambda f, o: bank(f, o, backbone=f.bank),
         "is not a readable safetensors backbone file"),
    case("bank-backbone-is-a-folder", lambda f, o: bank(f, o, backbone=f.folder), "is a folder, not a file",
         USAGE),
    case("bank-bank-is-a-folder", lambda f, o: bank(f, o, bank_file=f.folder), "is a folder", USAGE),
    case("bank-bank-under-a-file", lambda f, o: bank(f, o, bank_file=f.text / "b.sqlite"),
         "notes.txt is a file, not a folder", USAGE),
    case("bank-bank-random-bytes", lambda f, o: bank(f, o, bank_file=f.random),
         "is damaged or is not a metaprune bank"),
    case("bank-bank-truncated", lambda f, o: bank(f, o, bank_file=f.truncated_bank),
         "is damaged or is not a metaprune bank"),
    case("bank-bank-is-a-backbone", lambda f, o: bank(f, o, bank_file=f.backbone),
         "is damaged or is not a metaprune bank"),
    case("bank-bank-of-another-backbone", lambda f, o: bank(f, o, backbone=f.other, bank_file=f.bank),
         "is a bank of another backbone"),
    case("bank-tasks-bad-json", lambda f, o: bank(f, o, tasks=f.tasks_bad_json), "is not a JSON task list"),
    case("bank-tasks-random-bytes", lambda f, o: bank(f, o, tasks=f.random), "is not a JSON task list"),
    case("bank-tasks-deeply-nested", lambda f, o: bank(f, o, tasks=f.tasks_deep), "nested too deeply"),
    case("bank-tasks-not-a-list", lambda f, o: bank(f, o, tasks=f.tasks_not_list),
         "must hold a list of tasks"),
    case("bank-tasks-missing-keys", lambda f, o: bank(f, o, tasks=f.tasks_missing_keys),
         "task data misses the keys"),
    case("bank-tasks-empty", lambda f, o: bank(f, o, tasks=f.tasks_empty), "holds no tasks"),
    case("bank-tasks-float-index", lambda f, o: bank(f, o, tasks=f.tasks_float),
         "'train_index' must be a list of integers, got [1.5, 2]"),
    case("bank-tasks-huge-index", lambda f, o: bank(f, o, tasks=f.tasks_huge),
         "'train_index' must be a list of integers"),
    case("bank-tasks-null-classes", lambda f, o: bank(f, o, tasks=f.tasks_null),
         "'classes' must be a list of integers, got null"),
    case("bank-tasks-missing", lambda f, o: bank(f, o, tasks=f.root / "none.json"), "no task file at"),
    case("bank-tasks-is-a-folder", lambda f, o: bank(f, o, tasks=f.folder), "is a folder, not a file", USAGE),
    case("bank-tasks-out-of-range", lambda f, o: bank(f, o, tasks=f.tasks_out_of_range),
         "train position 99999 is out of range for a data set of 1797 images"),
    case("bank-tasks-of-other-data", lambda f, o: bank(f, o, tasks=f.tasks_other_labels),
         "outside its classes"),
    case("bank-n-way-0", lambda f, o: bank(f, o, "--n-way", 0), "positive integer, got 0", USAGE),
    case("bank-n-way-1", lambda f, o: bank(f, o, "--n-way", 1), "n_way must be an int >= 2, got 1"),
    case("bank-n-way-too-many", lambda f, o: bank(f, o, "--n-way", 11), "n_way=11 exceeds the 10 classes"),
    case("bank-n-test-negative", lambda f, o: bank(f, o, "--n-test-per-class", -1), "non-negative", USAGE),
    case("bank-n-test-too-many", lambda f, o: bank(f, o, "--n-test-per-class", 500), "n_test_per_class"),
    case("bank-n-train-0", lambda f, o: bank(f, o, "--n-train-per-class", 0), "positive integer", USAGE),
    case("bank-n-train-too-many", lambda f, o: bank(f, o, "--n-train-per-class", 10000),
         "exceeds the training pool"),
    case("bank-n-jobs-0", lambda f, o: bank(f, o, "--n-jobs", 0),
         "--n-jobs: must be a positive number", USAGE),
    case("bank-n-jobs-text", lambda f, o: bank(f, o, "--n-jobs", "x"), "invalid int value: 'x'", USAGE),
    case("bank-pruning-ratio-0", lambda f, o: bank(f, o, "--pruning-ratio", 0), "must be in (0, 1)", USAGE),
    case("bank-pruning-ratio-1", lambda f, o: bank(f, o, "--pruning-ratio", 1), "must be in (0, 1)", USAGE),
    case("bank-iterations-0", lambda f, o: bank(f, o, "--iterations", 0), "positive integer", USAGE),
    case("bank-prune-every-0", lambda f, o: bank(f, o, "--prune-every", 0), "positive integer", USAGE),
    case("bank-lr-0", lambda f, o: bank(f, o, "--lr", 0), "positive and finite", USAGE),
    case("bank-batch-size-0", lambda f, o: bank(f, o, "--batch-size", 0), "positive integer", USAGE),
    case("bank-write-tasks-is-a-folder", lambda f, o: bank(f, o, "--write-tasks", f.folder), "is a folder",
         USAGE),
    case("bank-write-tasks-under-a-file", lambda f, o: bank(f, o, "--write-tasks", f.text / "t.json"),
         "notes.txt is a file, not a folder", USAGE),
    case("bank-images-of-other-channels", lambda f, o: bank(f, o, backbone=f.rgb),
         "the images have 1 channel(s) but the backbone "),
    case("bank-rgb-images-for-a-gray-backbone",
         lambda f, o: bank(f, o, "--n-way", 2, "--n-test-per-class", 2, "--n-train-per-class", 5,
                           data=f.two_class_npz),
         "the images have 3 channel(s) but the backbone "),
    case("bank-images-of-another-size-than-the-bank", "bank-16px",
         "the bank's tasks were pruned on images of shape (1, 8, 8), X has images of shape (1, 16, 16); "
         "nothing was pruned"),
    case("bank-device-cuda", lambda f, o: bank(f, o, "--device", "cuda"), "no cuda device", USAGE,
         marks=NO_CUDA),
    case("bank-device-nonsense", lambda f, o: bank(f, o, "--device", "nonsense"), "unknown device", USAGE),
    case("bank-threads-0", lambda f, o: bank(f, o, "--threads", 0), "'auto' or a positive int", USAGE),
    case("bank-seed-negative", lambda f, o: bank(f, o, "--seed", -1), "0..4294967295", USAGE),
    case("bank-unknown-option", lambda f, o: bank(f, o, "--bogus"), "unrecognized arguments: --bogus", USAGE),
    # ---- prune
    case("prune-no-method", lambda f, o: ["prune", *D, "--out", o / "p"],
         "the following arguments are required: --method", USAGE),
    case("prune-no-data", lambda f, o: ["prune", "--method", "mvp", "--bank", f.bank, "--out", o / "p"],
         "the following arguments are required: --data", USAGE),
    case("prune-no-out", lambda f, o: ["prune", "--method", "mvp", "--bank", f.bank, *D],
         "the following arguments are required: --out", USAGE),
    case("prune-method", lambda f, o: ["prune", "--method", "magic", *D, "--out", o / "p"],
         "invalid choice: 'magic'", USAGE),
    case("prune-mvp-without-bank", lambda f, o: ["prune", "--method", "mvp", *D, "--out", o / "p"],
         "method 'mvp' needs a bank (--bank)"),
    case("prune-ifp-without-backbone", lambda f, o: ["prune", "--method", "ifp", *D, "--out", o / "p"],
         "method 'ifp' needs a backbone (--backbone)"),
    case("prune-uniform-without-backbone",
         lambda f, o: ["prune", "--method", "uniform", *D, "--out", o / "p"],
         "method 'uniform' needs a backbone (--backbone)"),
    case("prune-bank-with-uniform", lambda f, o: prune(f, o, "--bank", f.bank),
         "--bank applies to --method mvp only"),
    case("prune-n-neighbors-with-ifp", lambda f, o: prune(f, o, "--n-neighbors", 2, method="ifp"),
         "--n-neighbors applies to --method mvp only"),
    case("prune-similarity-with-uniform", lambda f, o: prune(f, o, "--similarity", "classes"),
         "--similarity applies to --method mvp only"),
    case("prune-prune-every-with-mvp", lambda f, o: prune(f, o, "--prune-every", 3, method="mvp"),
         "--prune-every applies to --method ifp only"),
    case("prune-similarity", lambda f, o: prune(f, o, "--similarity", "cosine", method="mvp"),
         "invalid choice: 'cosine'", USAGE),
    case("prune-bank-missing", lambda f, o: prune(f, o, method="mvp", bank_file=f.root / "none.sqlite"),
         "no bank file at"),
    case("prune-bank-is-a-folder", lambda f, o: prune(f, o, method="mvp", bank_file=f.folder),
         "is a folder, not a file", USAGE),
    case("prune-bank-random-bytes", lambda f, o: prune(f, o, method="mvp", bank_file=f.random),
         "is damaged or is not a metaprune bank"),
    case("prune-bank-empty-file", lambda f, o: prune(f, o, method="mvp", bank_file=f.empty),
         "is not a metaprune bank"),
    case("prune-bank-truncated", lambda f, o: prune(f, o, method="mvp", bank_file=f.truncated_bank),
         "is damaged or is not a metaprune bank"),
    case("prune-bank-is-a-backbone", lambda f, o: prune(f, o, method="mvp", bank_file=f.backbone),
         "is damaged or is not a metaprune bank"),
    case("prune-backbone-missing", lambda f, o: prune(f, o, backbone=f.root / "none.safetensors"),
         "no backbone file at"),
    case("prune-backbone-is-a-folder", lambda f, o: prune(f, o, backbone=f.folder), "is a folder", USAGE),
    case("prune-backbone-random-bytes", lambda f, o: prune(f, o, backbone=f.random),
         "is not a readable safetensors backbone file"),
    case("prune-backbone-truncated", lambda f, o: prune(f, o, backbone=f.truncated_backbone),
         "is not a readable safetensors backbone file"),
    case("prune-backbone-is-a-pruned-network", lambda f, o: prune(f, o, backbone=f.pruned),
         "is not a metaprune backbone file"),
    case("prune-backbone-is-a-bank", lambda f, o: prune(f, o, backbone=f.bank),
         "is not a readable safetensors backbone file"),
    case("prune-bank-of-another-backbone", lambda f, o: prune(f, o, "--backbone", f.other, method="mvp"),
         "is not the backbone of the bank"),
    case("prune-n-neighbors-beyond-the-bank", lambda f, o: prune(f, o, "--n-neighbors", 9, method="mvp"),
         "n_neighbors=9 but only 2 bank tasks may vote"),
    case("prune-n-neighbors-0", lambda f, o: prune(f, o, "--n-neighbors", 0, method="mvp"),
         "positive", USAGE),
    case("prune-one-class", lambda f, o: prune(f, o, "--classes", "3", method="ifp"), "at least two classes"),
    case("prune-unknown-class", lambda f, o: prune(f, o, "--classes", "3,cat"), "unknown class 'cat'"),
    case("prune-class-id-out-of-range", lambda f, o: prune(f, o, "--classes", "3,99"), "unknown class '99'"),
    case("prune-no-class", lambda f, o: prune(f, o, "--classes", ","), "no class given in ','"),
    case("prune-pruning-ratio-above-1", lambda f, o: prune(f, o, "--pruning-ratio", 1.5), "(0, 1)", USAGE),
    case("prune-pruning-ratio-text", lambda f, o: prune(f, o, "--pruning-ratio", "x"),
         "invalid float", USAGE),
    case("prune-test-fraction-1", lambda f, o: prune(f, o, "--test-fraction", 1), "must be in [0, 1)", USAGE),
    case("prune-test-fraction-negative", lambda f, o: prune(f, o, "--test-fraction", -0.1), "[0, 1)", USAGE),
    case("prune-test-fraction-leaves-no-training-image",
         lambda f, o: prune(f, o, "--classes", "0,1", "--test-fraction", 0.999),
         "without a training or held-out image"),
    case("prune-iterations-negative", lambda f, o: prune(f, o, "--iterations", -1), "non-negative", USAGE),
    case("prune-ifp-iterations-0", lambda f, o: prune(f, o, "--iterations", 0, method="ifp"),
         "n_iterations must be an int >= 1, got 0"),
    case("prune-lr-0", lambda f, o: prune(f, o, "--lr", 0), "positive and finite", USAGE),
    case("prune-batch-size-0", lambda f, o: prune(f, o, "--batch-size", 0), "positive integer", USAGE),
    case("prune-prune-every-0", lambda f, o: prune(f, o, "--prune-every", 0, method="ifp"),
         "positive", USAGE),
    case("prune-gray-images-for-an-rgb-backbone", lambda f, o: prune(f, o, backbone=f.rgb),
         "the images have 1 channel(s) but the backbone"),
    case("prune-rgb-images-for-a-gray-backbone", lambda f, o: prune(f, o, data=f.rgb_npz),
         "backbone.safetensors expects 1"),
    case("prune-mvp-images-of-other-channels-than-the-bank",
         lambda f, o: prune(f, o, method="mvp", data=f.rgb_npz),
         "bank.sqlite expects images of shape (1, 8, 8)"),
    case("prune-mvp-images-of-another-size-than-the-bank",
         lambda f, o: prune(f, o, "--backbone", f.backbone, method="mvp", data=f.big_npz),
         "the images have shape (1, 16, 16) (C, H, W) but the bank"),
    case("prune-damaged-stored-normalisation", lambda f, o: prune(f, o, backbone=f.bad_mean),
         "the stored normalisation 'mean' must be a number or a list of numbers"),
    case("prune-stored-normalisation-of-other-channels", lambda f, o: prune(f, o, backbone=f.rgb_mean),
         "rgb-mean.safetensors does not fit the images"),
    case("prune-out-is-a-folder", lambda f, o: prune(f, o, "--out", f.folder), "is a folder", USAGE),
    case("prune-out-under-a-file", lambda f, o: prune(f, o, "--out", f.text / "p.safetensors"),
         "notes.txt is a file, not a folder", USAGE),
    case("prune-out-is-the-backbone", lambda f, o: prune(f, o, "--out", f.backbone),
         "would overwrite the backbone"),
    case("prune-out-is-the-bank", lambda f, o: prune(f, o, "--out", f.bank, method="mvp"),
         "would overwrite the bank"),
    case("prune-seed-too-large", lambda f, o: prune(f, o, "--seed", 2**32), "0..4294967295", USAGE),
    case("prune-device-cuda", lambda f, o: prune(f, o, "--device", "cuda"), "no cuda device", USAGE,
         marks=NO_CUDA),
    case("prune-device-nonsense", lambda f, o: prune(f, o, "--device", "nonsense"), "unknown device", USAGE),
    case("prune-threads-text", lambda f, o: prune(f, o, "--threads", "x"), "'auto' or a positive int", USAGE),
    case("prune-unknown-option", lambda f, o: prune(f, o, "--bogus"),
         "unrecognized arguments: --bogus", USAGE),
    # ---- evaluate
    case("evaluate-no-model", lambda f, o: ["evaluate", *D], "the following arguments are required: model",
         USAGE),
    case("evaluate-no-data", lambda f, o: ["evaluate", f.pruned],
         "the following arguments are required: --data",
         USAGE),
    case("evaluate-model-missing", lambda f, o: evaluate(f, o, model=f.root / "none.safetensors"),
         "no pruned-network file at"),
    case("evaluate-model-is-a-folder", lambda f, o: evaluate(f, o, model=f.folder), "is a folder", USAGE),
    case("evaluate-model-random-bytes", lambda f, o: evaluate(f, o, model=f.random),
         "is not a readable safetensors pruned-network file"),
    case("evaluate-model-truncated", lambda f, o: evaluate(f, o, model=f.truncated_pruned),
         "is not a readable safetensors pruned-network file"),
    case("evaluate-model-is-a-backbone", lambda f, o: evaluate(f, o, model=f.backbone),
         "is not a metaprune pruned-network file (format='metaprune.backbone')"),
    case("evaluate-model-is-a-bank", lambda f, o: evaluate(f, o, model=f.bank),
         "is not a readable safetensors pruned-network file"),
    case("evaluate-classes-not-predicted", lambda f, o: evaluate(f, o, "--classes", "2,3"),
         "the network does not predict class(es) [2, 3]"),
    case("evaluate-unknown-class", lambda f, o: evaluate(f, o, "--classes", "cat"), "unknown class 'cat'"),
    case("evaluate-held-out-with-classes", lambda f, o: evaluate(f, o, "--classes", "1", "--held-out"),
         "leave out the classes"),
    case("evaluate-held-out-without-one", lambda f, o: evaluate(f, o, "--held-out", model=f.no_holdout),
         "was pruned without a held-out part"),
    case("evaluate-held-out-damaged-seed", lambda f, o: evaluate(f, o, "--held-out", model=f.bad_seed),
         "the stored seed [1] is not an integer"),
    case("evaluate-held-out-damaged-fraction",
         lambda f, o: evaluate(f, o, "--held-out", model=f.bad_fraction),
         "the stored test_fraction abc is not a number in (0, 1)"),
    case("evaluate-damaged-stored-normalisation", lambda f, o: evaluate(f, o, model=f.bad_stats),
         "bad-stats.safetensors does not fit the images"),
    case("evaluate-images-of-other-channels", lambda f, o: evaluate(f, o, data=f.rgb_npz),
         "pruned.safetensors expects 1"),
    case("evaluate-images-of-another-size", lambda f, o: evaluate(f, o, data=f.big_npz),
         "pruned.safetensors was pruned on (1, 8, 8)"),
    case("evaluate-other-class-ids", lambda f, o: evaluate(f, o, data=f.two_class_npz),
         "the network predicts class ids [1, 4, 7] but the data has ids 0..1"),
    case("evaluate-other-class-names", lambda f, o: evaluate(f, o, data=f.renamed_npz),
         "is this the data it was pruned on?"),
    case("evaluate-split-test-of-digits", lambda f, o: evaluate(f, o, "--split", "test"), "single split"),
    case("evaluate-image-size-of-digits", lambda f, o: evaluate(f, o, "--image-size", 4),
         "image folders only"),
    case("evaluate-device-cuda", lambda f, o: evaluate(f, o, "--device", "cuda"), "no cuda device", USAGE,
         marks=NO_CUDA),
    case("evaluate-threads-0", lambda f, o: evaluate(f, o, "--threads", 0),
         "'auto' or a positive int", USAGE),
    case("evaluate-unknown-option", lambda f, o: evaluate(f, o, "--bogus"), "unrecognized arguments", USAGE),
    # ---- export
    case("export-no-out", lambda f, o: ["export", f.pruned], "the following arguments are required: --out",
         USAGE),
    case("export-no-model", lambda f, o: ["export", "--out", o / "m.pt"],
         "the following arguments are required: model", USAGE),
    case("export-format", lambda f, o: export(f, o, "--format", "tflite"), "invalid choice: 'tflite'", USAGE),
    case("export-model-missing", lambda f, o: export(f, o, model=f.root / "none.safetensors"),
         "no pruned-network file at"),
    case("export-model-is-a-folder", lambda f, o: export(f, o, model=f.folder), "is a folder", USAGE),
    case("export-model-random-bytes", lambda f, o: export(f, o, model=f.random),
         "is not a readable safetensors pruned-network file"),
    case("export-model-truncated", lambda f, o: export(f, o, model=f.truncated_pruned),
         "is not a readable safetensors pruned-network file"),
    case("export-model-is-a-backbone", lambda f, o: export(f, o, model=f.backbone),
         "is not a metaprune pruned-network file"),
    case("export-model-is-a-bank", lambda f, o: export(f, o, model=f.bank), "is not a readable safetensors"),
    case("export-torchscript-out-is-a-folder", lambda f, o: export(f, o, "--out", f.folder), "is a folder",
         USAGE),
    case("export-onnx-out-is-a-folder", lambda f, o: export(f, o, "--out", f.folder, "--format", "onnx"),
         "is a folder", USAGE),
    case("export-out-under-a-file", lambda f, o: export(f, o, "--out", f.text / "m.pt"),
         "notes.txt is a file, not a folder", USAGE),
    case("export-out-is-the-model", lambda f, o: export(f, o, "--out", f.pruned),
         "would overwrite the pruned network"),
    case("export-unknown-option", lambda f, o: export(f, o, "--bogus"),
         "unrecognized arguments: --bogus", USAGE),
    # ---- inspect
    case("inspect-no-path", lambda f, o: ["inspect"], "the following arguments are required: path", USAGE),
    case("inspect-missing", lambda f, o: ["inspect", f.root / "none.sqlite"], "no such file"),
    case("inspect-folder", lambda f, o: ["inspect", f.folder], "is a folder, not a file", USAGE),
    case("inspect-empty-path", lambda f, o: ["inspect", ""], "the path is empty", USAGE),
    case("inspect-random-bytes", lambda f, o: ["inspect", f.random],
         "is not a metaprune bank, pruned network or backbone file"),
    case("inspect-empty-file", lambda f, o: ["inspect", f.empty], "is not a metaprune bank"),
    case("inspect-text-file", lambda f, o: ["inspect", f.text], "is not a metaprune bank"),
    case("inspect-truncated-bank", lambda f, o: ["inspect", f.truncated_bank], "is damaged"),
    case("inspect-truncated-backbone", lambda f, o: ["inspect", f.truncated_backbone], "is not a metaprune"),
    case("inspect-truncated-pruned-network", lambda f, o: ["inspect", f.truncated_pruned],
         "is not a metaprune"),
    case("inspect-limit-negative", lambda f, o: ["inspect", f.bank, "--limit", -1], "non-negative", USAGE),
    case("inspect-limit-text", lambda f, o: ["inspect", f.bank, "--limit", "x"], "invalid int value", USAGE),
    case("inspect-two-paths", lambda f, o: ["inspect", f.bank, f.pruned], "unrecognized arguments", USAGE),
]


def _special(name, f, tmp_path, o):
    """Command lines that need a private copy of an input (the case may touch it)."""
    if name == "bank-16px":  # 16x16 images into a bank of 8x8 tasks
        copy = tmp_path / "bank-copy.sqlite"
        shutil.copy(f.bank, copy)
        return bank(f, o, bank_file=copy, data=f.big10_npz, tasks=f.tasks_16px)
    raise KeyError(name)


# ------------------------------------------------------------------------------------------------ test
@pytest.mark.parametrize("argv, phrase, kind, env", CASES)
def test_every_error_is_one_line_with_exit_status_2(argv, phrase, kind, env, files, tmp_path, capfd,
                                                    monkeypatch):
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    out_dir = tmp_path / "out"
    args = _special(argv, files, tmp_path, out_dir) if isinstance(argv, str) else argv(files, out_dir)
    args = [str(a) for a in args]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = main(args)
        except SystemExit as exc:  # argparse: usage errors
            status = exc.code
    out, err = capfd.readouterr()  # what the process writes to its file descriptors, C libraries included

    command = args[0] if args and args[0] in COMMANDS else None
    prog = f"metaprune {command}" if command else "metaprune"  # no sub-command: the top-level parser
    prefix = f"{prog}: error: "
    assert status == 2, (status, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err  # exactly one line
    assert err.startswith(prefix), err
    if kind == USAGE:
        assert err.endswith(f" (see '{prog} --help')\n"), err
    else:
        assert "(see '" not in err, err
    assert phrase in err, (phrase, err)
    assert "Traceback" not in err and out == ""
    # a real process prints a warning as more lines on stderr (deprecations are hidden there)
    shown = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning,
                                                               ResourceWarning, ImportWarning))]
    assert not shown, [str(w.message) for w in shown]
    # refused before writing anything
    written = sorted(p.name for p in out_dir.rglob("*") if p.is_file())
    assert written == [], written
