"""The work behind the ``metaprune`` sub-commands, as plain functions, importable from here as before.

Each job lives in the module of its family:

- :mod:`metaprune.cli.jobs_build` -- :func:`~metaprune.cli.jobs_build.pretrain_backbone`,
  :func:`~metaprune.cli.jobs_build.build_bank`;
- :mod:`metaprune.cli.jobs_prune` -- :func:`~metaprune.cli.jobs_prune.prune_task`,
  :func:`~metaprune.cli.jobs_prune.evaluate_pruned`,
  :func:`~metaprune.cli.jobs_prune.export_pruned`;
- :mod:`metaprune.cli.jobs_inspect` -- :func:`~metaprune.cli.jobs_inspect.describe_file`.

``default_prune_every`` is :func:`metaprune.pruners.schedule.default_prune_every`.
"""

from __future__ import annotations

from ..pruners.schedule import default_prune_every  # noqa: F401 (importable from here as before)
from .jobs_build import build_bank, pretrain_backbone
from .jobs_inspect import describe_file
from .jobs_prune import evaluate_pruned, export_pruned, prune_task

__all__ = ["pretrain_backbone", "build_bank", "prune_task", "evaluate_pruned", "export_pruned",
           "describe_file"]
