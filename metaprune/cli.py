"""The ``metaprune`` command line.

Sub-commands: ``demo`` (the README's main job on scikit-learn's digits) and ``inspect``
(what a bank file or a saved pruned network holds). Errors print one line and exit with
status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _demo(args) -> int:
    from .demo import DemoConfig, format_table, run_demo, save_plot

    cfg = DemoConfig(width=args.width, n_bank_tasks=args.bank_tasks, n_test_tasks=args.test_tasks,
                     pretrain_epochs=args.pretrain_epochs, random_state=args.seed)
    result = run_demo(cfg)
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


def _inspect(args) -> int:
    from ._files import safetensors_format

    path = Path(args.path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3"):
        from .bank import PrunedModelBank

        bank = PrunedModelBank.open(path, read_only=True)
        print(f"bank {path}: {len(bank)} tasks, labels {bank.label_kind}, backbone {bank.fingerprint[:12]}")
        print("groups: " + ", ".join(f"{g.name}={g.size}" for g in bank.filter_space))
        for task_id in bank.task_ids:
            record = bank.record(task_id)
            kept = sum(len(v) for v in record.selection.values())
            print(f"  {task_id}: classes {list(record.classes)}, {kept} channels kept, metrics "
                  + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.metrics.items()}))
        return 0
    fmt = safetensors_format(path)
    if fmt == "metaprune.pruned":
        from .complexity import count_flops, count_parameters
        from .io import load_pruned

        model = load_pruned(path)
        print(f"pruned network {path}: classes {model.classes_.tolist()}, input {model.input_shape}")
        print(f"parameters {count_parameters(model.module)}, FLOPs/image {count_flops(model.module, model.input_shape)}")
        print("kept channels: " + ", ".join(f"{g}={len(v)}" for g, v in model.selection.items()))
        return 0
    if fmt == "metaprune.backbone":
        from .complexity import count_parameters
        from .filter_space import FilterSpace
        from .models import backbone_metadata, load_backbone

        net = load_backbone(path)
        print(f"backbone {path}: {count_parameters(net)} parameters")
        print("groups: " + ", ".join(f"{g.name}={g.size}" for g in FilterSpace.from_model(net)))
        print("metadata: " + json.dumps(backbone_metadata(path)))
        return 0
    raise ValueError(f"{path} is not a metaprune bank, pruned network or backbone file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaprune", description="Meta-Vote Pruning of pre-trained ResNets.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="pre-train, build a bank and compare MVP / IFP / uniform on digits",
                          description="End-to-end demo on scikit-learn's digits (no download).")
    demo.add_argument("--out", default="metaprune-demo", help="folder for the results and plot")
    demo.add_argument("--width", type=int, default=8, help="backbone width (first stage channels)")
    demo.add_argument("--bank-tasks", type=int, default=16, help="training tasks pruned into the bank")
    demo.add_argument("--test-tasks", type=int, default=3, help="new tasks to compare the methods on")
    demo.add_argument("--pretrain-epochs", type=int, default=30, help="SimCLR epochs of the backbone")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the whole run")
    demo.set_defaults(func=_demo)

    inspect = sub.add_parser("inspect", help="show what a bank, pruned network or backbone file holds")
    inspect.add_argument("path", help="a .sqlite bank, or a .safetensors pruned network / backbone")
    inspect.set_defaults(func=_inspect)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``metaprune`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"metaprune {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
