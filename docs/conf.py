"""Sphinx configuration for Mímir's documentation (builds offline)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import mimir

project = "Mímir"
author = "The Mímir authors"
copyright = "2026, The Mímir authors"
version = release = mimir.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

# Document only what is listed in the pages; never pull in the docstrings of the
# classes Mímir builds on (logging, python-json-logger).
# Members are listed explicitly in api.rst; no defaults that add members.
autodoc_default_options: dict[str, object] = {}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_class_signature = "mixed"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# No intersphinx: the build must not need the network.
nitpicky = False

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_theme = "furo"
html_title = f"Mímir {release}"
html_static_path: list[str] = []
