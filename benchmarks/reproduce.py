"""Reproduce the paper's study and experiments: one command, three presets.

Usage::

    python benchmarks/reproduce.py --preset smoke          # seconds: plumbing check on digits
    python benchmarks/reproduce.py --preset cpu            # CIFAR-100, width-16 checkpoints, ~2 h on 2 cores
    python benchmarks/reproduce.py --preset paper --device cuda --backbone SSL.safetensors \
        --supervised-backbone SUP.safetensors

The run is resumable: finished cells (``<results>/cells/*.json``) and bank tasks
(``<cache>/bank.sqlite``) are reused. ``--report-only`` redraws the tables and figures from
the cells already there. Results: ``<results>/results.json``, ``cells.csv``, ``summary.md``
and ``fig_*.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reproduction.presets import PRESETS, get_preset  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    parser.add_argument("--results", type=Path, help="results folder (default benchmarks/results/reproduce_<preset>)")
    parser.add_argument("--cache", type=Path, help="cache folder for the bank (default runs/reproduce_<preset>)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--backbone", help="self-supervised backbone file (default: the preset's checkpoint)")
    parser.add_argument("--supervised-backbone", help="supervised backbone file (default: the preset's checkpoint)")
    parser.add_argument("--n-jobs", type=int, help="cells run in parallel (default: the preset's)")
    parser.add_argument("--max-cells", type=int, help="run at most this many new cells per stage (a start check)")
    parser.add_argument("--report-only", action="store_true", help="only redraw the report from cached cells")
    args = parser.parse_args(argv)

    from reproduction import report, runner

    overrides = {"n_jobs": args.n_jobs} if args.n_jobs else {}
    if args.backbone:
        overrides["backbone"] = str(Path(args.backbone).resolve())
    if args.supervised_backbone:
        overrides["supervised_backbone"] = str(Path(args.supervised_backbone).resolve())
    preset = get_preset(args.preset, **overrides)
    results = args.results or HERE / "results" / f"reproduce_{preset.name}"
    cache = args.cache or HERE.parent / "runs" / f"reproduce_{preset.name}"
    if not args.report_only:
        from metaprune.runtime.interrupts import terminate_as_interrupt

        try:
            with terminate_as_interrupt():  # Ctrl-C and SIGTERM: finished cells and bank tasks are kept
                runner.run(preset, results, cache, device=args.device, max_cells=args.max_cells)
        except KeyboardInterrupt as exc:
            print(f"reproduce: interrupted ({exc or 'Ctrl-C'}); finished cells are kept in {results}, re-run "
                  f"to resume", file=sys.stderr)
            return 130
    report.write_report(results, cache)
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
