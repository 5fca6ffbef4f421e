"""The suite's notebooks as files: finding them, their `parameters` cell, keeping them
committable (no outputs, cell tags kept, the Colab cell in sync), the kernel they run in, and
naming the cell where one failed.

Tooling: `distil-reproduce --check-clean` / `--strip` call it; the paper's modules never do.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

from ..config import ROOT
from ..results_io import atomic_write
from ..validation import declared_spelling
from .colab import colab_cell_source

NOTEBOOKS = ROOT / "notebooks"
# Set by the runner, not by -p: every notebook of the suite declares both.
RUNNER_PARAMETERS = ("PROFILE", "RESULTS_DIR")
# Tags papermill leaves in an executed notebook; a source notebook must not carry them.
PAPERMILL_TAGS = ("injected-parameters", "papermill-error-cell-tag")
# Metadata `strip_outputs` removes besides outputs and counts (nbstripout's `extra_keys`):
# papermill's, and what a JupyterLab session leaves (timings, collapsed/scrolled outputs).
STRIPPED_KEYS = ("metadata.papermill", "metadata.widgets", "metadata.signature",
                 *(f"cell.metadata.{key}" for key in ("papermill", "execution", "ExecuteTime",
                                                       "collapsed", "scrolled")))
DEFAULT_KERNEL = "python3"


class SuiteError(RuntimeError):
    """A notebook of the suite failed, or the suite was called with bad arguments.

    `record` is the failed notebook's log record (None for an error before anything ran).
    """

    def __init__(self, message: str, record: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.record = record

# --- finding notebooks -------------------------------------------------------------------------

def find_notebooks(notebooks_dir: str | Path = NOTEBOOKS,
                   only: list[str] | None = None) -> list[Path]:
    """`NN_topic.ipynb` files sorted by number; `only` keeps those matching a number or name.

    `only` entries may be `03`, `3`, `03_distillation` or `03_distillation.ipynb`; one that
    matches nothing is an error (a typo must not silently run nothing).
    """
    notebooks_dir = Path(notebooks_dir)
    found = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise SuiteError(f"no NN_topic.ipynb notebooks in {notebooks_dir}; pass the folder "
                         "that holds them with --notebooks-dir")
    if not only:
        return found
    missing = [key for key in only if not any(_matches(p, key) for p in found)]
    if missing:
        raise SuiteError(f"--only {missing} matches no notebook; available: "
                         f"{[p.name for p in found]}")
    return [p for p in found if any(_matches(p, key) for key in only)]


def _matches(path: Path, key: str) -> bool:
    key = key.strip()
    if key.isdigit():
        return path.name.split("_", 1)[0] == key.zfill(2)
    return key in (path.name, path.stem)


# --- parameters ----------------------------------------------------------------------------

def _parameters_cells(nb: Any) -> list[tuple[int, Any]]:
    return [(i, c) for i, c in enumerate(nb.cells)
            if "parameters" in c.get("metadata", {}).get("tags", [])]


def parameters_cell(nb: Any, name: str = "notebook") -> tuple[int, Any]:
    """(index, cell) of the one cell tagged `parameters`; none or several is an error."""
    cells = _parameters_cells(nb)
    if len(cells) != 1:
        raise SuiteError(f"{name} must have exactly one cell tagged 'parameters' (found "
                         f"{len(cells)}): papermill injects the overrides after that cell")
    return cells[0]


def _parse_parameters(source: str, name: str) -> dict[str, Any]:
    """`NAME = literal` lines of a parameters cell, as a dict; anything else is an error."""
    try:
        body = ast.parse(source).body
    except SyntaxError as err:
        raise SuiteError(f"{name}: the parameters cell is not plain Python ({err.msg}, line "
                         f"{err.lineno})") from err
    out: dict[str, Any] = {}
    for node in body:
        target, value = _assignment(node)
        if target is None:
            raise SuiteError(f"{name}: the parameters cell may hold only `NAME = literal` "
                             f"lines; found {ast.unparse(node)!r}")
        try:
            out[target] = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError) as err:
            raise SuiteError(f"{name}: parameter {target} must be a literal (a number, string, "
                             f"None, list, ...), found {ast.unparse(value)!r}; compute derived "
                             "values in the next cell") from err
    return out


def _assignment(node: ast.stmt) -> tuple[str | None, Any]:
    """(name, value node) of `NAME = value` or `NAME: type = value`, else (None, None)."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return node.target.id, node.value
    return None, None


