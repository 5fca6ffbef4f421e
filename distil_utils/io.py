"""Atomic writes and self-describing results files.

A run that is killed must never leave a half-written checkpoint or metrics file behind:
every writer here writes to a temporary file in the same directory, fsyncs it and renames it
over the target (`os.replace` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result onto `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file owner-only (0600); give it the mode a plain open() would.
    os.chmod(tmp_path, default_file_mode())
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def default_file_mode() -> int:
    """The mode a plain `open(path, "w")` gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    return atomic_write(path, lambda p: p.write_text(text + "\n"))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries that change the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "transformers", "datasets", "tokenizers", "numpy", "evaluate"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except ImportError:
            out[name] = "not installed"
    return out


def provenance(config: Any = None, **extra: Any) -> dict[str, Any]:
    """What produced a result: profile, seed, versions, command and time.

    Every results file carries this block so a number can be traced back to the run that
    made it.
    """
    cfg = config.to_dict() if hasattr(config, "to_dict") else (config or {})
    cmd = os.environ.get("DISTIL_COMMAND") or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return {
        "profile": cfg.get("profile"),
        "seed": cfg.get("seed"),
        "command": cmd,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        **extra,
    }


def write_result(path: str | Path, metrics: dict[str, Any], config: Any = None,
                 **extra: Any) -> Path:
    """Write `{"provenance": ..., "metrics": ...}` atomically under a results directory."""
    return write_json(path, {"provenance": provenance(config, **extra), "metrics": metrics})


def read_result(path: str | Path) -> dict[str, Any]:
    """Read a file written by `write_result`, with a clear error if it is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"results file {path} does not exist: run the notebook that writes it first "
            "(python -m distil_utils.reproduce --profile PROFILE)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"results file {path} is not valid JSON ({err}); delete it and "
                         "re-run the notebook that writes it") from err
