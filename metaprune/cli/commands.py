"""The handlers of the sub-commands: parsed arguments in, a job run, its results printed.

Each ``<command>_command(args)`` takes the :class:`argparse.Namespace` of its sub-parser
(:func:`metaprune.cli.parser.build_parser` sets it as ``args.func``), checks what the parser
cannot (options that apply to one method only), runs the job, prints its results on stdout and
returns the exit status 0. Errors are raised as ``ValueError`` or ``OSError``, which
:func:`metaprune.cli.console.main` prints as one line.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["demo_command", "pretrain_command", "build_bank_command", "prune_command", "evaluate_command",
           "export_command", "inspect_command"]


def _load_data(args):
    """The data set of ``--data``, ``--split`` and ``--image-size``."""
    from .data_sources import load_data

    return load_data(args.data, split=args.split, image_size=args.image_size)


def demo_command(args) -> int:
    """``metaprune demo``: run the demo, write its results and plot to ``--out``, print the table."""
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


def pretrain_command(args) -> int:
    """``metaprune pretrain``: pre-train a backbone to ``--out``; print its summary."""
    from .jobs_build import pretrain_backbone

    if args.resume and args.checkpoint is None:
        raise ValueError("--resume needs --checkpoint")
    result = pretrain_backbone(
        _load_data(args), args.out, method=args.method, width=args.width, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs, checkpoint=args.checkpoint,
        resume=args.resume, data_name=args.data, device=args.device, n_threads=args.threads,
        random_state=args.seed, verbose=0 if args.quiet else 1)
    resumed = " (resumed from the checkpoint)" if result["resumed"] else ""
    print(f"backbone {result['out']}: {result['n_params']} parameters, {result['method']} for "
          f"{result['epochs']} epochs on {result['n_images']} images{resumed}, final loss "
          f"{result['final_loss']:.4f}, {result['fit_time_s']:.1f} s")
    return 0


def build_bank_command(args) -> int:
    """``metaprune build-bank``: prune the tasks into ``--bank``; print what was added."""
    from .jobs_build import build_bank

    result = build_bank(
        args.backbone, _load_data(args), args.bank, tasks_file=args.tasks, n_tasks=args.n_tasks,
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


def prune_command(args) -> int:
    """``metaprune prune``: prune the task to ``--out``; print its sizes, voters and accuracy."""
    from .data_sources import select_classes
    from .jobs_prune import prune_task

    for name, (option, method) in _METHOD_ONLY.items():
        if getattr(args, name) is not None and args.method != method:
            raise ValueError(f"{option} applies to --method {method} only")
    data = select_classes(_load_data(args), args.classes)
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


def evaluate_command(args) -> int:
    """``metaprune evaluate``: print a pruned network's accuracy, overall and per class."""
    from .jobs_prune import evaluate_pruned

    report = evaluate_pruned(args.model, _load_data(args), classes=args.classes, held_out=args.held_out,
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


def export_command(args) -> int:
    """``metaprune export``: write the pruned network as TorchScript or ONNX; print the file."""
    from .jobs_prune import export_pruned

    result = export_pruned(args.model, args.out, fmt=args.format)
    print(f"exported {args.model} as {result['format']} to {result['out']} ({result['bytes']} bytes)")
    return 0


def inspect_command(args) -> int:
    """``metaprune inspect``: print what a bank, pruned network or backbone file holds."""
    from .jobs_inspect import describe_file

    print("\n".join(describe_file(args.path, limit=args.limit)))
    return 0