def declared_parameters(path: str | Path) -> dict[str, Any]:
    """Names and default values assigned in the notebook's cell tagged `parameters`."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    _, cell = parameters_cell(nb, path.name)
    return _parse_parameters(cell.source, path.name)


def spelled_as_declared(notebooks: list[Path], params: dict[str, Any]) -> dict[str, Any]:
    """`params` with each name as the notebooks declare it: `-p seed 7` is `-p SEED 7`.

    The distillation command line takes the lower-case setting names and a notebook the
    upper-case parameters; one spelling works everywhere, so case does not matter here.
    """
    declared = {n for p in find_notebooks(notebooks[0].parent) for n in declared_parameters(p)}
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = declared_spelling(key, declared)
        if name in out:
            raise SuiteError(f"-p {key} sets {name} a second time; give it once")
        out[name] = value
    return out


def check_parameters(notebooks: list[Path], params: dict[str, Any]) -> None:
    """Refuse, before anything runs, a parameter that a notebook to run does not declare."""
    declared = {p: declared_parameters(p) for p in notebooks}
    problems = [f"{p.name} does not declare parameter(s) {sorted(set(params) - set(names))}; "
                f"it declares {sorted(names)}"
                for p, names in declared.items() if set(params) - set(names)]
    if not problems:
        return
    unknown = sorted(set(params) - set.intersection(*(set(n) for n in declared.values())))
    everywhere = {p.name: declared_parameters(p) for p in find_notebooks(notebooks[0].parent)}
    for key in unknown:
        owners = [name for name, names in everywhere.items() if key in names]
        known = sorted({n for names in everywhere.values() for n in names})
        problems.append(f"{key} is declared by {owners}; run those with --only" if owners
                        else f"{key} is declared by no notebook: check the spelling; the "
                        f"notebooks' parameters are {known} (any case, e.g. -p seed 7)")
    raise SuiteError("\n".join(problems))


# --- source-notebook hygiene -----------------------------------------------------------------

def check_clean(path: str | Path, colab_cell: bool = True) -> list[str]:
    """What keeps a source notebook from being committed as is; empty when it is clean.

    Clean: no outputs or execution counts, no papermill metadata or injected cells, exactly one
    `parameters` cell of `NAME = literal` lines declaring PROFILE and RESULTS_DIR (the runner
    injects them), and, with `colab_cell`, the first code cell is `colab_cell_source()`.
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.get("outputs"):
            problems.append(f"cell {i} has outputs")
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            problems.append(f"cell {i} has an execution count")
        if "papermill" in cell.get("metadata", {}) or \
                set(PAPERMILL_TAGS) & set(cell.get("metadata", {}).get("tags", [])):
            problems.append(f"cell {i} carries papermill metadata or tags")
    if "papermill" in nb.metadata:
        problems.append("the notebook metadata carries a papermill block")
    try:
        declared = _parse_parameters(parameters_cell(nb, path.name)[1].source, path.name)
        missing = [p for p in RUNNER_PARAMETERS if p not in declared]
        if missing:
            problems.append(f"the parameters cell does not declare {missing}")
        if declared.get("PROFILE") is not None:  # an edit saved in JupyterLab, most likely
            problems.append(f"the parameters cell sets PROFILE = {declared['PROFILE']!r}: keep "
                            "None in the tracked notebook and choose the profile with "
                            f"DISTIL_PROFILE={declared['PROFILE']} (or the runner's --profile)")
    except SuiteError as err:
        problems.append(str(err))
    code = [c for c in nb.cells if c.cell_type == "code"]
    if colab_cell and (not code or code[0].source != colab_cell_source()):
        problems.append("the first code cell is not distil_utils.tools.colab.colab_cell_source() "
                        "(--strip rewrites it)")
    return [f"{path.name}: {p}" for p in problems]


def strip_outputs(path: str | Path) -> bool:
    """Remove outputs, execution counts and papermill leftovers in place; True if it changed.

    Cell ids and tags are kept (the `parameters` tag is what papermill needs). Written
    atomically, and only when something changed, so a clean notebook keeps its bytes and its
    timestamp.
    """
    import nbformat
    from nbstripout import strip_output

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = json.dumps(nb, sort_keys=True)
    # nbstripout does it (by hand before), ids kept as the pre-commit hook's --keep-id does (and,
    # its convention, the outputs of a cell tagged `keep_output`: no notebook of the suite has
    # one); one tag per call: nbstripout 0.9 drops the cells of only the last of several tags
    for tag in PAPERMILL_TAGS:
        strip_output(nb, keep_output=False, keep_count=False, keep_id=True,
                     extra_keys=list(STRIPPED_KEYS), drop_tagged_cells=[tag],
                     strip_init_cells=True)
    if json.dumps(nb, sort_keys=True) == before:
        return False
    _write_notebook(path, nb)
    return True


