"""The runner's log, and what each notebook read and wrote, so that `--skip-done` reruns
exactly what is stale.

A notebook is done when it completed with the same parameters, from the same source, under the
same profile settings, and every file it read or wrote is as it left it (fingerprints below).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..artefacts import STAMP, WEIGHT_SUFFIXES, code_digests, package_imports, portable
from ..config import ROOT, get_config
from ..results_io import file_sha256, write_json
from .notebook_files import whole_notebook

LOG_NAME = "reproduce_log.json"
# Bookkeeping under results/<profile>/ that is not a notebook's result (executed copies are
# checked on their own; checkpoints are resumable work and corpus/ the tokenised-corpus cache,
# not results).
UNTRACKED = {"notebooks", "checkpoints", "config", "corpus", LOG_NAME, "PROFILE.json"}
CARD = "README.md"
HASH_LIMIT = 64 << 20  # files larger than this (weights) are fingerprinted by size and mtime


def fingerprint(path: Path) -> str | None:
    """A file's sha256 (size and mtime for large ones); a model folder's stamp and file sizes.

    A stamped folder (`artefacts.STAMP`) stands for its model: a model made again gets a new
    stamp, and a deleted or truncated weight file changes the sizes (its card does not count).
    None: nothing there.
    """
    if path.is_dir():
        stamp = path / STAMP
        if not stamp.is_file():
            return None
        # the model card (README.md) is left out: notebook 07 refreshes every card with the
        # latest metrics, which is documentation, not a new model for 01-06 to re-run for
        # weights files also by their time: another model's weights copied over these keep
        # the size (the stamp's weights digests catch it when the model is reused)
        sizes = sorted((f.name, f.stat().st_size,
                        f.stat().st_mtime_ns if f.suffix in WEIGHT_SUFFIXES else None)
                       for f in path.iterdir() if f.is_file() and f.name != CARD)
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


DATA_PREFIX = "<data_dir>/"  # a data file named relative to the profile's data_dir


def _data_key(path: Path, data_dir: str | None) -> str:
    """How the log names a data file: relative to the data_dir (so a copy of the data at
    another place reads the same), else as `artefacts.portable` writes paths."""
    if data_dir and path.is_relative_to(Path(data_dir).absolute()):
        return DATA_PREFIX + path.relative_to(Path(data_dir).absolute()).as_posix()
    return portable(path)


def _data_file(key: str, data_dir: str | None) -> Path | None:
    if key.startswith(DATA_PREFIX):
        return Path(data_dir) / key[len(DATA_PREFIX):] if data_dir else None
    return ROOT / key


def data_of_run(out: Path, reads: Path, data_dir: str | None) -> dict[str, str]:
    """{data file: sha256} of every file outside the results folder the notebook read (the
    data sets' splits, a corpus given by path), from its read log."""
    found: dict[str, str] = {}
    if reads.is_file():
        for line in reads.read_text(encoding="utf-8").splitlines():
            path = Path(line)
            if not path.absolute().is_relative_to(out.absolute()) and path.is_file():
                found[_data_key(path, data_dir)] = file_sha256(path)
    return dict(sorted(found.items()))


def notebook_modules(path: Path) -> list[str]:
    """The package modules a notebook's code cells import (lines starting with % or ! are
    IPython's, not Python)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell.get("source") or [])
        lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        found.update(package_imports(tree, []))
    return sorted(found)


def notebook_code(path: Path) -> dict[str, str]:
    """{module file: code digest} of everything the notebook runs of the package,
    presentation included: a new figure or table re-executes the notebook (models are
    re-made only when their own stamp's code changed)."""
    return code_digests(notebook_modules(path), skip=frozenset())


def _changed_names(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in {*old, *new} if old.get(k) != new.get(k))


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


def stale_reason(previous: dict[str, Any] | None, executed: Path, injected: dict[str, Any],
                 digest: str, settings: str, out: Path, code: dict[str, str] | None = None,
                 libraries: dict[str, str] | None = None) -> str | None:
    """Why the notebook must run again, in words; None when it is done: it completed before
    with these parameters, from this source, under these profile settings, with this code of
    the package (`notebook_code`) and these `libraries`, its executed copy is still there, the
    data it read has the same content, and every file it read or wrote is as it left it.

    A record without its files (e.g. committed without the models it describes) is not
    done: the notebook runs again.
    """
    if not previous:
        return "never run into this results folder"
    if previous.get("status") != "ok":
        return f"its last run is {previous.get('status')!r}, not 'ok'"
    if not executed.exists():
        return f"its executed copy {executed.name} is missing"
    if not whole_notebook(executed):
        return f"its executed copy {executed.name} is damaged (empty or not a notebook)"
    old = previous.get("parameters") or {}
    now = _jsonable(injected)
    if old != now:
        changed = sorted(k for k in {*old, *now} if old.get(k) != now.get(k))
        def shown(params: dict[str, Any], key: str) -> str:
            return repr(params[key]) if key in params else "(not set)"

        return "parameters changed: " + ", ".join(
            f"{k} {shown(old, k)} -> {shown(now, k)}" for k in changed)
    if previous.get("source_sha256") != digest:
        return "its source notebook changed"
    if previous.get("profile_sha256") != settings:
        return f"the {out.name!r} profile's settings in config.py changed"
    for part in ("code", "libraries", "data"):
        if not isinstance(previous.get(part), dict):
            return f"its record does not say which {part} made it (an older runner)"
    if code is not None and previous["code"] != code:
        names = _changed_names(previous["code"], code)
        return f"code changed: {', '.join(names[:4])}" + (" …" if len(names) > 4 else "")
    if libraries is not None and previous["libraries"] != libraries:
        return "libraries changed: " + ", ".join(
            f"{k} {previous['libraries'].get(k, '(none)')} -> {libraries.get(k, '(none)')}"
            for k in _changed_names(previous["libraries"], libraries))
    data_dir = get_config(out.name).data_dir if previous["data"] else None
    for key, sha in previous["data"].items():
        path = _data_file(key, data_dir)
        if path is None or not path.is_file():
            return f"data {key} is missing (data_dir: {data_dir or 'not set'})"
        if file_sha256(path) != sha:
            return f"data {key} changed since it ran"
    if not isinstance(previous.get("files"), dict):
        return "its record lists no files (made elsewhere)"
    for rel, fp in previous["files"].items():
        now_fp = fingerprint(out / rel)
        if now_fp != fp:
            what = "is missing" if now_fp is None else (
                "appeared" if fp is None else "changed")
            return f"{rel} {what} since it ran"
    return None


def _jsonable(obj: Any) -> Any:
    """`obj` as it reads back from JSON (tuples become lists), for comparing with the log."""
    return json.loads(json.dumps(obj, default=str))


def profile_digest(profile: str) -> str:
    """A digest of the profile's settings in `config.py` (machine paths left out).

    `--skip-done` compares it, so a notebook run under other settings (an edited profile) is
    run again instead of being reused with numbers those settings did not produce.
    """
    cfg = get_config(profile).to_dict()
    for key in ("data_dir", "results_dir", "device"):
        cfg.pop(key, None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()



# --- the log ---------------------------------------------------------------------------------

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

