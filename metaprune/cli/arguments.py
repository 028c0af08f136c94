"""The argument types of the command line: each checks one option's text before any work starts.

Every function here is an argparse ``type``: it takes the option's text and returns its value,
or raises :class:`argparse.ArgumentTypeError` with a message that argparse shows as
``metaprune <command>: error: argument --option: <message>``. The number types carry the
``__name__`` argparse shows for a text that is not a number at all (``invalid int value:
'x'``). The paths are checked with :mod:`metaprune.cli.paths`, the devices with
:func:`metaprune.data.checks.check_device`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

__all__ = ["positive_int", "non_negative_int", "positive_float", "seed", "n_jobs", "checked_path",
           "input_file", "output_file", "output_folder", "checkpoint", "ratio", "fraction", "device",
           "threads"]


def positive_int(text):
    """An integer of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    """An integer of 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def positive_float(text):
    """A finite number above 0."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
    return value


def seed(text):
    """A random seed: an integer in 0..2**32 - 1."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..{2**32 - 1}, got {text}")
    return value


def n_jobs(text):
    """A joblib number of jobs: positive, or negative to count back from all cores; not 0."""
    value = int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a positive number of jobs, or negative to count back from "
                                         "all cores (-1: all), not 0")
    return value


def checked_path(check, text, *args):
    """``text`` when ``check(text, *args)`` passes; its ValueError as an argparse error otherwise."""
    try:
        check(text, *args)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def input_file(text):
    """A file to read: not a folder (a missing file is reported by the job, which knows its kind)."""
    from .paths import check_input_file

    return checked_path(check_input_file, text)


def output_file(text):
    """A file to write: not a folder, no file among its parents (missing folders are created)."""
    from .paths import check_output_path

    return checked_path(check_output_path, text, "file")


def output_folder(text):
    """A folder to write into: not a file, no file among its parents."""
    from .paths import check_output_path

    return checked_path(check_output_path, text, "folder")


def checkpoint(text):
    """A pre-training checkpoint path: writable, and when it exists, a readable checkpoint."""
    from ..backbone.safetensors_reader import safetensors_format
    from ..backbone.pretrain import CHECKPOINT_FORMAT

    output_file(text)
    path = Path(text).expanduser()
    if path.is_file() and safetensors_format(path) != CHECKPOINT_FORMAT:
        raise argparse.ArgumentTypeError(f"{text} exists but is not a readable metaprune pre-training "
                                         f"checkpoint (damaged, or another file); delete it or give another "
                                         f"path")
    return text


def ratio(text):
    """A number strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def fraction(text):
    """A number in [0, 1)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def device(text):
    """A torch device this machine has (:func:`metaprune.data.checks.check_device`)."""
    from ..data.checks import check_device

    try:
        check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def threads(text):
    """Torch CPU threads: ``"auto"`` or a positive integer."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads takes 'auto' or a positive int, got {text!r}")
    return value


for _f, _name in ((positive_int, "int"), (non_negative_int, "int"), (positive_float, "float"),
                  (ratio, "float"), (fraction, "float"), (device, "device"),
                  (threads, "threads"), (seed, "int"), (n_jobs, "int")):
    _f.__name__ = _name  # argparse names the type in its "invalid <type> value: ..." messages
