"""The module paths of metaprune 0.1 (``metaprune.models``, ``metaprune.tasks``...) keep working.

Each old path is an alias of the module that now does that job (``metaprune.models`` *is*
``metaprune.backbone.resnet``), imported only when asked for, so code and pickles written
against the flat layout run unchanged.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "metaprune._validation": "metaprune.data.checks",
    "metaprune.augment": "metaprune.data.augment",
    "metaprune.batches": "metaprune.data.batches",
    "metaprune.datasets": "metaprune.data.loaders",
    "metaprune.preprocessing": "metaprune.data.preprocessing",
    "metaprune.tasks": "metaprune.data.tasks",
    "metaprune.models": "metaprune.backbone.resnet",
    "metaprune._files": "metaprune.backbone.safetensors_reader",
    "metaprune.features": "metaprune.backbone.penultimate",
    "metaprune.pretrain": "metaprune.backbone.pretrain",
    "metaprune.filter_space": "metaprune.channels.filter_space",
    "metaprune.selection": "metaprune.channels.selection",
    "metaprune.surgery": "metaprune.channels.surgery",
    "metaprune.transfer": "metaprune.channels.transfer",
    "metaprune.scores": "metaprune.channels.scores",
    "metaprune.complexity": "metaprune.channels.complexity",
    "metaprune.io": "metaprune.channels.pruned_model",
    "metaprune.similarity": "metaprune.meta.similarity",
    "metaprune.voting": "metaprune.meta.voting",
    "metaprune.training": "metaprune.pruners.engine",
    "metaprune.schedule": "metaprune.pruners.schedule",
    "metaprune.head": "metaprune.pruners.linear_head",
    "metaprune.batchnorm": "metaprune.pruners.batchnorm",
    "metaprune.pruners._base": "metaprune.pruners.base",
    "metaprune.threads": "metaprune.runtime.threads",
    "metaprune.interrupts": "metaprune.runtime.interrupts",
    "metaprune._cli_jobs": "metaprune.cli.jobs",
    "metaprune._cli_data": "metaprune.cli.data_args",
}
"""Old module path -> the module that does its job now."""


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)  # the real module, registered under both names

    def exec_module(self, module):
        pass  # already executed under its own name


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(MOVED[fullname]))


def install() -> None:
    """Resolve the old module paths (idempotent)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())  # before path finders: a stale old file never wins
