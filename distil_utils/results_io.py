"""Atomic writes and self-describing results files.

A run that is killed must never leave a half-written checkpoint or metrics file behind:
every writer here writes to a temporary file in the same directory, fsyncs it and renames it
over the target (`os.replace` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# What to do when the system refuses a write, by errno: one line naming the file and the fix
# instead of an error on a temporary name from deep inside a library.
WRITE_FIXES = {
    errno.ENOSPC: "the disk is full: free space there, or give the run another results_dir "
                  "(--results-dir / RESULTS_DIR) on a disk with room",
    errno.EDQUOT: "the disk quota is used up: free space, or give the run another results_dir",
    errno.EFBIG: "the file is larger than that filesystem or its limits (ulimit -f) allow: "
                 "give the run another results_dir",
    errno.EACCES: "this user may not write there: make the folder writable (chmod u+w) or "
                  "give the run another results_dir (--results-dir / RESULTS_DIR)",
    errno.EPERM: "this user may not write there: make the folder writable (chmod u+w) or "
                 "give the run another results_dir (--results-dir / RESULTS_DIR)",
    errno.EROFS: "the filesystem is read-only: give the run another results_dir "
                 "(--results-dir / RESULTS_DIR)",
}


def write_error(path: str | Path, err: BaseException) -> BaseException:
    """`err` restated as the OSError "cannot write PATH (reason): fix" where its errno has a
    known fix; a library's own error (safetensors') is recognised by the system's wording."""
    code = getattr(err, "errno", None)
    if code is None:
        code = next((c for c in WRITE_FIXES if os.strerror(c) in str(err)), None)
    fix = WRITE_FIXES.get(code)
    if fix is None:
        return err
    kind = type(err) if isinstance(err, OSError) else OSError
    new = kind(code, f"cannot write {path} ({os.strerror(code)}): {fix}")
    new.__cause__ = err
    return new


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result onto `path` in one rename; a refused write
    (full disk, read-only folder) is an error naming `path` and the fix (`write_error`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise write_error(path, err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp makes the file owner-only (0600); give it the mode a plain open() would.
        os.chmod(tmp_path, default_file_mode())
        write(tmp_path)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as err:
        raise write_error(path, err) from None
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


# The libraries whose version can move a number (kernels, tokenisation, data loading, device
# placement, random streams): every stamp and every `--skip-done` record keys on them.
NUMBER_LIBRARIES = ("torch", "transformers", "datasets", "tokenizers", "accelerate", "numpy")


def number_libraries() -> dict[str, str]:
    """{library: installed version} of `NUMBER_LIBRARIES`, read from the installed metadata
    (no import: a stamp is computed before torch is loaded)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in NUMBER_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries that change the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu": cpu(), **number_libraries()}
    try:
        out["evaluate"] = version("evaluate")
    except PackageNotFoundError:
        out["evaluate"] = "not installed"
    return out


# the instruction sets that pick torch's GEMM kernels (fp32 and bf16 through oneDNN, int8
# through fbgemm): two timings compare only on the same model and the same sets
_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> str:
    """The processor the numbers were measured on, e.g. "AMD EPYC · 2 cores · avx2": speed
    ratios moved between runs on hosts that the platform string does not tell apart."""
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine()):
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    isa = " ".join(f for f in _CPU_FLAGS if f in flags)
    return " · ".join(filter(None, [name, f"{os.cpu_count()} cores", isa]))


_FILE_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """A file's sha256, hashed once per process while its size and time stay the same (the
    data files and weights a stamp names are read again for every stamp computed)."""
    path = Path(path).absolute()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_SHA256:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _FILE_SHA256[key] = h.hexdigest()
    return _FILE_SHA256[key]


# Set by the runner (`reproduce`) for each notebook: every results file or model folder the
# notebook reads is listed there, so `--skip-done` knows exactly which inputs to compare.
READ_LOG_ENV = "DISTIL_READ_LOG"


def note_read(path: str | Path) -> None:
    """Record that this run read `path` (a results file or a model folder), for the runner."""
    log = os.environ.get(READ_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{Path(path).absolute()}\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file the suite wrote; a missing or damaged one is an error naming it."""
    path = Path(path)
    note_read(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run the notebook or command that writes it first "
            "(python -m distil_utils.tools.reproduce --profile PROFILE)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): it was damaged or written by "
                         "something else; delete it and re-run the step that writes it") from err


def read_result(path: str | Path) -> dict[str, Any]:
    """Read a file written by `write_result` (`provenance` and `metrics`), checked."""
    data = read_json(path)
    if not isinstance(data, dict) or "metrics" not in data or "provenance" not in data:
        raise ValueError(f"{path} is not a results file of this suite (no 'metrics' and "
                         "'provenance' blocks); move it out of the results folder")
    return data


# --- one writer per results folder -------------------------------------------------------------
LOCK_NAME = ".writer.lock"
# Who holds the lock (pid, host, what, command, since), read back by a refused second writer. It
# sits beside the lock file, which filelock owns (Windows locks its first byte and deletes it).
HOLDER_NAME = ".writer.holder"
# Folders whose lock this process or an ancestor holds: the runner's notebook kernels and a
# notebook's own subprocesses belong to the run that took the lock, so they do not take it again.
LOCK_ENV = "DISTIL_RESULTS_LOCKS"
# Folders the suite writes inside a profile's results; a file in their place is refused up front.
OUTPUT_FOLDERS = ("checkpoints", "config", "figures", "notebooks", "finetuned", "teacher",
                  "student", "ft_runs")
_HELD: dict[str, Any] = {}
_NO_HOLDER = "a process that has not written its name yet"


class ResultsLockedError(RuntimeError):
    """Another run is writing the same results folder."""


def check_output_dir(out: str | Path) -> Path:
    """Refuse, before any work, a results folder that cannot be written as the suite will."""
    out = Path(out).absolute()
    for part in [out, *out.parents]:
        if part.exists() and not part.is_dir():
            raise NotADirectoryError(f"{part} is a file, but the results folder {out} must be a "
                                     "folder there: move the file away or choose another "
                                     "results_dir / RESULTS_DIR")
    for name in OUTPUT_FOLDERS:
        if (out / name).exists() and not (out / name).is_dir():
            raise NotADirectoryError(f"{out / name} is a file, but the suite writes a folder "
                                     "there: move it away (or delete it) and run again")
    return out


def clean_temporaries(out: str | Path) -> list[Path]:
    """Remove what killed writes left (`.NAME.*.tmp` files, `.NAME.tmp`/`.NAME.old` folders),
    after finishing a model folder's swap that was cut (`.NAME.new` is complete: it becomes NAME).

    Only called by the lock holder, the one writer of the folder, so nothing removed here can
    belong to a write in progress.
    """
    import shutil

    removed = []
    for new in sorted(Path(out).rglob(".*.new")):  # a model swap a kill cut (artefacts)
        if not new.is_dir():
            continue
        target = new.with_name(new.name[1:].removesuffix(".new"))
        if target.exists():
            old = new.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            target.rename(old)  # removed below
        new.rename(target)
    for path in sorted(Path(out).rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        if path.name.endswith((".tmp", ".old")) and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
    return removed


def _locked_here(key: str) -> bool:
    return key in _HELD or key in os.environ.get(LOCK_ENV, "").split(os.pathsep)


def _holder(out: Path) -> str:
    """The holder record the lock's owner wrote, for the message that refuses another run."""
    try:
        return (out / HOLDER_NAME).read_text(encoding="utf-8").strip() or _NO_HOLDER
    except OSError:
        return _NO_HOLDER


def _forget_holder(key: str, pid: int) -> None:
    """At exit: remove the holder record while this process (not a fork of it) still holds."""
    if os.getpid() == pid and key in _HELD:
        (Path(key) / HOLDER_NAME).unlink(missing_ok=True)


def lock_results(out: str | Path, what: str) -> bool:
    """Become the one writer of results folder `out` for the rest of this process.

    An OS lock on `out/.writer.lock` (`flock` on POSIX, `LockFileEx` on Windows): the OS drops
    it when the process ends, so a killed run never leaves it stuck. A second process is
    refused with a message naming the first (its record is `out/.writer.holder`). Returns True
    if this call took the lock, False if this process (or the runner that started it) already
    holds it.
    """
    import filelock

    out = check_output_dir(out)
    key = str(out.resolve()) if out.exists() else str(out)
    if _locked_here(key):
        return False
    if not issubclass(filelock.FileLock, (filelock.UnixFileLock, filelock.WindowsFileLock)):
        return False  # no OS lock here (a soft lock would outlive a killed run): unguarded
    try:  # a folder this user cannot write is refused here, before any work
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(out, err) from None
    key = str(out.resolve())
    # filelock does it (fcntl.flock by hand before): one attempt, no waiting, process-wide
    lock = filelock.FileLock(out / LOCK_NAME, thread_local=False, fallback_to_soft=False)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        raise ResultsLockedError(
            f"{out} is being written by another run: {_holder(out)}. Wait for it to finish, "
            "stop it (in JupyterLab: shut down that notebook's kernel; a killed run releases "
            "the folder), or give this run another results_dir / RESULTS_DIR.") from None
    except OSError as err:
        if err.errno != errno.ENOSYS:
            raise write_error(out / LOCK_NAME, err) from None
        return False  # a filesystem without flock: no OS lock to take, the run goes unguarded
    try:
        record = json.dumps({"pid": os.getpid(), "host": platform.node(), "what": what,
                             "command": shlex.join(sys.argv),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        atomic_write(out / HOLDER_NAME, lambda p: p.write_text(record, encoding="utf-8"))
    except BaseException:
        lock.release()
        raise
    _HELD[key] = lock
    atexit.register(_forget_holder, key, os.getpid())
    os.environ[LOCK_ENV] = os.pathsep.join(filter(None, [os.environ.get(LOCK_ENV), key]))
    clean_temporaries(out)
    return True


def unlock_results(out: str | Path) -> None:
    """Give up the lock `lock_results` took (a no-op when this process does not hold it)."""
    key = str(Path(out).absolute().resolve())
    lock = _HELD.pop(key, None)
    if lock is None:
        return
    (Path(key) / HOLDER_NAME).unlink(missing_ok=True)  # still ours until the release below
    lock.release()
    held = [k for k in os.environ.get(LOCK_ENV, "").split(os.pathsep) if k and k != key]
    if held:
        os.environ[LOCK_ENV] = os.pathsep.join(held)
    else:
        os.environ.pop(LOCK_ENV, None)


@contextlib.contextmanager
def results_lock(out: str | Path, what: str) -> Iterator[None]:
    """`lock_results` for the length of a `with` block (kept if it was held before)."""
    took = lock_results(out, what)
    try:
        yield
    finally:
        if took:
            unlock_results(out)
