"""Sphinx configuration of the metaprune documentation.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

Nothing here reaches the network: no intersphinx, figures are drawn from the JSON results
committed in ``benchmarks/results/``, the CLI page is generated from
:func:`metaprune.cli.parser.build_parser`.
"""

from __future__ import annotations

import doctest
import importlib
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout, installed or not
sys.path.insert(0, str(DOCS))  # _figures.py, used by the plot directives

os.environ.setdefault("MPLBACKEND", "Agg")

import metaprune  # noqa: E402

# -- project ------------------------------------------------------------------------------------
project = "metaprune"
author = "metaprune developers"
copyright = "metaprune developers"  # noqa: A001  (Sphinx's name)
release = metaprune.__version__
version = ".".join(release.split(".")[:2])

# -- extensions ---------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinxarg.ext",
    "matplotlib.sphinxext.plot_directive",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
smartquotes = False  # command lines keep their "--options" and quotes as typed
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints"]
templates_path = []

# -- MyST (Markdown pages, docs/decisions.md among them) --------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# -- autodoc / autosummary / numpydoc ------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's "Parameters" sections carry the types
autodoc_default_options = {"members": True}
autosummary_generate = False  # tables only; every object is documented on a hand-written page
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- doctest: the examples in the pages and in the docstrings run under ``-b doctest`` ---------------
doctest_global_setup = """
import os
import shutil
import tempfile

import numpy as np
import torch

torch.manual_seed(0)
_docs_cwd = os.getcwd()
_docs_tmp = tempfile.mkdtemp(prefix="metaprune-docs-")
os.chdir(_docs_tmp)  # examples write their files (banks, saved networks) into a fresh folder
try:
    import distributed  # noqa: F401
    HAVE_DISTRIBUTED = True
except ImportError:
    HAVE_DISTRIBUTED = False
try:
    import onnx  # noqa: F401
    HAVE_ONNX = True
except ImportError:
    HAVE_ONNX = False
"""
doctest_global_cleanup = """
os.chdir(_docs_cwd)
shutil.rmtree(_docs_tmp, ignore_errors=True)
"""
doctest_default_flags = (doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL | doctest.DONT_ACCEPT_TRUE_FOR_1
                         | doctest.NORMALIZE_WHITESPACE)

# -- figures (matplotlib's plot directive, drawn at build time from committed results) ----------------
plot_working_directory = str(DOCS)
plot_formats = [("png", 110)]
plot_html_show_formats = False
plot_html_show_source_link = False
plot_include_source = False
plot_rcparams = {"font.size": 9}

# -- HTML ---------------------------------------------------------------------------------------
try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:  # the build needs no theme package; furo is only nicer
    html_theme = "alabaster"
html_title = f"metaprune {release}"
html_static_path = []
html_show_sourcelink = False

# -- sections that exist only once their inputs do ---------------------------------------------------
# A page whose section depends on a file or module that may not exist yet gets that section
# appended at read time (``source-read``), so the build passes -W with or without it.
REPRODUCE_CPU = ROOT / "benchmarks" / "results" / "reproduce_cpu" / "summary.md"

_REPRODUCTION_SECTION = """

## Reproduction of the paper (CIFAR-100, cpu preset)

```{include} ../benchmarks/results/reproduce_cpu/summary.md
:heading-offset: 2
:relative-images:
```
"""


# A config value that changes when the file appears, so that an existing build re-reads every page.
metaprune_reproduce_cpu = REPRODUCE_CPU.is_file()


def _optional_sections() -> dict:
    """docname -> text appended to that page when its input exists."""
    out = {}
    if REPRODUCE_CPU.is_file():
        out["results"] = _REPRODUCTION_SECTION
    return out


def _append_optional(app, docname, source):
    extra = _optional_sections().get(docname)
    if extra:
        source[0] += extra


# -- cross-references to re-exported names ------------------------------------------------------------
# Objects are documented once, under the name users import them by (``metaprune.IterativeFilterPruner``,
# ``metaprune.bank.PrunedModelBank``...). Docstrings also name them by other public paths
# (``metaprune.pruners.IterativeFilterPruner``, ``metaprune.load_pruned``); such a reference is resolved
# through the object itself: both names import the same object, so they share one defining name.

def _defining_name(dotted: str):
    """``module.qualname`` of the object ``dotted`` imports (attributes: their owner's + name), or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        name = obj.__name__
        for attr in parts[cut:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                return None
            module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            name = f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str) \
                else f"{name}.{attr}"
        return name
    return None


def _resolve_alias(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith("metaprune."):
        return None
    domain = env.get_domain("py")
    aliases = getattr(env, "_metaprune_aliases", None)
    if aliases is None or aliases[0] != len(domain.objects):
        table = {}
        for documented in list(domain.objects):
            if documented.startswith("metaprune."):
                real = _defining_name(documented)
                if real is not None:
                    table.setdefault(real, documented)
        aliases = env._metaprune_aliases = (len(domain.objects), table)
    documented = aliases[1].get(_defining_name(target) or "")
    if documented is None or documented == target:
        return None
    return domain.resolve_xref(env, node.get("refdoc"), app.builder, node.get("reftype"), documented, node,
                               contnode)


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn adds set_{fit,score,...}_request to every estimator class (metadata routing);
    # they are documented by scikit-learn, and their docstrings point into its own docs.
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return None


def setup(app):
    app.add_config_value("metaprune_reproduce_cpu", False, "env")
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("source-read", _append_optional)
    app.connect("missing-reference", _resolve_alias)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
