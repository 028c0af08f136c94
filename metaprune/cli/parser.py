"""The ``metaprune`` command line.

Sub-commands:

- ``demo``: the README's main job on scikit-learn's digits;
- ``pretrain``: pre-train a backbone (SimCLR, SimSiam or supervised) to a file, resumably;
- ``build-bank``: prune training tasks (sampled from a data set, or from a task file) into a
  bank file with IFP, resumably and in parallel;
- ``prune``: prune a new task (MVP from a bank, IFP or uniform from a backbone) to a file;
- ``evaluate``: accuracy of a pruned network on images;
- ``export``: a pruned network as TorchScript or ONNX;
- ``inspect``: what a bank, pruned network or backbone file holds.

Every sub-command has ``--help``. Long work shows progress bars on stderr (``--quiet`` turns
them off). Errors print one line ``metaprune <command>: error: ...`` on stderr and exit with
status 2. The work itself is done by :mod:`metaprune.cli.jobs`, the data arguments are read
by :mod:`metaprune.cli.data_args`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..runtime.interrupts import terminate_as_interrupt

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _data_args(args):
    from .data_args import load_data

    return load_data(args.data, split=args.split, image_size=args.image_size)


# ------------------------------------------------------------------------------------------- handlers
def _demo(args) -> int:
    from ..demo import DemoConfig, format_table, run_demo, save_plot

    cfg = DemoConfig(width=args.width, n_bank_tasks=args.bank_tasks, n_test_tasks=args.test_tasks,
                     pretrain_epochs=args.pretrain_epochs, random_state=args.seed, n_threads=args.threads)
    result = run_demo(cfg, log=None if args.quiet else print)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_results.json").write_text(json.dumps(result, indent=2, default=float))
    table = format_table(result)
    print("\nHeld-out accuracy on new 5-way digit tasks (mean (std) over tasks):\n")
    print(table)
    if save_plot(result, out / "demo.png"):
        print(f"\nplot: {out / 'demo.png'}")
    print(f"results: {out / 'demo_results.json'}")
    return 0


def _pretrain(args) -> int:
    from .jobs import pretrain_backbone

    if args.resume and args.checkpoint is None:
        raise ValueError("--resume needs --checkpoint")
    result = pretrain_backbone(
        _data_args(args), args.out, method=args.method, width=args.width, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs, checkpoint=args.checkpoint,
        resume=args.resume, data_name=args.data, device=args.device, n_threads=args.threads,
        random_state=args.seed, verbose=0 if args.quiet else 1)
    resumed = " (resumed from the checkpoint)" if result["resumed"] else ""
    print(f"backbone {result['out']}: {result['n_params']} parameters, {result['method']} for "
          f"{result['epochs']} epochs on {result['n_images']} images{resumed}, final loss "
          f"{result['final_loss']:.4f}, {result['fit_time_s']:.1f} s")
    return 0


def _build_bank(args) -> int:
    from .jobs import build_bank

    result = build_bank(
        args.backbone, _data_args(args), args.bank, tasks_file=args.tasks, n_tasks=args.n_tasks,
        n_way=args.n_way, n_test_per_class=args.n_test_per_class, n_train_per_class=args.n_train_per_class,
        random_state=args.seed, write_tasks_to=args.write_tasks, data_name=args.data, n_jobs=args.n_jobs,
        pruning_ratio=args.pruning_ratio, n_iterations=args.iterations, prune_every=args.prune_every,
        lr=args.lr, batch_size=args.batch_size, device=args.device, n_threads=args.threads,
        progress=not args.quiet)
    others = f", {result['left_to_others']} left to another running build" if result["left_to_others"] else ""
    print(f"bank {result['bank']}: {result['added']} task(s) pruned and added, {result['already_stored']} "
          f"already stored{others}; {result['bank_size']} tasks in the bank ({result['build_time_s']:.1f} s)")
    return 0


_METHOD_ONLY = {"bank": ("--bank", "mvp"), "n_neighbors": ("--n-neighbors", "mvp"),
                "similarity": ("--similarity", "mvp"), "prune_every": ("--prune-every", "ifp")}


def _prune(args) -> int:
    from .data_args import select_classes
    from .jobs import prune_task

    for name, (option, method) in _METHOD_ONLY.items():
        if getattr(args, name) is not None and args.method != method:
            raise ValueError(f"{option} applies to --method {method} only")
    data = select_classes(_data_args(args), args.classes)
    result = prune_task(
        args.method, data, args.out, bank_path=args.bank, backbone_path=args.backbone, data_name=args.data,
        n_neighbors=args.n_neighbors, similarity=args.similarity or "classes", n_iterations=args.iterations,
        pruning_ratio=args.pruning_ratio, prune_every=args.prune_every, lr=args.lr,
        batch_size=args.batch_size, test_fraction=args.test_fraction, device=args.device,
        n_threads=args.threads, random_state=args.seed, verbose=0 if args.quiet else 1)
    names = ", ".join(result["class_names"])
    print(f"pruned network {result['out']}: {result['method']}, classes {result['classes']} ({names}), "
          f"{result['n_train']} training images, {result['n_iter']} iterations, {result['fit_time_s']:.1f} s")
    params, flops = result["n_params"], result["flops"]
    print(f"parameters {params} ({params / result['dense_params']:.1%} of the backbone's "
          f"{result['dense_params']}), FLOPs/image {flops} ({flops / result['dense_flops']:.1%} "
          f"of {result['dense_flops']})")
    if "neighbors" in result:
        print("voting bank tasks: " + ", ".join(result["neighbors"]))
    if result["test_accuracy"] is not None:
        print(f"held-out accuracy {result['test_accuracy']:.4f} on {result['n_test']} images")
    return 0


def _evaluate(args) -> int:
    from .jobs import evaluate_pruned

    report = evaluate_pruned(args.model, _data_args(args), classes=args.classes, held_out=args.held_out,
                             device=args.device, n_threads=args.threads)
    if args.json:
        print(json.dumps(report))
        return 0
    part = "held-out images" if args.held_out else "images"
    print(f"accuracy {report['accuracy']:.4f} on {report['n_images']} {part} ({report['model']}, "
          f"normalisation {report['normalisation']})")
    for name, row in report["per_class"].items():
        print(f"  {name}: {row['accuracy']:.4f} ({row['n_images']} images)")
    print(f"parameters {report['n_params']}, FLOPs/image {report['flops']}")
    return 0


def _export(args) -> int:
    from .jobs import export_pruned

    result = export_pruned(args.model, args.out, fmt=args.format)
    print(f"exported {args.model} as {result['format']} to {result['out']} ({result['bytes']} bytes)")
    return 0


def _inspect(args) -> int:
    from .jobs import describe_file

    print("\n".join(describe_file(args.path, limit=args.limit)))
    return 0


# --------------------------------------------------------------------------------------------- parser
def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
    return value


def _seed(text):
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..{2**32 - 1}, got {text}")
    return value


def _n_jobs(text):
    value = int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a positive number of jobs, or negative to count back from "
                                         "all cores (-1: all), not 0")
    return value


def _checked_path(check, text, *args):
    """``text`` when ``check(text, *args)`` passes; its ValueError as an argparse error otherwise."""
    try:
        check(text, *args)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _input_file(text):
    """A file to read: not a folder (a missing file is reported by the job, which knows its kind)."""
    from .data_args import check_input_file

    return _checked_path(check_input_file, text)


def _output_file(text):
    """A file to write: not a folder, no file among its parents (missing folders are created)."""
    from .data_args import check_output_path

    return _checked_path(check_output_path, text, "file")


def _output_folder(text):
    """A folder to write into: not a file, no file among its parents."""
    from .data_args import check_output_path

    return _checked_path(check_output_path, text, "folder")


def _checkpoint(text):
    """A pre-training checkpoint path: writable, and when it exists, a readable checkpoint."""
    from ..backbone.safetensors_reader import safetensors_format
    from ..backbone.pretrain import CHECKPOINT_FORMAT

    _output_file(text)
    path = Path(text).expanduser()
    if path.is_file() and safetensors_format(path) != CHECKPOINT_FORMAT:
        raise argparse.ArgumentTypeError(f"{text} exists but is not a readable metaprune pre-training "
                                         f"checkpoint (damaged, or another file); delete it or give another "
                                         f"path")
    return text


def _ratio(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _fraction(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _device(text):
    from ..data.checks import check_device

    try:
        check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _threads(text):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads takes 'auto' or a positive int, got {text!r}")
    return value


for _f, _name in ((_positive_int, "int"), (_non_negative_int, "int"), (_positive_float, "float"),
                  (_ratio, "float"), (_fraction, "float"), (_device, "device"),
                  (_threads, "threads"), (_seed, "int"), (_n_jobs, "int")):
    _f.__name__ = _name  # argparse names the type in its "invalid <type> value: ..." messages


def _common_parents():
    from .data_args import DATA_HELP

    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bars or progress messages")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", required=True, help=DATA_HELP)
    data.add_argument("--split", choices=("train", "test"), default="train",
                      help="split of cifar100 / fashion-mnist (default: train)")
    data.add_argument("--image-size", type=_positive_int, default=None,
                      help="resize image-folder images to this many pixels square")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", type=_device, default="cpu",
                        help="torch device, e.g. cpu, cuda, cuda:1; checked before any work (default: cpu)")
    device.add_argument("--threads", type=_threads, default="auto",
                        help="torch CPU threads: 'auto' uses the cores idle when work starts (one on a busy "
                             "machine), or a positive int (default: auto)")
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--seed", type=_seed, default=0, help="random seed (default: %(default)s)")
    return quiet, data, device, seed


def build_parser() -> argparse.ArgumentParser:
    """The ``metaprune`` argument parser, one sub-parser per sub-command."""
    parser = _Parser(prog="metaprune", description="Meta-Vote Pruning of pre-trained ResNets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.subcommands = sub.choices  # name -> sub-parser, filled by add_parser below
    quiet, data, device, seed = _common_parents()
    default = " (default: %(default)s)"

    demo = sub.add_parser("demo", parents=[quiet],
                          help="pre-train, build a bank and compare MVP / IFP / uniform on digits",
                          description="End-to-end demo on scikit-learn's digits (no download).")
    demo.add_argument("--out", type=_output_folder, default="metaprune-demo",
                      help="folder for the results and plot" + default)
    demo.add_argument("--width", type=_positive_int, default=8,
                      help="backbone width, first stage channels" + default)
    demo.add_argument("--bank-tasks", type=_positive_int, default=16,
                      help="training tasks pruned into the bank" + default)
    demo.add_argument("--test-tasks", type=_positive_int, default=3,
                      help="new tasks to compare the methods on" + default)
    demo.add_argument("--pretrain-epochs", type=_positive_int, default=30,
                      help="SimCLR epochs of the backbone" + default)
    demo.add_argument("--seed", type=_seed, default=0, help="random seed of the whole run" + default)
    demo.add_argument("--threads", type=_threads, default="auto",
                      help="torch CPU threads of the pre-training and of every fit: 'auto' uses the cores "
                           "idle when each fit starts, a positive int gives results that do not depend on "
                           "the machine's load (default: auto)")
    demo.set_defaults(func=_demo)

    pretrain = sub.add_parser(
        "pretrain", parents=[quiet, data, device, seed],
        help="pre-train a CIFAR ResNet-18 backbone (SimCLR, SimSiam or supervised) to a file",
        description="Pre-train a CIFAR-style ResNet-18 on a data set's images and save it as a backbone "
                    "file. The normalisation statistics of the images are stored in the file and used by "
                    "build-bank and prune. With --checkpoint the run is resumable (--resume).")
    pretrain.add_argument("--out", type=_output_file, required=True,
                          help="backbone file to write (.safetensors)")
    pretrain.add_argument("--method", choices=("simclr", "simsiam", "supervised"), default="simclr",
                          help="objective; supervised uses the labels" + default)
    pretrain.add_argument("--width", type=_positive_int, default=8,
                          help="channels of the first stage" + default)
    pretrain.add_argument("--epochs", type=_positive_int, default=30, help="training epochs" + default)
    pretrain.add_argument("--batch-size", type=_positive_int, default=256, help="images per step" + default)
    pretrain.add_argument("--lr", type=_positive_float, default=None,
                          help="base learning rate (default: 0.06 self-supervised, 0.1 supervised)")
    pretrain.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up epochs" + default)
    pretrain.add_argument("--checkpoint", type=_checkpoint, default=None,
                          help="resumable checkpoint file, written every epoch")
    pretrain.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    pretrain.set_defaults(func=_pretrain)

    bank = sub.add_parser(
        "build-bank", parents=[quiet, data, device, seed],
        help="prune training tasks with IFP into a bank file (resumable, parallel)",
        description="Prune many training tasks with iterative filter pruning into a bank file. Tasks come "
                    "from a task file (--tasks) or are sampled from the data (--n-tasks, same seed = same "
                    "tasks). Tasks already in the bank are skipped, so a build is resumable: re-running an "
                    "interrupted build finishes it, a larger --n-tasks extends it.")
    bank.add_argument("--backbone", type=_input_file, required=True,
                      help="backbone file (from metaprune pretrain)")
    bank.add_argument("--bank", type=_output_file, required=True,
                      help="bank file to create or complete (.sqlite)")
    source = bank.add_mutually_exclusive_group(required=True)
    source.add_argument("--n-tasks", type=_positive_int, help="number of tasks to sample")
    source.add_argument("--tasks", type=_input_file, help="JSON task file (as written by --write-tasks)")
    bank.add_argument("--n-way", type=_positive_int, default=5, help="classes per sampled task" + default)
    bank.add_argument("--n-test-per-class", type=_non_negative_int, default=100,
                      help="held-out images per class, for each task's test accuracy" + default)
    bank.add_argument("--n-train-per-class", type=_positive_int, default=None,
                      help="training images per class of a task (default: all the rest)")
    bank.add_argument("--write-tasks", type=_output_file, default=None,
                      help="write the task list to this JSON file")
    bank.add_argument("--n-jobs", type=_n_jobs, default=None, help="parallel jobs (joblib; -1: all cores)")
    bank.add_argument("--pruning-ratio", type=_ratio, default=0.9,
                      help="fraction of channels removed" + default)
    bank.add_argument("--iterations", type=_positive_int, default=200,
                      help="IFP iterations per task" + default)
    bank.add_argument("--prune-every", type=_positive_int, default=None,
                      help="iterations between pruning events (default: 30%% of --iterations)")
    bank.add_argument("--lr", type=_positive_float, default=1e-4, help="learning rate" + default)
    bank.add_argument("--batch-size", type=_positive_int, default=128, help="images per step" + default)
    bank.set_defaults(func=_build_bank)

    prune = sub.add_parser(
        "prune", parents=[quiet, data, device, seed],
        help="prune a new task (MVP, IFP or uniform) to a pruned network file",
        description="Prune the backbone for one new task: the images of --data (or of its --classes). MVP "
                    "votes with the most similar tasks of --bank; IFP and uniform start from --backbone. "
                    "Prints the sizes and, with --test-fraction, the held-out accuracy.")
    prune.add_argument("--method", choices=("mvp", "ifp", "uniform"), required=True, help="pruning method")
    prune.add_argument("--out", type=_output_file, required=True,
                       help="pruned network file to write (.safetensors)")
    prune.add_argument("--classes", default=None,
                       help="comma-separated class names or ids of the task, e.g. 3,7,9 (default: all)")
    prune.add_argument("--bank", type=_input_file, default=None, help="bank file (mvp)")
    prune.add_argument("--backbone", type=_input_file, default=None,
                       help="backbone file (ifp, uniform; for mvp optional: its normalisation statistics)")
    prune.add_argument("--n-neighbors", type=_positive_int, default=None,
                       help="voting bank tasks (mvp; default: min(10, bank size))")
    prune.add_argument("--similarity", choices=("classes", "prototypes"), default=None,
                       help="task similarity for mvp: shared classes or prototypes (default: classes)")
    prune.add_argument("--iterations", type=_non_negative_int, default=None,
                       help="SGD iterations (default: 100, ifp 200)")
    prune.add_argument("--pruning-ratio", type=_ratio, default=None,
                       help="fraction of channels removed (default: 0.9; mvp: that of its neighbours)")
    prune.add_argument("--prune-every", type=_positive_int, default=None,
                       help="iterations between pruning events (ifp; default: 30%% of --iterations)")
    prune.add_argument("--lr", type=_positive_float, default=None,
                       help="learning rate (default: 3e-4, ifp 1e-4)")
    prune.add_argument("--batch-size", type=_positive_int, default=128, help="images per step" + default)
    prune.add_argument("--test-fraction", type=_fraction, default=0.0,
                       help="fraction of each class held out and scored (default: %(default)s, none)")
    prune.set_defaults(func=_prune)

    evaluate = sub.add_parser(
        "evaluate", parents=[quiet, data, device],
        help="accuracy of a pruned network on images",
        description="Score a pruned network on the images of its classes in --data, normalised as when it "
                    "was pruned. Prints the accuracy and the accuracy per class.")
    evaluate.add_argument("model", type=_input_file, help="pruned network file (from metaprune prune)")
    evaluate.add_argument("--classes", default=None, help="score only these classes (names or ids)")
    evaluate.add_argument("--held-out", action="store_true",
                          help="score only the images prune --test-fraction held out (same --data)")
    evaluate.add_argument("--json", action="store_true", help="print the results as one JSON object")
    evaluate.set_defaults(func=_evaluate)

    export = sub.add_parser("export", parents=[quiet],
                            help="export a pruned network as TorchScript or ONNX",
                            description="Write a pruned network as a TorchScript or ONNX file for "
                                        "deployment.")
    export.add_argument("model", type=_input_file, help="pruned network file (from metaprune prune)")
    export.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript",
                        help="output format" + default)
    export.add_argument("--out", type=_output_file, required=True, help="file to write (.pt or .onnx)")
    export.set_defaults(func=_export)

    inspect = sub.add_parser("inspect", parents=[quiet],
                             help="show what a bank, pruned network or backbone file holds",
                             description="Show a file's contents: a bank's tasks, classes, kept channels, "
                                         "sizes and FLOPs; a pruned network's classes, sizes, FLOPs and "
                                         "metadata; a backbone's groups and metadata.")
    inspect.add_argument("path", type=_input_file,
                         help="a .sqlite bank, or a .safetensors pruned network / backbone")
    inspect.add_argument("--limit", type=_non_negative_int, default=20,
                         help="bank tasks listed, 0 for all" + default)
    inspect.set_defaults(func=_inspect)
    return parser


def _command_parser(parser, command):
    """The sub-parser of ``command`` (``parser`` itself when there is none)."""
    return parser.subcommands.get(command, parser)


def main(argv=None) -> int:
    """Entry point of the ``metaprune`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on a usage or input error (one line on stderr), 130
        when interrupted by Ctrl-C or SIGTERM (what finished is kept: bank tasks, the last
        pre-training checkpoint; nothing half-trained is written).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse blames the top-level parser; name the sub-command (and its --help) instead
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with terminate_as_interrupt():  # SIGTERM (kill, a scheduler's limit) stops a job as Ctrl-C does
            return args.func(args)
    except KeyboardInterrupt as exc:
        why = f" ({exc})" if str(exc) else ""
        print(f"metaprune {args.command}: interrupted{why}; finished results are kept", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as exc:  # FileNotFoundError is an OSError
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"metaprune {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
