"""Run the notebook suite in order with papermill: the one-command reproduction.

    python -m distil_utils.reproduce --profile cpu [--only 03] [-p KEY VALUE ...]

Each notebook is executed with `PROFILE` and the overrides injected into its `parameters`
cell; the executed copy (outputs, figures, any traceback) is written to
`results/<profile>/notebooks/`. A parameter that a notebook does not declare is refused before
anything runs (papermill itself only warns). A failure stops the run, keeps the executed copy
and names the notebook and the cell.
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .config import ROOT, Config
from .io import versions, write_json

NOTEBOOKS = ROOT / "notebooks"


class SuiteError(RuntimeError):
    """A notebook of the suite failed or was called with bad parameters."""


def find_notebooks(notebooks_dir: Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """`NN_topic.ipynb` files in order; `only` keeps those whose number or name matches."""
    found = sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if only:
        keep = [p for p in found if any(p.name.startswith(o) or p.stem == o for o in only)]
        missing = [o for o in only if not any(p.name.startswith(o) for p in found)]
        if missing:
            raise SuiteError(f"no notebook matches {missing}; available: "
                             f"{[p.name for p in found]}")
        found = keep
    if not found:
        raise SuiteError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
    return found


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names and default values assigned in the notebook's cell tagged `parameters`."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise SuiteError(f"{path.name} must have exactly one cell tagged 'parameters' "
                         f"(found {len(cells)})")
    out: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise SuiteError(f"{path.name}: the parameters cell may hold only `NAME = literal` "
                             f"lines, found {ast.unparse(node)!r}")
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def check_parameters(path: Path, params: dict[str, Any]) -> None:
    """Refuse a parameter the notebook does not declare, naming what it does declare."""
    declared = declared_parameters(path)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise SuiteError(f"{path.name} does not declare parameter(s) {unknown}; it declares "
                         f"{sorted(declared)}. Check the spelling (names are UPPER_CASE).")


def parse_value(text: str) -> Any:
    """A Python literal when `text` is one (`200`, `None`, `('sst2',)`), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _failed_cell(err: Exception, executed: Path) -> str:
    """'cell N (first line): error' from papermill's error, else from the executed copy."""
    if hasattr(err, "cell_index"):  # papermill.PapermillExecutionError
        first = (err.source or "").strip().splitlines()[:1]
        return (f"cell {err.cell_index} ({first[0][:60] if first else ''!r}): "
                f"{err.ename}: {err.evalue}")
    return f"{type(err).__name__}: {err}"


def run_suite(profile: str, only: list[str] | None = None, params: dict[str, Any] | None = None,
              *, notebooks_dir: Path = NOTEBOOKS, results_dir: str | None = None,
              kernel: str | None = None, skip_done: bool = False,
              quiet: bool = False) -> list[dict[str, Any]]:
    """Execute the notebooks in order; return one record per notebook (name, seconds, status).

    Raises `SuiteError` naming the notebook and cell on the first failure.
    """
    import papermill as pm

    params = dict(params or {})
    cfg = Config(profile=profile, results_dir=results_dir or Config.results_dir)
    out_dir = cfg.out / "notebooks"
    notebooks = find_notebooks(Path(notebooks_dir), only)
    injected = {"PROFILE": profile, **params}
    if results_dir:
        injected["RESULTS_DIR"] = str(results_dir)
    for nb in notebooks:  # every check before anything runs
        check_parameters(nb, injected)
    log_path = cfg.out / "reproduce_log.json"
    log: list[dict[str, Any]] = []
    previous = _previous_log(log_path) if skip_done else {}
    # the kernels import this checkout's package, whatever else is installed
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ.setdefault("DISTIL_COMMAND", shlex.join(["python", "-m", "distil_utils.reproduce",
                                                        *sys.argv[1:]]))
    out_dir.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        target = out_dir / nb.name
        if skip_done and previous.get(nb.name, {}).get("parameters") == injected \
                and previous[nb.name].get("status") == "ok" and target.exists():
            log.append(previous[nb.name] | {"status": "skipped (done)"})
            _say(quiet, f"[{nb.stem}] skipped: done with the same parameters")
            continue
        t0 = time.perf_counter()
        record = {"notebook": nb.name, "parameters": injected, "executed": str(target)}
        try:
            pm.execute_notebook(str(nb), str(target), parameters=injected, kernel_name=kernel,
                                cwd=str(nb.parent), progress_bar=False, log_output=False)
        except Exception as err:
            record |= {"status": "failed", "seconds": round(time.perf_counter() - t0, 1),
                       "error": f"{type(err).__name__}: {str(err)[-500:]}"}
            log.append(record)
            write_json(log_path, {"profile": profile, "versions": versions(), "runs": log})
            raise SuiteError(f"{nb.name} failed at {_failed_cell(err, target)} — the executed "
                             f"copy with the traceback is {target}") from err
        record |= {"status": "ok", "seconds": round(time.perf_counter() - t0, 1)}
        log.append(record)
        write_json(log_path, {"profile": profile, "versions": versions(), "runs": log})
        _say(quiet, f"[{nb.stem}] ok in {record['seconds']:.1f} s -> {target}")
    return log


def _previous_log(path: Path) -> dict[str, dict]:
    import json

    if not path.exists():
        return {}
    return {r["notebook"]: r for r in json.loads(path.read_text()).get("runs", [])}


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Execute the DistilBERT notebook suite in order.")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--only", action="append", help="run only this notebook (number or name)")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="set a notebook parameter, e.g. -p MAX_STEPS 200")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--kernel", default=None, help="Jupyter kernel (default: the notebook's)")
    ap.add_argument("--skip-done", action="store_true",
                    help="skip notebooks already executed successfully with the same parameters")
    args = ap.parse_args(argv)
    params = {k: parse_value(v) for k, v in (args.param or [])}
    try:
        log = run_suite(args.profile, args.only, params, results_dir=args.results_dir,
                        kernel=args.kernel, skip_done=args.skip_done)
    except SuiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    total = sum(r.get("seconds", 0) for r in log)
    print(f"suite {args.profile!r}: {len(log)} notebooks in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
