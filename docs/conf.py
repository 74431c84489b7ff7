"""Sphinx configuration for the snakepit guides."""

project = "snakepit"
author = "snakepit developers"
release = "0.8.0"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_typehints = "description"