def sync_colab_cell(path: str | Path) -> bool:
    """Make the first code cell `colab_cell_source()` if it is a Colab cell; True if changed."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or "google.colab" not in code[0].source or code[0].source == colab_cell_source():
        return False
    code[0].source = colab_cell_source()
    _write_notebook(path, nb)
    return True


def _write_notebook(path: Path, nb: Any) -> None:
    import nbformat

    atomic_write(path, lambda tmp: nbformat.write(nb, str(tmp)))


# --- kernel --------------------------------------------------------------------------------

def default_kernel(name: str = DEFAULT_KERNEL) -> str | None:
    """`name` if that kernelspec is installed, else None (papermill then uses the notebook's).

    Warns when the kernelspec starts another interpreter than this one: the notebooks would
    then import whatever that interpreter has installed.
    """
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return None
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        print(f"[reproduce] no Jupyter kernel {name!r}; using each notebook's kernelspec "
              f"(install one with: {sys.executable} -m ipykernel install --user --name {name})",
              file=sys.stderr)
        return None
    exe = spec.argv[0] if spec.argv else ""
    major, minor = sys.version_info[:2]
    ours = {"python", f"python{major}", f"python{major}.{minor}"}  # jupyter_client's rewrite
    if exe not in ours and Path(exe).resolve() != Path(sys.executable).resolve():
        print(f"[reproduce] warning: kernel {name!r} runs {exe}, not this interpreter "
              f"({sys.executable}); fix with: {sys.executable} -m ipykernel install --user "
              f"--name {name}", file=sys.stderr)
    return name


# --- naming the cell that failed ------------------------------------------------------------

def _describe_failure(err: BaseException, source: Path,
                      executed: Path) -> tuple[int | None, str, str]:
    """(source cell index, its first line, message naming notebook, cell and error)."""
    if hasattr(err, "cell_index"):  # papermill.PapermillExecutionError
        cell, first = _source_index(source, err.cell_index), _first_line(err.source)
        where = f"cell {cell} (In [{err.exec_count}] of the executed copy) «{first}»"
        what = f"{err.ename}: {err.evalue}"
    else:  # the kernel died, a cell timed out, Ctrl-C, the kernel did not start...
        cell, first = _last_started_cell(source, executed)
        where = (f"cell {cell} «{first}»" if cell is not None else
                 "start-up (no cell ran)" if not executed.exists() or whole_notebook(executed) else
                 "a cell its damaged executed copy does not show")
        what = f"{type(err).__name__}: {err}".strip().rstrip(":")
        if "DeadKernel" in type(err).__name__:
            what += " (out of memory? on mybinder.org use the binder profile)"
    copy = (f"executed copy (outputs up to the failure): {executed}" if executed.exists()
            else "no executed copy was written")
    return cell, first, f"{source.name} failed at {where}: {what}\n  {copy}"


def _source_index(source: Path, executed_index: int) -> int:
    """Cell index in the source notebook: papermill inserts its cell after `parameters`."""
    import nbformat

    params_index, _ = parameters_cell(nbformat.read(source, as_version=4), source.name)
    return executed_index - 1 if executed_index > params_index else executed_index


def _last_started_cell(source: Path, executed: Path) -> tuple[int | None, str]:
    """(source index, first line) of the last cell papermill started, from the saved copy."""
    import nbformat

    if not executed.exists():
        return None, ""
    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:  # noqa: BLE001  (a copy cut by the failure itself, e.g. a full disk)
        return None, ""
    started = [i for i, c in enumerate(nb.cells)
               if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return None, ""
    return _source_index(source, started[-1]), _first_line(nb.cells[started[-1]].source)


def whole_notebook(path: Path) -> bool:
    """A notebook file that parses, with its cells (not a 0-byte or cut-off copy)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(nb, dict) and isinstance(nb.get("cells"), list)


def _first_line(source: str) -> str:
    lines = [line for line in (source or "").splitlines() if line.strip()]
    return lines[0].strip()[:80] if lines else ""


def _check_clean_cli(notebooks_dir: str) -> int:
    problems = [p for nb in find_notebooks(notebooks_dir) for p in check_clean(nb)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("fix: python -m distil_utils.tools.reproduce --strip (the parameters cell by hand)",
              file=sys.stderr)
        return 1
    print(f"{len(find_notebooks(notebooks_dir))} notebooks clean")
    return 0


def _strip_cli(notebooks_dir: str) -> int:
    for nb in find_notebooks(notebooks_dir):
        fixes = (("outputs", strip_outputs), ("colab cell", sync_colab_cell))
        changed = [what for what, fix in fixes if fix(nb)]
        print(f"{nb.name}: {'fixed ' + ', '.join(changed) if changed else 'clean'}")
    return 0
