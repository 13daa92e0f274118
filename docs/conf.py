"""Sphinx configuration: ``sphinx-build -W --keep-going -b html docs docs/_build/html``.

The API pages (``docs/api/``, not committed) are written here from the code by
``docs/_api_groups.py`` before sphinx reads the sources; a public name of ``optix`` that fits no
group stops the build.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # importing optix needs no accelerator

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS))

import _api_groups  # noqa: E402

import optix  # noqa: E402

_api_groups.write_pages(str(DOCS / "api"))

project = "optix"
author = "the optix authors"
copyright = "the optix authors"
release = optix.__version__
version = optix.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Docstrings: Google style (Args, Returns, Example), RST math and roles.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as a field list: the fields are also listed as members
autosummary_generate = False  # the tables link to the entries on the same page
autosummary_ignore_module_all = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
# optix's modules use postponed annotations, so its aliases can stay names in signatures.
autodoc_type_aliases = {
    **{n: f"optix.{n}" for n in ("Params", "Updates", "OptState", "ScalarOrSchedule", "Schedule")},
    **{n: f"jax.typing.{n}" for n in ("ArrayLike", "DTypeLike")},
}
autodoc_preserve_defaults = True
add_module_names = False

# Markdown pages: $...$ math, and anchors for headings so pages can link to sections.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"optix {release}"
html_static_path: list[str] = []


_FIELD_ALIAS = re.compile(r"Alias for field number \d+")


def _own_docstrings_only(app, what, name, obj, options, lines):
    """Drop text a name did not write itself: a NamedTuple field's "Alias for field number N",
    and a constant's or type alias's ``__doc__`` (``dict``'s for a registry such as
    ``WORKLOADS``, ``typing.Any``'s for ``Params``)."""
    text = "\n".join(lines).strip()
    own = getattr(obj, "__doc__", None)
    inherited = what == "data" and isinstance(own, str) and text == inspect.cleandoc(own)
    if _FIELD_ALIAS.fullmatch(text) or (text and inherited):
        lines[:] = []


def setup(app):
    app.connect("autodoc-process-docstring", _own_docstrings_only)
