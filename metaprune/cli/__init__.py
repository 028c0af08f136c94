"""The ``metaprune`` command line.

Arguments in, work done, results out:

- :mod:`~metaprune.cli.console` -- :func:`main`, the console script: parse, run, exit status.
- :mod:`~metaprune.cli.parser` -- :func:`build_parser`: the sub-commands and their options.
- :mod:`~metaprune.cli.arguments` -- the argument types that check each option's text.
- :mod:`~metaprune.cli.commands` -- one handler per sub-command: parsed arguments to a job,
  its results printed.
- The jobs, as plain functions: :mod:`~metaprune.cli.jobs_build` (pre-train a backbone, build a
  bank), :mod:`~metaprune.cli.jobs_prune` (prune a new task, score and export the pruned
  network), :mod:`~metaprune.cli.jobs_inspect` (what a file holds); :mod:`~metaprune.cli.jobs`
  gathers them.
- What the jobs read and check: :mod:`~metaprune.cli.data_sources` (the ``--data`` argument and
  its classes), :mod:`~metaprune.cli.network_input` (normalisation statistics, images that fit a
  network), :mod:`~metaprune.cli.scoring` (held-out split, accuracy),
  :mod:`~metaprune.cli.task_files` (task lists), :mod:`~metaprune.cli.paths` (file and folder
  arguments); :mod:`~metaprune.cli.data_args` gathers them.
"""

from .parser import build_parser, main

__all__ = ["main", "build_parser"]
