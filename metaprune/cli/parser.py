"""The ``metaprune`` argument parser: its sub-commands and their options.

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
status 2. The options' values are checked by :mod:`metaprune.cli.arguments`, each sub-command
is run by its handler in :mod:`metaprune.cli.commands`, and :func:`main` (from
:mod:`metaprune.cli.console`, importable from here too) runs a command line.
"""

from __future__ import annotations

import argparse
import sys

from ..pruners import IterativeFilterPruner, MetaVotePruner, UniformPruner
from ..pruners.params import constructor_defaults
from . import arguments as arg
from . import commands
from .console import main

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _common_parents():
    """The options several sub-commands share, as parent parsers: quiet, data, device, seed."""
    from .data_sources import DATA_HELP

    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bars or progress messages")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", required=True, help=DATA_HELP)
    data.add_argument("--split", choices=("train", "test"), default="train",
                      help="split of cifar100 / fashion-mnist (default: train)")
    data.add_argument("--image-size", type=arg.positive_int, default=None,
                      help="resize image-folder images to this many pixels square")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", type=arg.device, default="cpu",
                        help="torch device, e.g. cpu, cuda, cuda:1; checked before any work (default: cpu)")
    device.add_argument("--threads", type=arg.threads, default="auto",
                        help="torch CPU threads: 'auto' uses the cores idle when work starts (one on a busy "
                             "machine), or a positive int (default: auto)")
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--seed", type=arg.seed, default=0, help="random seed (default: %(default)s)")
    return quiet, data, device, seed


