"""Sphinx configuration for the batchup documentation."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import batchup  # noqa: E402

project = "batchup"
author = "The batchup developers"
copyright = "2026, The batchup developers"
release = batchup.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
]

autosummary_generate = False
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Offline builds (CI sets BATCHUP_DOCS_OFFLINE=1) cannot fetch inventories, which fails -W.
if os.environ.get("BATCHUP_DOCS_OFFLINE") == "1":
    intersphinx_mapping: dict = {}
else:
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
    }

templates_path: list = []
exclude_patterns = ["_build", "_generated"]  # _generated is included into other pages
html_theme = "alabaster"
html_static_path = ["_static"]
nitpicky = False
suppress_warnings = ["ref.python"]
