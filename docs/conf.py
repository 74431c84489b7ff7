"""Sphinx configuration for the snakepit guides."""

import sys
from pathlib import Path

from snakepit._version import __version__

# docs/_ext holds local extensions: snakepit_events generates the telemetry
# event table from snakepit.telemetry.CATALOGUE into _generated/ at build time.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "snakepit"
author = "snakepit developers"
release = __version__
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "snakepit_events",
]
source_suffix = {".md": "markdown"}
# _generated/ is only ever included into other pages, never a page itself.
exclude_patterns = ["_build", "_generated"]
html_theme = "alabaster"
autodoc_typehints = "description"
