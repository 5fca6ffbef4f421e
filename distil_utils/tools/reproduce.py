"""Run the notebook suite in order with papermill: the one-command reproduction.

    distil-reproduce --profile cpu                       # every notebook, in order
    distil-reproduce --profile cpu --only 03 -p MAX_STEPS 200
    distil-reproduce --profile cpu --skip-done           # resume after a failure
    distil-reproduce --check-clean                       # source notebooks committable?
    distil-reproduce --strip                             # ... make them so

(`distil-reproduce` is `python -m distil_utils.tools.reproduce`, installed by pyproject.toml.)

Each `notebooks/NN_topic.ipynb` is executed with `PROFILE` (and `RESULTS_DIR` when
`--results-dir` is given) plus the `-p` overrides injected after its cell tagged `parameters`.
The executed copy, with outputs, figures and any traceback, is written to
`results/<profile>/notebooks/`; `results/<profile>/reproduce_log.json` records for each notebook
its status, wall time, parameters and library versions.

Why a runner of our own around papermill: papermill only *warns* about a parameter the notebook
does not declare (a misspelt `-p MAX_STPES 200` would silently run the default budget), and its
error names a cell index of the executed copy. Here an undeclared parameter is refused before
anything runs, and a failure names the notebook, the cell and its first line, keeps the executed
copy and stops the suite (later notebooks read what earlier ones wrote).

Resume: `--skip-done` skips a notebook whose log record says it completed, with the same
parameters, the same source file (sha256) and the same profile settings, whose executed copy
is still there, and every file it read or wrote is as it left it. The kernel lists what it
reads (`io.note_read`: results files, model folders by their stamp); what it wrote is what
changed under `results/<profile>/` while it ran. So a fresh clone (whose log describes models
that git does not hold) runs everything, and a re-made student re-runs every notebook that
read it. Delete an executed copy under `results/<profile>/notebooks/` to force a notebook to
run again.

One writer: the runner holds the results folder's lock (`io.lock_results`) while it runs; a
second runner or notebook on the same folder is refused, naming the first.

Kernel: by default the Jupyter kernel `python3`, which jupyter_client starts with the running
interpreter when its kernelspec says `python` (ipykernel's own spec does). If no `python3`
kernelspec is installed, `kernel_name=None` lets papermill use the notebook's own kernelspec.
`--kernel NAME` picks another one.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..artefacts import STAMP
from ..config import PROFILES, ROOT, Config
from ..results_io import (
    READ_LOG_ENV,
    ResultsLockedError,
    lock_results,
    unlock_results,
    versions,
    write_json,
)

NOTEBOOKS = ROOT / "notebooks"
LOG_NAME = "reproduce_log.json"
DEFAULT_KERNEL = "python3"
# Set by the runner, not by -p: every notebook of the suite declares both.
RUNNER_PARAMETERS = ("PROFILE", "RESULTS_DIR")
# Tags papermill leaves in an executed notebook; a source notebook must not carry them.
PAPERMILL_TAGS = ("injected-parameters", "papermill-error-cell-tag")


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
        problems.append(f"{key} is declared by {owners}; run those with --only" if owners
                        else f"{key} is declared by no notebook: check the spelling "
                        "(parameters are UPPER_CASE)")
    raise SuiteError("\n".join(problems))


def parse_value(text: str) -> Any:
    """A Python literal when `text` is one (`200`, `None`, `['sst2']`), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def format_value(value: Any) -> str:
    """The `-p` text that `parse_value` turns back into `value`."""
    if isinstance(value, str) and parse_value(value) == value:
        return value
    return repr(value)


def command_line(profile: str, only: list[str] | None = None,
                 params: dict[str, Any] | None = None, results_dir: str | None = None) -> str:
    """The shell command that reruns this suite; recorded as `DISTIL_COMMAND` in results."""
    args = ["python", "-m", "distil_utils.tools.reproduce", "--profile", profile]
    for key in only or []:
        args += ["--only", key]
    for key, value in (params or {}).items():
        args += ["-p", key, format_value(value)]
    if results_dir:
        args += ["--results-dir", str(results_dir)]
    return shlex.join(args)


# --- source-notebook hygiene -----------------------------------------------------------------

