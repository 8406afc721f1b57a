"""Which code produced a result: a fingerprint of the code that computes it.

A cached result computed by other training or pruning semantics must never be served as this
code's, and that must not depend on anyone remembering to bump a constant. ``results_version``
hashes the source of a module and of every ticketlab module it imports, directly or through
others (``dependencies``), as syntax trees without docstrings (``code_shape``): reformatting, a
comment or a docstring keeps the version; any change to code the module can run changes it.
Notebooks are not package code, and the modules that only draw (``PRESENTATION_ONLY``) are left
out, so editing a lab or restyling a figure keeps every cached result. ticketlab's and PyTorch's
versions are part of it too.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import textwrap
from pathlib import Path

__all__ = ["PRESENTATION_ONLY", "code_shape", "dependencies", "results_version"]

PRESENTATION_ONLY = frozenset({"ticketlab.plots", "ticketlab.widgets"})
"""Modules that draw and display but never compute a result."""


def code_shape(source: str) -> str:
    """The syntax tree of ``source`` without docstrings, as text: formatting, comments and
    docstrings change no result, so they do not change the shape either."""
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


_ROOT = Path(__file__).resolve().parent


def _path(module: str) -> Path | None:
    """The source file of ticketlab module ``module``, found without importing anything; None for
    a name that is not a module (e.g. an imported function)."""
    folder = _ROOT.joinpath(*module.split(".")[1:])
    for candidate in (folder / "__init__.py", folder.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str, path: Path) -> set[str]:
    """The ticketlab modules ``module`` (at ``path``) names in its imports, anywhere in its code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # submodules imported by name
    return {name for name in found if name.split(".")[0] == "ticketlab"}


def dependencies(module: str) -> list[str]:
    """``module`` and every ticketlab module reachable from it through imports, sorted, without
    ``PRESENTATION_ONLY`` (names that are not modules, e.g. imported functions, drop out)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or name in PRESENTATION_ONLY:
            continue
        path = _path(name)
        if path is None:
            continue
        seen.add(name)
        todo += sorted(_imports(name, path) - seen)
    return sorted(seen)


@functools.cache
def results_version(module: str = "ticketlab.imp") -> str:
    """16 hex digits: ticketlab's and torch's versions and the code shape of ``dependencies``."""
    import torch

    import ticketlab

    digest = hashlib.sha256(f"{ticketlab.__version__};{torch.__version__}".encode())
    for name in dependencies(module):
        digest.update(name.encode())
        digest.update(code_shape(_path(name).read_text()).encode())
    return digest.hexdigest()[:16]
