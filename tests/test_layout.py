"""The package's shape, as ARCHITECTURE.md draws it: four tiers whose imports only point down.

leaves → record-keeping → the method → presentation, then the runner (`distil_utils/tools/`)
and the harnesses beside the package (`benchmarks/`). The import graph is read from the source
(module-level and function-level imports alike): a cycle, an import that points up, or an
import of the package inside a function fails here. Every module must be placed in a tier, so a
new one cannot slip in unplaced. Size is not checked: a module holds one idea whatever its
length.
"""

from __future__ import annotations

import ast
import importlib
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "distil_utils"

LEAVES, RECORDS, METHOD, PRESENTATION, TOOLS = range(5)
TIER_NAMES = ["leaves", "record-keeping", "method", "presentation", "tools"]
# Every module of the package, by tier (ARCHITECTURE.md draws the same table).
TIERS: dict[str, int] = {
    # settings and their checks, the task registry, the paper's numbers, intervals
    **dict.fromkeys(["config", "validation", "tasks", "paper", "intervals"], LEAVES),
    # atomic files and the writer lock, stamps and provenance, checkpoints, run records,
    # results-file declarations, model cards, where inputs come from
    **dict.fromkeys(["results_io", "artefacts", "checkpoint", "ft_runs", "results_files",
                     "modelcard", "hub"], RECORDS),
    # models, corpus and masking, losses, devices, training, distillation, fine-tuning, speed
    **dict.fromkeys(["student", "teacher", "data", "masking", "losses", "fused_head", "devices",
                     "recipe", "training", "heldout", "distill", "ablation", "metrics",
                     "finetune", "squad", "downstream", "model_inputs", "speed", "flops",
                     "onnx_deploy", "deploy", "metric_modules.glue_local.glue_local",
                     "metric_modules.squad_local.squad_local"], METHOD),
    # tables and targets, readings, figures, analysis, the notebooks' helpers
    **dict.fromkeys(["summary", "readings", "figures", "analysis", "notebook", "pipeline"],
                    PRESENTATION),
    # the papermill runner and the installer: never imported by the tiers above
    **dict.fromkeys(["tools.reproduce", "tools.notebook_files", "tools.freshness",
                     "tools.setup_env", "tools.colab", "tools.readme_numbers",
                     "tools.publish"], TOOLS),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        out[".".join(path.relative_to(PACKAGE).with_suffix("").parts)] = path
    return out


MODULES = _modules()
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))


def _package_imports(path: Path) -> list[tuple[str, bool, int]]:
    """(module of the package it imports, inside a function?, line) for every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT).with_suffix("").parts
    here = list(rel[:-1])  # the importing module's package, e.g. ["distil_utils", "tools"]
    local: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local |= {id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[:len(here) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            names = [f"{mod}.{a.name}" for a in node.names] + [mod]
        else:
            continue
        for name in names:
            if not name.startswith("distil_utils.") and not name.startswith("benchmarks."):
                continue
            short = name.removeprefix("distil_utils.")
            while short and short not in MODULES and not short.startswith("benchmarks"):
                short = short.rpartition(".")[0]
            if short and short in MODULES:
                found.append((short, id(node) in local, node.lineno))
                break
    return found


GRAPH = {name: _package_imports(path) for name, path in MODULES.items()}


def test_every_module_is_placed_in_a_tier():
    assert sorted(set(MODULES) - set(TIERS)) == [], "place the new module in TIERS (and " \
        "ARCHITECTURE.md)"
    assert sorted(set(TIERS) - set(MODULES)) == [], "TIERS names modules that no longer exist"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_and_none_hides_in_a_function(name):
    tier = TIERS[name]
    for target, in_function, line in GRAPH[name]:
        assert not in_function, (f"{name}:{line} imports {target} inside a function; import "
                                 "it at the top (a cycle it hides must be resolved instead)")
        assert TIERS[target] <= tier, (f"{name} ({TIER_NAMES[tier]}) imports {target} "
                                       f"({TIER_NAMES[TIERS[target]]}): imports point down")
        assert not (TIERS[target] == PRESENTATION and tier != PRESENTATION), (
            f"{name} imports presentation ({target}): only notebooks (and other "
            "presentation modules) do")


def test_the_import_graph_has_no_cycle():
    edges = {n: {t for t, _, _ in GRAPH[n] if t != n} for n in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for n in sorted(MODULES):
        if n not in state:
            visit(n, [n])


def test_the_graph_reader_sees_what_it_must(tmp_path):
    """The checker itself: a function-local import and an upward one are both found."""
    probe = PACKAGE / "_layout_probe.py"
    probe.write_text('"""probe"""\nfrom .summary import judge\n\n\ndef f():\n'
                     '    from .config import get_config\n    return get_config\n')
    try:
        found = _package_imports(probe)
    finally:
        probe.unlink()
    assert ("summary", False, 2) in found and ("config", True, 6) in found


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_harnesses_import_the_package_at_the_top(path):
    """benchmarks/ sits beside the package and may use all of it, never inside a function."""
    hidden = [(t, line) for t, local, line in _package_imports(path) if local]
    assert not hidden, f"{path.name} imports {hidden} inside functions"


def test_the_package_never_imports_the_harnesses():
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        assert "import benchmarks" not in text and "from benchmarks" not in text, name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_say_what_they_hold(name):
    assert ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8"))), \
        f"{name} has no module docstring"


def test_no_module_shadows_the_standard_library():
    names = {n.rpartition(".")[2] for n in MODULES} | {p.stem for p in BENCHMARKS}
    assert not (names - {"__init__"}) & set(sys.stdlib_module_names)


def test_entry_points_resolve():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "distil-reproduce" in scripts
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_the_code_digests_follow_the_tiers():
    """What `artefacts` counts as the code behind a model: the makers are method modules, and
    what it leaves out (settings, records) is leaves or record-keeping, never the method."""
    from distil_utils.artefacts import LOADS, MAKERS, RECORD_ONLY

    assert {TIERS[m] for m in RECORD_ONLY} <= {LEAVES, RECORDS}
    assert {TIERS[m] for roots in MAKERS.values() for m in roots} == {METHOD}
    assert {TIERS[m] for loaded in LOADS.values() for m in loaded} == {METHOD}
