"""The entry point of the ``metaprune`` console script: :func:`main` runs one command line.

It parses the arguments with :func:`metaprune.cli.parser.build_parser`, runs the sub-command's
handler (:mod:`metaprune.cli.commands`) and turns what goes wrong into an exit status and one
line on stderr: 2 for a usage or input error, 130 for Ctrl-C or SIGTERM. The console script
(``metaprune = "metaprune.cli:main"``) and ``python -m metaprune`` call it.
"""

from __future__ import annotations

import sys

from ..runtime.interrupts import terminate_as_interrupt

__all__ = ["main"]


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
    from .parser import build_parser  # here: metaprune.cli.parser imports this module for main

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

