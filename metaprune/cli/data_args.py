"""Data arguments of the command line, importable from here as before: each lives in the module of its job.

- :mod:`metaprune.cli.data_sources` -- the ``--data`` argument and its ``--classes``:
  :data:`~metaprune.cli.data_sources.DATA_HELP`, :func:`~metaprune.cli.data_sources.load_data`,
  :func:`~metaprune.cli.data_sources.load_npz_images`,
  :func:`~metaprune.cli.data_sources.parse_classes`,
  :func:`~metaprune.cli.data_sources.select_classes`,
  :data:`~metaprune.cli.data_sources.MAX_CLASS_ID`;
- :mod:`metaprune.cli.network_input` -- the normalisation that travels with the networks:
  :func:`~metaprune.cli.network_input.stored_normalisation`,
  :func:`~metaprune.cli.network_input.preprocess`;
- :mod:`metaprune.cli.scoring` -- the held-out split and the accuracy:
  :func:`~metaprune.cli.scoring.holdout_split`, :func:`~metaprune.cli.scoring.stored_holdout`,
  :func:`~metaprune.cli.scoring.accuracy_report`;
- :mod:`metaprune.cli.task_files` -- task files: :func:`~metaprune.cli.task_files.read_tasks`,
  :func:`~metaprune.cli.task_files.write_tasks`;
- :mod:`metaprune.cli.paths` -- file and folder arguments:
  :func:`~metaprune.cli.paths.check_input_file`, :func:`~metaprune.cli.paths.check_output_path`,
  :func:`~metaprune.cli.paths.check_not_input`.
"""

from __future__ import annotations

from .data_sources import DATA_HELP, MAX_CLASS_ID, load_data, load_npz_images, parse_classes, select_classes
from .network_input import preprocess, stored_normalisation
from .paths import check_input_file, check_not_input, check_output_path
from .scoring import accuracy_report, holdout_split, stored_holdout
from .task_files import read_tasks, write_tasks

__all__ = ["DATA_HELP", "load_data", "load_npz_images", "parse_classes", "select_classes",
           "stored_normalisation", "preprocess", "holdout_split", "read_tasks", "write_tasks",
           "accuracy_report", "check_input_file", "check_output_path", "check_not_input", "stored_holdout",
           "MAX_CLASS_ID"]
