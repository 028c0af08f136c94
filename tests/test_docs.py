"""The documentation builds without warnings, its code examples run, and it covers the package.

The HTML build runs with ``-W`` (every Sphinx warning is an error); the doctest build then
runs every example of the pages and of the docstrings (``>>>`` blocks) against this checkout,
reusing the HTML build's parsed documents. Both need the ``docs`` extra; without it they are
skipped. The coverage checks need nothing beyond the package.
"""

import os
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import metaprune
from metaprune.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _sphinx(builder, out, doctrees):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path}
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder, "-d", str(doctrees),
         str(DOCS), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """``(html, doctest)`` results of two builds sharing one doctree cache."""
    for name in ("sphinx", "numpydoc", "myst_parser", "sphinxarg", "matplotlib"):
        pytest.importorskip(name)
    tmp = tmp_path_factory.mktemp("docs")
    html = _sphinx("html", tmp / "html", tmp / "doctrees")
    doctest = _sphinx("doctest", tmp / "doctest", tmp / "doctrees") if html.returncode == 0 else None
    return tmp, html, doctest


def test_html_builds_without_warnings(builds):
    tmp, html, _ = builds
    assert html.returncode == 0, f"sphinx -W -b html failed:\n{html.stdout[-3000:]}\n{html.stderr[-6000:]}"
    for page in ("index", "getting-started", "concepts", "cli", "results", "decisions", "api/index",
                 "guide/mvp", "guide/dask"):
        assert (tmp / "html" / f"{page}.html").is_file(), page


def test_code_examples_run(builds):
    tmp, html, doctest = builds
    if doctest is None:
        pytest.fail(f"the HTML build failed, so the examples were not run:\n{html.stderr[-3000:]}")
    output = tmp / "doctest" / "output.txt"
    report = output.read_text() if output.is_file() else ""
    assert doctest.returncode == 0, f"sphinx -b doctest failed:\n{report[-6000:]}\n{doctest.stderr[-3000:]}"
    ran = re.search(r"^\s*(\d+) tests\s*$", report, flags=re.M)
    assert ran and int(ran.group(1)) > 100, report[-2000:]
    assert re.search(r"^\s*0 failures in tests\s*$", report, flags=re.M), report[-2000:]


def _public_modules():
    names = []
    for info in pkgutil.walk_packages(metaprune.__path__, prefix="metaprune."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def test_every_public_module_has_an_api_page():
    documented = set()
    for page in (DOCS / "api").glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: (\S+)", page.read_text(), flags=re.M))
    # the pruners' modules are documented through their package (the classes under ``metaprune``)
    expected = {m for m in _public_modules() if not m.startswith("metaprune.pruners.")}
    missing = sorted(expected - documented)
    assert not missing, f"modules without an API page in docs/api/: {missing}"


def _shell_commands(markdown: Path):
    """Command lines of the ``bash`` blocks of a Markdown page (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_documented_cli_commands_match_the_parser():
    commands = [c for page in (DOCS / "cli.md", DOCS / "getting-started.md") for c in _shell_commands(page)
                if c.startswith("metaprune ")]
    assert len(commands) >= 6
    for command in commands:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit as exc:
            pytest.fail(f"docs show a command the parser rejects (exit {exc.code}): {command}")
