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

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated"]  # _generated is included into other pages

# pydata-sphinx-theme, as NumPy, pandas and scikit-learn use: their readers know its layout, and
# numpydoc's API pages look as they do there. Everything it needs is bundled (no fonts or scripts
# from the internet), so an offline build is complete.
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_css_files = ["batchup.css"]
html_theme_options = {
    # A version label, not the version switcher: the switcher reads a JSON file from a server,
    # which an offline build (and a copy of the HTML opened from disk) cannot rely on.
    "navbar_start": ["navbar-logo", "version-label"],
    "logo": {"text": "batchup"},
    "navbar_end": ["theme-switcher"],
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": [], "benchmarks": [], "changes": []}  # single pages need no section nav
nitpicky = False
suppress_warnings = ["ref.python"]