def check_clean(path: str | Path, colab_cell: bool = True) -> list[str]:
    """What keeps a source notebook from being committed as is; empty when it is clean.

    Clean: no outputs or execution counts, no papermill metadata or injected cells, exactly one
    `parameters` cell of `NAME = literal` lines declaring PROFILE and RESULTS_DIR (the runner
    injects them), and, with `colab_cell`, the first code cell is `colab_cell_source()`.
    """
    import nbformat

    from .colab import colab_cell_source

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
    except SuiteError as err:
        problems.append(str(err))
    code = [c for c in nb.cells if c.cell_type == "code"]
    if colab_cell and (not code or code[0].source != colab_cell_source()):
        problems.append("the first code cell is not distil_utils.tools.colab.colab_cell_source() "
                        "(--strip rewrites it)")
    return [f"{path.name}: {p}" for p in problems]


def strip_outputs(path: str | Path) -> bool:
    """Remove outputs, execution counts and papermill leftovers in place; True if it changed.

    Cell tags are kept (the `parameters` tag is what papermill needs). Written atomically, and
    only when something changed, so a clean notebook keeps its bytes and its timestamp.
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = json.dumps(nb, sort_keys=True)
    nb.cells = [c for c in nb.cells
                if not set(PAPERMILL_TAGS) & set(c.get("metadata", {}).get("tags", []))]
    for cell in nb.cells:
        for key in ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    for key in ("papermill", "widgets", "signature"):
        nb.metadata.pop(key, None)
    if json.dumps(nb, sort_keys=True) == before:
        return False
    _write_notebook(path, nb)
    return True


def sync_colab_cell(path: str | Path) -> bool:
    """Make the first code cell `colab_cell_source()` if it is a Colab cell; True if changed."""
    import nbformat

    from .colab import colab_cell_source

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

    from ..results_io import atomic_write

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


# --- running -------------------------------------------------------------------------------

def results_base(results_dir: str | None = None) -> Path:
    """The results folder (not yet the profile's), resolved as `Config.out` resolves it."""
    base = Path(results_dir or Config().results_dir)
    return base if base.is_absolute() else ROOT / base


def run_suite(profile: str, only: list[str] | None = None, params: dict[str, Any] | None = None,
              *, notebooks_dir: str | Path = NOTEBOOKS, results_dir: str | None = None,
              kernel: str | None = "default", skip_done: bool = False,
              quiet: bool = False) -> list[dict[str, Any]]:
    """Execute the notebooks in order; return one record per notebook of this run.

    Each record has `notebook`, `status` ("ok", "skipped" or "failed"), `seconds`,
    `parameters`, `executed` and `versions`. Raises `SuiteError` before anything runs for a bad
    profile or an undeclared parameter, and after the first failing notebook (naming it and its
    cell); later notebooks are not run. `kernel="default"` means `default_kernel()`.
    """
    import papermill as pm  # noqa: F401  (fail here, before any notebook, if it is missing)

    if profile not in PROFILES:
        raise SuiteError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    params = dict(params or {})
    results_dir = _results_dir_from(params, results_dir)
    injected = {"PROFILE": profile, **params}
    if results_dir:
        injected["RESULTS_DIR"] = str(results_base(results_dir))
    notebooks = find_notebooks(notebooks_dir, only)
    check_parameters(notebooks, injected)
    kernel = default_kernel() if kernel == "default" else kernel
    out = results_base(results_dir) / profile
    log = _read_log(out / LOG_NAME)
    command = command_line(profile, only, params, results_dir)
    done: list[dict[str, Any]] = []
    try:  # one writer per results folder; the kernels started below are part of this run
        took = lock_results(out, f"reproduce --profile {profile}")
    except (ResultsLockedError, NotADirectoryError) as err:
        raise SuiteError(str(err)) from None
    try:
        _run_all(notebooks, out, injected, kernel, log, command, skip_done, quiet, done)
    finally:
        if took:
            unlock_results(out)
    return done


def _run_all(notebooks: list[Path], out: Path, injected: dict[str, Any], kernel: str | None,
             log: dict[str, Any], command: str, skip_done: bool, quiet: bool,
             done: list[dict[str, Any]]) -> None:
    with _environ(DISTIL_COMMAND=command, PYTHONPATH=_pythonpath()):
        for i, path in enumerate(notebooks, 1):
            # one line per notebook, once it is over (kernels write their own warnings to
            # stderr meanwhile); the executed copy is saved cell by cell to follow a long one
            head = f"[{i}/{len(notebooks)}] {path.name}"
            try:
                record = _run_or_skip(path, out, injected, kernel, log, command, skip_done)
            except SuiteError as err:
                _say(quiet, f"{head} FAILED after {err.record['seconds']:.1f} s")
                raise
            done.append(record)
            _say(quiet, f"{head} skipped: done with the same parameters and inputs"
                 if record["status"] == "skipped" else f"{head} ok in {record['seconds']:.1f} s")


def _results_dir_from(params: dict[str, Any], results_dir: str | None) -> str | None:
    """`--results-dir`, or `-p RESULTS_DIR`; PROFILE only through `--profile`."""
    if "PROFILE" in params:
        raise SuiteError("set the profile with --profile, not -p PROFILE")
    from_p = params.pop("RESULTS_DIR", None)
    if from_p and results_dir and results_base(from_p) != results_base(results_dir):
        raise SuiteError(f"--results-dir {results_dir} and -p RESULTS_DIR {from_p} disagree; "
                         "give one of them")
    return results_dir or from_p


def _run_or_skip(path: Path, out: Path, injected: dict[str, Any], kernel: str | None,
                 log: dict[str, Any], command: str, skip_done: bool) -> dict[str, Any]:
    executed = out / "notebooks" / path.name
    digest = _sha256(path)
    settings = profile_digest(out.name)
    previous = _read_log(log["path"])["runs"].get(path.name)  # another runner may have run it
    if skip_done and _is_done(previous, executed, injected, digest, settings, out):
        return {**previous, "status": "skipped"}
    record = {"notebook": path.name, "status": "running", "seconds": None,
              "parameters": _jsonable(injected), "executed": str(executed),
              "source_sha256": digest, "profile_sha256": settings,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
              "versions": _versions()}
    _log(out, log, record)  # an interrupted run leaves "running", never a stale "ok"
    executed.unlink(missing_ok=True)  # never blame an old copy for a new failure
    before = snapshot(out)
    reads = out / f".reads.{path.stem}.log"
    reads.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        with _environ(**{READ_LOG_ENV: str(reads)}):
            _execute(path, executed, injected, kernel)
    except BaseException as err:
        cell, first, message = _describe_failure(err, path, executed)
        record |= {"status": "failed", "seconds": round(time.perf_counter() - t0, 1),
                   "cell": cell, "cell_source": first, "error": message}
        _log(out, log, record)
        if not isinstance(err, Exception):  # KeyboardInterrupt: logged, then let it through
            raise
        raise SuiteError(f"{message}\n  after fixing it, resume with: {command} --skip-done",
                         record) from err
    record |= {"status": "ok", "seconds": round(time.perf_counter() - t0, 1),
               "files": _files_of_run(out, before, reads)}
    reads.unlink(missing_ok=True)
    _log(out, log, record)
    return record


# --- what a notebook read and wrote ------------------------------------------------------------
# Bookkeeping under results/<profile>/ that is not a notebook's result (executed copies are
# checked on their own; checkpoints are resumable work and corpus/ the tokenised-corpus cache,
# not results).
UNTRACKED = {"notebooks", "checkpoints", "config", "corpus", LOG_NAME, "PROFILE.json"}
HASH_LIMIT = 64 << 20  # files larger than this (weights) are fingerprinted by size and mtime


def fingerprint(path: Path) -> str | None:
    """A file's sha256 (size and mtime for large ones); a model folder's stamp and file sizes.

    A stamped folder (`artefacts.STAMP`) stands for its model: a model made again gets a new
    stamp, and a deleted or truncated weight file changes the sizes. None: nothing there.
    """
    if path.is_dir():
        stamp = path / STAMP
        if not stamp.is_file():
            return None
        sizes = sorted((f.name, f.stat().st_size) for f in path.iterdir() if f.is_file())
        return hashlib.sha256(stamp.read_bytes() + repr(sizes).encode()).hexdigest()
    if not path.is_file():
        return None
    st = path.stat()
    if st.st_size > HASH_LIMIT:
        return f"size {st.st_size} mtime {st.st_mtime_ns}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(out: Path) -> dict[str, str]:
    """{path relative to `out`: fingerprint} of every result and model folder under `out`."""
    found: dict[str, str] = {}
    if not out.is_dir():
        return found
    for folder, dirs, files in os.walk(out):
        here = Path(folder)
        rel = here.relative_to(out)
        if STAMP in files and rel != Path("."):
            found[rel.as_posix()] = fingerprint(here)
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and not (rel == Path(".") and d in UNTRACKED)]
        for name in files:
            if name.startswith(".") or (rel == Path(".") and name in UNTRACKED):
                continue
            found[(rel / name).as_posix()] = fingerprint(here / name)
    return found