def build_parser() -> argparse.ArgumentParser:
    """The ``metaprune`` argument parser, one sub-parser per sub-command."""
    parser = _Parser(prog="metaprune", description="Meta-Vote Pruning of pre-trained ResNets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.subcommands = sub.choices  # name -> sub-parser, filled by add_parser below
    quiet, data, device, seed = _common_parents()
    default = " (default: %(default)s)"
    ifp, mvp, uniform = (constructor_defaults(cls) for cls in (IterativeFilterPruner, MetaVotePruner, UniformPruner))

    demo = sub.add_parser("demo", parents=[quiet],
                          help="pre-train, build a bank and compare MVP / IFP / uniform on digits",
                          description="End-to-end demo on scikit-learn's digits (no download).")
    demo.add_argument("--out", type=arg.output_folder, default="metaprune-demo",
                      help="folder for the results and plot" + default)
    demo.add_argument("--width", type=arg.positive_int, default=8,
                      help="backbone width, first stage channels" + default)
    demo.add_argument("--bank-tasks", type=arg.positive_int, default=16,
                      help="training tasks pruned into the bank" + default)
    demo.add_argument("--test-tasks", type=arg.positive_int, default=3,
                      help="new tasks to compare the methods on" + default)
    demo.add_argument("--pretrain-epochs", type=arg.positive_int, default=30,
                      help="SimCLR epochs of the backbone" + default)
    demo.add_argument("--seed", type=arg.seed, default=0, help="random seed of the whole run" + default)
    demo.add_argument("--threads", type=arg.threads, default="auto",
                      help="torch CPU threads of the pre-training and of every fit: 'auto' uses the cores "
                           "idle when each fit starts, a positive int gives results that do not depend on "
                           "the machine's load (default: auto)")
    demo.set_defaults(func=commands.demo_command)

    pretrain = sub.add_parser(
        "pretrain", parents=[quiet, data, device, seed],
        help="pre-train a CIFAR ResNet-18 backbone (SimCLR, SimSiam or supervised) to a file",
        description="Pre-train a CIFAR-style ResNet-18 on a data set's images and save it as a backbone "
                    "file. The normalisation statistics of the images are stored in the file and used by "
                    "build-bank and prune. With --checkpoint the run is resumable (--resume).")
    pretrain.add_argument("--out", type=arg.output_file, required=True,
                          help="backbone file to write (.safetensors)")
    pretrain.add_argument("--method", choices=("simclr", "simsiam", "supervised"), default="simclr",
                          help="objective; supervised uses the labels" + default)
    pretrain.add_argument("--width", type=arg.positive_int, default=8,
                          help="channels of the first stage" + default)
    pretrain.add_argument("--epochs", type=arg.positive_int, default=30, help="training epochs" + default)
    pretrain.add_argument("--batch-size", type=arg.positive_int, default=256,
                          help="images per step" + default)
    pretrain.add_argument("--lr", type=arg.positive_float, default=None,
                          help="base learning rate (default: 0.06 self-supervised, 0.1 supervised)")
    pretrain.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up epochs" + default)
    pretrain.add_argument("--checkpoint", type=arg.checkpoint, default=None,
                          help="resumable checkpoint file, written every epoch")
    pretrain.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    pretrain.set_defaults(func=commands.pretrain_command)

    bank = sub.add_parser(
        "build-bank", parents=[quiet, data, device, seed],
        help="prune training tasks with IFP into a bank file (resumable, parallel)",
        description="Prune many training tasks with iterative filter pruning into a bank file. Tasks come "
                    "from a task file (--tasks) or are sampled from the data (--n-tasks, same seed = same "
                    "tasks). Tasks already in the bank are skipped, so a build is resumable: re-running an "
                    "interrupted build finishes it, a larger --n-tasks extends it.")
    bank.add_argument("--backbone", type=arg.input_file, required=True,
                      help="backbone file (from metaprune pretrain)")
    bank.add_argument("--bank", type=arg.output_file, required=True,
                      help="bank file to create or complete (.sqlite)")
    source = bank.add_mutually_exclusive_group(required=True)
    source.add_argument("--n-tasks", type=arg.positive_int, help="number of tasks to sample")
    source.add_argument("--tasks", type=arg.input_file, help="JSON task file (as written by --write-tasks)")
    bank.add_argument("--n-way", type=arg.positive_int, default=5, help="classes per sampled task" + default)
    bank.add_argument("--n-test-per-class", type=arg.non_negative_int, default=100,
                      help="held-out images per class, for each task's test accuracy" + default)
    bank.add_argument("--n-train-per-class", type=arg.positive_int, default=None,
                      help="training images per class of a task (default: all the rest)")
    bank.add_argument("--write-tasks", type=arg.output_file, default=None,
                      help="write the task list to this JSON file")
    bank.add_argument("--n-jobs", type=arg.n_jobs, default=None,
                      help="parallel jobs (joblib; -1: all cores)")
    bank.add_argument("--pruning-ratio", type=arg.ratio, default=None,
                      help=f"fraction of channels removed (default: {ifp['pruning_ratio']})")
    bank.add_argument("--iterations", type=arg.positive_int, default=None,
                      help=f"IFP iterations per task (default: {ifp['n_iterations']})")
    bank.add_argument("--prune-every", type=arg.positive_int, default=None,
                      help="iterations between pruning events (default: 30%% of --iterations)")
    bank.add_argument("--lr", type=arg.positive_float, default=None,
                      help=f"learning rate (default: {ifp['lr']:g}; IterativeFilterPruner's defaults throughout)")
    bank.add_argument("--batch-size", type=arg.positive_int, default=None,
                      help=f"images per step (default: {ifp['batch_size']})")
    bank.set_defaults(func=commands.build_bank_command)

    prune = sub.add_parser(
        "prune", parents=[quiet, data, device, seed],
        help="prune a new task (MVP, IFP or uniform) to a pruned network file",
        description="Prune the backbone for one new task: the images of --data (or of its --classes). MVP "
                    "votes with the most similar tasks of --bank; IFP and uniform start from --backbone. "
                    "Prints the sizes and, with --test-fraction, the held-out accuracy.")
    prune.add_argument("--method", choices=("mvp", "ifp", "uniform"), required=True, help="pruning method")
    prune.add_argument("--out", type=arg.output_file, required=True,
                       help="pruned network file to write (.safetensors)")
    prune.add_argument("--classes", default=None,
                       help="comma-separated class names or ids of the task, e.g. 3,7,9 (default: all)")
    prune.add_argument("--bank", type=arg.input_file, default=None, help="bank file (mvp)")
    prune.add_argument("--backbone", type=arg.input_file, default=None,
                       help="backbone file (ifp, uniform; for mvp optional: its normalisation statistics)")
    prune.add_argument("--n-neighbors", type=arg.positive_int, default=None,
                       help="voting bank tasks (mvp; default: min(10, bank size))")
    prune.add_argument("--similarity", choices=("classes", "prototypes"), default=None,
                       help="task similarity for mvp: shared classes or prototypes (default: classes)")
    prune.add_argument("--iterations", type=arg.non_negative_int, default=None,
                       help=f"SGD iterations (default: mvp {mvp['n_iterations']}, uniform "
                            f"{uniform['n_iterations']}, ifp {ifp['n_iterations']})")
    prune.add_argument("--pruning-ratio", type=arg.ratio, default=None,
                       help="fraction of channels removed (default: 0.9; mvp: that of its neighbours)")
    prune.add_argument("--prune-every", type=arg.positive_int, default=None,
                       help="iterations between pruning events (ifp; default: 30%% of --iterations)")
    prune.add_argument("--lr", type=arg.positive_float, default=None,
                       help=f"learning rate (default: mvp {mvp['lr']:g}, uniform {uniform['lr']:g}, "
                            f"ifp {ifp['lr']:g}: the estimators' defaults)")
    prune.add_argument("--batch-size", type=arg.positive_int, default=None,
                       help=f"images per step (default: {ifp['batch_size']})")
    prune.add_argument("--test-fraction", type=arg.fraction, default=0.0,
                       help="fraction of each class held out and scored (default: %(default)s, none)")
    prune.set_defaults(func=commands.prune_command)

    evaluate = sub.add_parser(
        "evaluate", parents=[quiet, data, device],
        help="accuracy of a pruned network on images",
        description="Score a pruned network on the images of its classes in --data, normalised as when it "
                    "was pruned. Prints the accuracy and the accuracy per class.")
    evaluate.add_argument("model", type=arg.input_file, help="pruned network file (from metaprune prune)")
    evaluate.add_argument("--classes", default=None, help="score only these classes (names or ids)")
    evaluate.add_argument("--held-out", action="store_true",
                          help="score only the images prune --test-fraction held out (same --data)")
    evaluate.add_argument("--json", action="store_true", help="print the results as one JSON object")
    evaluate.set_defaults(func=commands.evaluate_command)

    export = sub.add_parser("export", parents=[quiet],
                            help="export a pruned network as TorchScript or ONNX",
                            description="Write a pruned network as a TorchScript or ONNX file for "
                                        "deployment.")
    export.add_argument("model", type=arg.input_file, help="pruned network file (from metaprune prune)")
    export.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript",
                        help="output format" + default)
    export.add_argument("--out", type=arg.output_file, required=True, help="file to write (.pt or .onnx)")
    export.set_defaults(func=commands.export_command)

    inspect = sub.add_parser("inspect", parents=[quiet],
                             help="show what a bank, pruned network or backbone file holds",
                             description="Show a file's contents: a bank's tasks, classes, kept channels, "
                                         "sizes and FLOPs; a pruned network's classes, sizes, FLOPs and "
                                         "metadata; a backbone's groups and metadata.")
    inspect.add_argument("path", type=arg.input_file,
                         help="a .sqlite bank, or a .safetensors pruned network / backbone")
    inspect.add_argument("--limit", type=arg.non_negative_int, default=20,
                         help="bank tasks listed, 0 for all" + default)
    inspect.set_defaults(func=commands.inspect_command)
    return parser


if __name__ == "__main__":
    sys.exit(main())
