"""The ``metaprune`` argument parser as the CLI page documents it.

sphinx-argparse renders every help and description string as reStructuredText, where the
command line's plain text (``root/class/*.png``) has other meanings. :func:`parser` returns
:func:`metaprune.cli.parser.build_parser`'s parser, built fresh at documentation time, with those
strings escaped; nothing else changes, so the page always lists the code's own options.
"""

from __future__ import annotations

import argparse
import re

from metaprune.cli.parser import build_parser

_SPECIAL = re.compile(r"([\\*`|_])")


def _escape(text):
    return text if not isinstance(text, str) else _SPECIAL.sub(r"\\\1", text)


def _escape_parser(parser: argparse.ArgumentParser, seen: set) -> None:
    """Escape every string of ``parser`` and its sub-parsers once (parent parsers share actions)."""
    if id(parser) in seen:
        return
    seen.add(id(parser))
    parser.description = _escape(parser.description)
    parser.epilog = _escape(parser.epilog)
    for action in parser._actions:
        if id(action) not in seen:
            seen.add(id(action))
            action.help = _escape(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if id(choice) not in seen:
                    seen.add(id(choice))
                    choice.help = _escape(choice.help)
            for sub in action.choices.values():
                _escape_parser(sub, seen)


def parser() -> argparse.ArgumentParser:
    """``metaprune.cli.parser.build_parser()`` with its help texts escaped for reStructuredText."""
    built = build_parser()
    _escape_parser(built, set())
    return built
