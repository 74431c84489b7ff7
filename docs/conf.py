"""Sphinx configuration for the snakepit guides."""

import sys
from pathlib import Path

from sphinx.application import Sphinx

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
    "snakepit_refs",
]
source_suffix = {".md": "markdown"}
# _generated/ is only ever included into other pages, never a page itself.
exclude_patterns = ["_build", "_generated"]
html_theme = "alabaster"
autodoc_typehints = "description"

# `sphinx -n` (make docs): every cross-reference must resolve, except these.
# No intersphinx (the docs build offline), so the standard library's and other
# packages' types are not linkable; and a few private helper types that
# signatures name are deliberately not part of the API reference.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(collections|concurrent|os|logging|pickle|threading|random|pathlib|typing)(\..*)?",
    ),
    (r"py:.*", r"(numpy|pyarrow|torch|prometheus_client|opentelemetry)(\..*)?"),
    (r"py:class", r"(CollectorRegistry|WSGIServer|TracerProvider)"),
    # snakepit's private helpers, named in signatures and docstrings:
    (r"py:.*", r"snakepit\.(_core|pool\._options|pool\._health)\..*"),
    (r"py:.*", r"(CudaDriver|NvmlLike|Shape|_Submitter|UNSET|DEFAULT_LEVELS)"),
    (r"py:func", r"(oom_kill_count|error_kinds|read_text)"),
    # napoleon reads "Exit status 1: ..." in ExitKind's member docstrings as a type.
    (r"py:class", r"Exit status 1"),
    (r"py:mod", r"snakepit\.\w+\._\w+"),  # private modules are not pages
]

# Wider than alabaster's 940 px, so that 100-column code (the project's line
# length) fits; what is wider still scrolls (_static/custom.css).
html_theme_options = {"page_width": "1160px", "body_max_width": "none"}
html_static_path = ["_static"]
html_css_files = ["custom.css"]


def _numpy_for_annotations(app: Sphinx, obj: object, bound_method: bool) -> None:
    """Let autodoc resolve ``np.ndarray`` in signatures: snakepit's modules
    import numpy as ``np`` under ``TYPE_CHECKING`` only (a worker imports it
    on first use), so their globals lack the name autodoc evaluates."""
    namespace = getattr(obj, "__globals__", None)
    if isinstance(namespace, dict) and "TYPE_CHECKING" in namespace and "np" not in namespace:
        import numpy

        namespace["np"] = numpy


def setup(app: Sphinx) -> None:
    """Sphinx's hook for this configuration."""
    app.connect("autodoc-before-process-signature", _numpy_for_annotations)
