"""The ``metaprune`` command line.

- :mod:`~metaprune.cli.parser` -- the argument parser, its validators, and :func:`main`.
- :mod:`~metaprune.cli.jobs` -- the work behind each command, as plain functions.
- :mod:`~metaprune.cli.data_args` -- the ``--data`` argument: data sets, task files, outputs.
"""

from .parser import build_parser, main

__all__ = ["main", "build_parser"]
