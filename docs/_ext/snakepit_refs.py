"""Sphinx extension: cross-references written against snakepit's private modules.

autodoc documents an object in the context of the module that defines it
(``snakepit.pool._circuit``), so a docstring's short ``:class:`CircuitOpenError```
or an annotation naming ``snakepit.pool._health.EntityStats`` finds nothing,
although the object is documented under its public name. On a
``missing-reference``, this looks the last component up among the documented
Python objects and links to the one public object of that name, if there is
exactly one. Anything else stays missing, for ``sphinx -n`` to report.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split(".")[:-1])


def resolve(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.reference | None:
    """The reference to the one documented public object named like the target."""
    if node.get("refdomain") != "py":
        return None
    target = str(node["reftarget"]).lstrip("~.")
    last = target.rsplit(".", 1)[-1]
    domain: Any = env.get_domain("py")
    found = [
        (name, obj)
        for name, obj in domain.objects.items()
        if name.rsplit(".", 1)[-1] == last and name.startswith("snakepit") and _public(name)
    ]
    if len({obj.node_id for _, obj in found}) != 1:
        return None
    name, obj = found[0]
    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``missing-reference`` handler."""
    app.connect("missing-reference", resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