def _tracked(out: Path, path: Path) -> str | None:
    """`path` as `snapshot` names it (its model folder, if inside one), or None if outside."""
    try:
        rel = path.absolute().relative_to(out.absolute())
    except ValueError:
        return None
    if not rel.parts or rel.parts[0] in UNTRACKED:
        return None
    for i in range(1, len(rel.parts) + 1):  # the outermost stamped folder holding it
        prefix = out / Path(*rel.parts[:i])
        if prefix.is_dir() and (prefix / STAMP).is_file():
            return Path(*rel.parts[:i]).as_posix()
    return rel.as_posix()


def _files_of_run(out: Path, before: dict[str, str], reads: Path) -> dict[str, str | None]:
    """What the notebook wrote (changed or new since `before`) and read (its read log).

    Read paths are fingerprinted as they are now, after the run; one that was missing when
    read is recorded as None, so it appearing later also counts as a change.
    """
    after = snapshot(out)
    files: dict[str, str | None] = {k: v for k, v in after.items() if before.get(k) != v}
    if reads.is_file():
        for line in reads.read_text(encoding="utf-8").splitlines():
            rel = _tracked(out, Path(line))
            if rel is not None and rel not in files:
                files[rel] = fingerprint(out / rel)
    return dict(sorted(files.items()))


