"""Run the notebook suite in order with papermill: the one-command reproduction.

    distil-reproduce --profile cpu                       # every notebook, in order
    distil-reproduce --profile cpu --only 03 -p MAX_STEPS 200
    distil-reproduce --profile cpu --skip-done           # resume after a failure
    distil-reproduce --check-clean                       # source notebooks committable?
    distil-reproduce --strip                             # ... make them so

(`distil-reproduce` is `python -m distil_utils.tools.reproduce`, installed by pyproject.toml.)

Each `notebooks/NN_topic.ipynb` runs with `PROFILE` (and `RESULTS_DIR`) plus the `-p`
overrides injected after its `parameters` cell; the executed copy goes to
`results/<profile>/notebooks/` and `reproduce_log.json` records each notebook's status, wall
time, parameters and library versions.

Why a runner around papermill: papermill only *warns* about an undeclared parameter (a misspelt
`-p MAX_STPES 200` would silently run the default budget). Here it is refused before anything
runs, and a failure or a cell over `--cell-timeout` names the notebook and cell and stops the
suite (later notebooks read what earlier ones wrote).

`--skip-done` skips a notebook logged as completed with the same parameters, source (sha256)
and profile settings, whose executed copy and every file it read or wrote are unchanged
(`freshness`). The runner holds the results folder's lock while it runs. Kernel: `python3`
by default, else the notebook's own kernelspec; `--kernel NAME` picks another.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..artefacts import portable
from ..config import PROFILES, ROOT, Config, get_config
from ..results_io import (
    READ_LOG_ENV,
    ResultsLockedError,
    atomic_write,
    file_sha256,
    lock_results,
    number_libraries,
    unlock_results,
    versions,
)
from ..validation import declared_spelling, parse_value
from .freshness import (  # noqa: F401  (the runner's public names, as tests and docs use them)
    LOG_NAME,
    UNTRACKED,
    _files_of_run,
    _jsonable,
    _log,
    _read_log,
    data_of_run,
    fingerprint,
    notebook_code,
    profile_digest,
    snapshot,
    stale_reason,
)
from .notebook_files import (  # noqa: F401
    DEFAULT_KERNEL,
    NOTEBOOKS,
    PAPERMILL_TAGS,
    RUNNER_PARAMETERS,
    SuiteError,
    _check_clean_cli,
    _describe_failure,
    _strip_cli,
    check_clean,
    check_parameters,
    declared_parameters,
    default_kernel,
    find_notebooks,
    parameters_cell,
    spelled_as_declared,
    strip_outputs,
    sync_colab_cell,
)

CELL_TIMEOUTS: dict[str, int] = {"smoke": 1800, "binder": 1800}  # s: CI's smoke cells take minutes


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


# --- running -------------------------------------------------------------------------------

def results_base(results_dir: str | None = None) -> Path:
    """The results folder (not yet the profile's), resolved as `Config.out` resolves it."""
    base = Path(results_dir or Config().results_dir)
    return base if base.is_absolute() else ROOT / base


def run_suite(profile: str, only: list[str] | None = None, params: dict[str, Any] | None = None,
              *, notebooks_dir: str | Path = NOTEBOOKS, results_dir: str | None = None,
              kernel: str | None = "default", skip_done: bool = False,
              cell_timeout: int | None = None, quiet: bool = False) -> list[dict[str, Any]]:
    """Execute the notebooks in order; return one record per notebook of this run.

    Records hold `notebook`, `status` ("ok", "skipped" or "failed"), `seconds`, `parameters`,
    `executed` and `versions`. Raises `SuiteError` before anything runs for a bad profile or
    undeclared parameter, and at the first failing notebook. `cell_timeout`: seconds per cell;
    None: `CELL_TIMEOUTS` by profile; 0: none.
    """
    import papermill as pm  # noqa: F401  (fail here, before any notebook, if it is missing)

    if profile not in PROFILES:
        raise SuiteError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    notebooks = find_notebooks(notebooks_dir, only)
    params = spelled_as_declared(notebooks, dict(params or {}))
    results_dir = _results_dir_from(params, results_dir)
    injected = {"PROFILE": profile, **params}
    if results_dir:
        injected["RESULTS_DIR"] = str(results_base(results_dir))
    check_parameters(notebooks, injected)
    check_values(profile, params)
    timeout = CELL_TIMEOUTS.get(profile) if cell_timeout is None else cell_timeout or None
    options = {"kernel_name": default_kernel() if kernel == "default" else kernel,
               "execution_timeout": timeout,  # papermill's, for every notebook
               "progress_bar": not quiet, **_kernel_transport()}
    out = results_base(results_dir) / profile
    log = _read_log(out / LOG_NAME)
    command = command_line(profile, only, params, results_dir)
    done: list[dict[str, Any]] = []
    try:  # one writer per results folder; the kernels started below are part of this run
        took = lock_results(out, f"reproduce --profile {profile}")
    except (ResultsLockedError, NotADirectoryError) as err:
        raise SuiteError(str(err)) from None
    try:
        _run_all(notebooks, out, injected, options, log, command, skip_done, quiet, done)
    finally:
        if took:
            unlock_results(out)
    return done


def _run_all(notebooks: list[Path], out: Path, injected: dict[str, Any], options: dict[str, Any],
             log: dict[str, Any], command: str, skip_done: bool, quiet: bool,
             done: list[dict[str, Any]]) -> None:
    with _environ(DISTIL_COMMAND=command, PYTHONPATH=_pythonpath()):
        for i, path in enumerate(notebooks, 1):
            # a line as each notebook starts (with why --skip-done runs it again), papermill's
            # cell-by-cell bar while it runs, a line when it is over
            head = f"[{i}/{len(notebooks)}] {path.name}"
            try:
                record = _run_or_skip(path, out, injected, options, log, command, skip_done,
                                      lambda msg, head=head: _say(quiet, f"{head} {msg}"))
            except SuiteError as err:
                _say(quiet, f"{head} FAILED after {err.record['seconds']:.1f} s")
                raise
            done.append(record)
            _say(quiet, f"{head} skipped: done with the same parameters and inputs"
                 if record["status"] == "skipped" else f"{head} ok in {record['seconds']:.1f} s")


def check_values(profile: str, params: dict[str, Any]) -> None:
    """Refuse, before any notebook runs, a parameter value its setting refuses (`-p SEED abc`):
    the notebook would stop at its first cell, and the resume hint would repeat the bad value."""
    fields = {f.name for f in dataclasses.fields(Config)}
    overrides = {name: v for k, v in params.items()
                 if (name := declared_spelling(k, fields)) in fields}
    try:
        get_config(profile, **overrides)
    except (ValueError, TypeError) as err:  # SettingError is a ValueError
        raise SuiteError(f"a -p value is refused before anything runs: {err}") from None


def _results_dir_from(params: dict[str, Any], results_dir: str | None) -> str | None:
    """`--results-dir`, or `-p RESULTS_DIR`; PROFILE only through `--profile`."""
    if "PROFILE" in params:
        raise SuiteError("set the profile with --profile, not -p PROFILE")
    from_p = params.pop("RESULTS_DIR", None)
    if from_p and results_dir and results_base(from_p) != results_base(results_dir):
        raise SuiteError(f"--results-dir {results_dir} and -p RESULTS_DIR {from_p} disagree; "
                         "give one of them")
    return results_dir or from_p


def _run_or_skip(path: Path, out: Path, injected: dict[str, Any], options: dict[str, Any],
                 log: dict[str, Any], command: str, skip_done: bool,
                 say: Any = lambda msg: None) -> dict[str, Any]:
    executed = out / "notebooks" / path.name
    digest = file_sha256(path)
    settings = profile_digest(out.name)
    code, libraries = notebook_code(path), number_libraries()
    previous = _read_log(log["path"])["runs"].get(path.name)  # another runner may have run it
    reason = None
    if skip_done:
        reason = stale_reason(previous, executed, injected, digest, settings, out, code,
                              libraries)
        if reason is None:
            return {**previous, "status": "skipped"}
    say(f"running again: {reason}" if reason else "running")
    record = {"notebook": path.name, "status": "running", "seconds": None,
              "parameters": _jsonable(injected), "executed": portable(executed, out),
              "source_sha256": digest, "profile_sha256": settings, "code": code,
              "libraries": libraries,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
              "versions": versions(), "cell_timeout": options["execution_timeout"],
              **({"rerun_because": reason} if reason else {})}
    _log(out, log, record)  # an interrupted run leaves "running", never a stale "ok"
    executed.unlink(missing_ok=True)  # never blame an old copy for a new failure
    before = snapshot(out)
    reads = out / f".reads.{path.stem}.log"
    reads.unlink(missing_ok=True)
    t0 = time.perf_counter()
    # papermill rewrites its output after every cell: it writes a hidden copy, which takes the
    # executed copy's name once the run ends (a killed run leaves no half notebook there)
    partial = executed.with_name(f".{executed.stem}.partial.ipynb")
    try:
        with _environ(**{READ_LOG_ENV: str(reads)}):
            try:
                _execute(path, partial, injected, options)
            finally:
                if partial.exists():
                    _settle(partial, executed)
    except BaseException as err:
        cell, first, message = _describe_failure(err, path, executed)
        if isinstance(err, TimeoutError) and (limit := record["cell_timeout"]):  # CellTimeoutError
            message += f"\n  cell timeout: {limit} s; for longer: --cell-timeout SECONDS (0: none)"
        record |= {"status": "failed", "seconds": round(time.perf_counter() - t0, 1),
                   "cell": cell, "cell_source": first, "error": message}
        try:
            _log(out, log, record)
        except OSError as log_err:  # e.g. the full disk that failed the notebook
            message += f"\n  (the run log could not be written either: {log_err})"
        if not isinstance(err, Exception):  # KeyboardInterrupt: logged, then let it through
            raise
        raise SuiteError(f"{message}\n  after fixing it, resume with: {command} --skip-done",
                         record) from err
    record |= {"status": "ok", "seconds": round(time.perf_counter() - t0, 1),
               "files": _files_of_run(out, before, reads),
               "data": data_of_run(out, reads, get_config(out.name).data_dir)}
    reads.unlink(missing_ok=True)
    _log(out, log, record)
    return record


def _execute(path: Path, executed: Path, injected: dict[str, Any], options: dict[str, Any]) -> None:
    import papermill as pm

    executed.parent.mkdir(parents=True, exist_ok=True)
    # cwd: the notebook's own folder, as when it is opened in Jupyter. The paths are given as
    # seen from here: papermill records them in the executed copy.
    pm.execute_notebook(os.path.relpath(path), os.path.relpath(executed), parameters=injected,
                        cwd=str(path.parent), log_output=False, **options)


def _settle(partial: Path, executed: Path) -> None:
    """Give the hidden copy the executed copy's name, and make its papermill record name that
    file rather than the hidden one. A copy too damaged to parse (a kill mid-write) moves as is."""
    import nbformat

    try:
        nb = nbformat.read(partial, as_version=nbformat.NO_CONVERT)
        nb.metadata.papermill.output_path = os.path.relpath(executed)
    except (OSError, ValueError, AttributeError):  # nbformat's read errors are ValueErrors
        os.replace(partial, executed)
        return
    atomic_write(executed, lambda tmp: nbformat.write(nb, str(tmp)))
    partial.unlink()


def _kernel_transport() -> dict[str, Any]:
    """The kernels talk to the runner over local IPC sockets where the OS has them: nothing is
    exposed on a TCP port, and ipykernel has no reason for its "running over TCP without
    encryption" warning, once per notebook. Windows keeps jupyter_client's TCP default."""
    if os.name != "posix":
        return {}
    from traitlets.config import Config as TraitletsConfig

    return {"config": TraitletsConfig({"KernelManager": {"transport": "ipc"}})}


# --- log and environment ---------------------------------------------------------------------

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
                    help="set a notebook parameter, e.g. -p max_steps 200 (any case; a "
                         "Python literal, else a string)")
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
    ap.add_argument("--cell-timeout", type=int, metavar="SECONDS", help="fail a cell that runs "
                    f"longer; 0: no limit (default: {CELL_TIMEOUTS} by profile, else none)")
    ap.add_argument("--check-clean", action="store_true",
                    help="only check that the source notebooks are committable; exit 1 if not")
    ap.add_argument("--strip", action="store_true",
                    help="only strip outputs from the source notebooks and sync their Colab cell")
    return ap


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
                         skip_done=args.skip_done, cell_timeout=args.cell_timeout)
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
