"""The package's shape, as ARCHITECTURE.md describes it: the paper's modules in `distil_utils/`,
tooling in `distil_utils/tools/`, which the paper's modules never import; each module with a
docstring saying what it holds; no module named like one of the standard library's. Size is
not checked: a module holds one idea whatever its length (the line cap of issue 16 made ideas
split across files that import each other; issue 23)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "distil_utils"
PAPER_MODULES = sorted(PACKAGE.glob("*.py"))
TOOL_MODULES = sorted((PACKAGE / "tools").glob("*.py"))


def _imports(path: Path) -> list[str]:
    """Every module `path` imports, absolute (`distil_utils.x.y`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = "distil_utils" if path.parent == PACKAGE else "distil_utils.tools"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                mod = f"{base}.{node.module}" if node.module else base
                found += [mod] if node.module else [f"{base}.{a.name}" for a in node.names]
            else:
                found.append(node.module or "")
    return found


@pytest.mark.parametrize("path", PAPER_MODULES, ids=lambda p: p.name)
def test_paper_modules_never_import_the_tooling(path):
    bad = [m for m in _imports(path) if m == "distil_utils.tools"
           or m.startswith("distil_utils.tools.")]
    assert not bad, f"{path.name} imports tooling {bad}; tools may use the paper, not the reverse"


@pytest.mark.parametrize("path", PAPER_MODULES + TOOL_MODULES,
                         ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_modules_say_what_they_hold(path):
    text = path.read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(text)), f"{path.name} has no module docstring"


def test_no_module_shadows_the_standard_library():
    names = {p.stem for p in PAPER_MODULES + TOOL_MODULES} - {"__init__"}
    assert not names & set(sys.stdlib_module_names)


def test_entry_points_resolve():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "distil-reproduce" in scripts
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