def _execute(path: Path, executed: Path, injected: dict[str, Any], kernel: str | None) -> None:
    import papermill as pm

    executed.parent.mkdir(parents=True, exist_ok=True)
    # cwd: the notebook's own folder, as when it is opened in Jupyter.
    pm.execute_notebook(str(path), str(executed), parameters=injected, kernel_name=kernel,
                        cwd=str(path.parent), progress_bar=False, log_output=False)


def _is_done(previous: dict[str, Any] | None, executed: Path, injected: dict[str, Any],
             digest: str, settings: str, out: Path) -> bool:
    """Completed before with these parameters, from this source, under these profile
    settings; the copy is still there, and every file it read or wrote is as it left it.

    A record without its files (an older log, or one committed without the models it
    describes) is not done: the notebook runs again.
    """
    if not (previous and previous.get("status") == "ok" and executed.exists()
            and previous.get("parameters") == _jsonable(injected)
            and previous.get("source_sha256") == digest
            and previous.get("profile_sha256") == settings
            and isinstance(previous.get("files"), dict)):
        return False
    return all(fingerprint(out / rel) == fp for rel, fp in previous["files"].items())


def _describe_failure(err: BaseException, source: Path,
                      executed: Path) -> tuple[int | None, str, str]:
    """(source cell index, its first line, message naming notebook, cell and error)."""
    if hasattr(err, "cell_index"):  # papermill.PapermillExecutionError
        cell, first = _source_index(source, err.cell_index), _first_line(err.source)
        where = f"cell {cell} (In [{err.exec_count}] of the executed copy) «{first}»"
        what = f"{err.ename}: {err.evalue}"
    else:  # the kernel died, a cell timed out, Ctrl-C, the kernel did not start...
        cell, first = _last_started_cell(source, executed)
        where = f"cell {cell} «{first}»" if cell is not None else "start-up (no cell ran)"
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
    nb = nbformat.read(executed, as_version=4)
    started = [i for i, c in enumerate(nb.cells)
               if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return None, ""
    return _source_index(source, started[-1]), _first_line(nb.cells[started[-1]].source)


def _first_line(source: str) -> str:
    lines = [line for line in (source or "").splitlines() if line.strip()]
    return lines[0].strip()[:80] if lines else ""


# --- log and environment ---------------------------------------------------------------------

def _read_log(path: Path) -> dict[str, Any]:
    """The profile's log as {"runs": {notebook: record}}; a damaged log starts afresh."""
    log: dict[str, Any] = {"path": path, "runs": {}}
    if path.exists():
        try:
            log["runs"] = {r["notebook"]: r for r in json.loads(path.read_text())["runs"]}
        except (json.JSONDecodeError, KeyError, TypeError):
            print(f"[reproduce] {path} is damaged; starting a new log", file=sys.stderr)
    return log


def _log(out: Path, log: dict[str, Any], record: dict[str, Any]) -> None:
    """Update one notebook's record and rewrite the log atomically (others are kept).

    The file is read again first, so that two runners on one results folder (e.g. `--only 05`
    beside a run busy with 04) keep each other's records instead of the last writer's view.
    """
    log["runs"] = _read_log(log["path"])["runs"]
    log["runs"][record["notebook"]] = dict(record)
    write_json(log["path"], {"profile": out.name,
                             "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "runs": [log["runs"][k] for k in sorted(log["runs"])]})


_VERSIONS: dict[str, str] = {}


def _versions() -> dict[str, str]:
    if not _VERSIONS:  # importing torch & co. once is enough
        _VERSIONS.update(versions())
    return dict(_VERSIONS)


def _jsonable(obj: Any) -> Any:
    """`obj` as it reads back from JSON (tuples become lists), for comparing with the log."""
    return json.loads(json.dumps(obj, default=str))


def profile_digest(profile: str) -> str:
    """A digest of the profile's settings in `config.py` (machine paths left out).

    `--skip-done` compares it, so a notebook run under other settings (an edited profile) is
    run again instead of being reused with numbers those settings did not produce.
    """
    from ..config import get_config

    cfg = get_config(profile).to_dict()
    for key in ("data_dir", "results_dir", "device"):
        cfg.pop(key, None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pythonpath() -> str:
    """This checkout first, so the kernels import this package whatever else is installed."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the kernels started inside, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


# --- command line --------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m distil_utils.tools.reproduce",
        description="Execute the DistilBERT notebook suite in order with papermill.")
    ap.add_argument("--profile", default="smoke", help=f"one of {sorted(PROFILES)}")
    ap.add_argument("--only", action="append", metavar="NN",
                    help="run only this notebook (number or name); repeatable")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="set a notebook parameter, e.g. -p MAX_STEPS 200 (a Python literal, "
                         "else a string)")
    ap.add_argument("--notebooks-dir", default=str(NOTEBOOKS))
    ap.add_argument("--results-dir", default=None,
                    help="results folder (default: results/ of this checkout); the profile's "
                         "results go to RESULTS_DIR/<profile>/")
    ap.add_argument("--kernel", default="default",
                    help=f"Jupyter kernel (default: {DEFAULT_KERNEL!r} if installed, else the "
                         "notebook's)")
    ap.add_argument("--skip-done", action="store_true",
                    help="skip notebooks already executed successfully with the same "
                         "parameters and unchanged source")
    ap.add_argument("--check-clean", action="store_true",
                    help="only check that the source notebooks are committable; exit 1 if not")
    ap.add_argument("--strip", action="store_true",
                    help="only strip outputs from the source notebooks and sync their Colab cell")
    return ap


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


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (1 on any failure, with the reason)."""
    args = _parser().parse_args(argv)
    try:
        if args.check_clean:
            return _check_clean_cli(args.notebooks_dir)
        if args.strip:
            return _strip_cli(args.notebooks_dir)
        params = {k: parse_value(v) for k, v in (args.param or [])}
        t0 = time.perf_counter()
        done = run_suite(args.profile, args.only, params, notebooks_dir=args.notebooks_dir,
                         results_dir=args.results_dir, kernel=args.kernel,
                         skip_done=args.skip_done)
    except SuiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    ran = sum(r["status"] == "ok" for r in done)
    results_dir = args.results_dir or params.get("RESULTS_DIR")
    print(f"suite {args.profile!r}: {ran} run, {len(done) - ran} skipped, "
          f"{time.perf_counter() - t0:.0f} s; log in "
          f"{results_base(results_dir) / args.profile / LOG_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
