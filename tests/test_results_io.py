"""Results folders: one writer at a time, and what a killed writer leaves is cleaned up."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, distill_cli, subprocess_env


def _lock_script(out, what, hold):
    code = ("import sys, time\nfrom distil_utils.results_io import lock_results\n"
            f"lock_results(sys.argv[1], {what!r})\nprint('held', flush=True)\n"
            + ("time.sleep(120)\n" if hold else ""))
    return [sys.executable, "-c", code, str(out)]


@pytest.mark.slow  # three interpreters and a command line (~9 s)
def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(tmp_path, corpus):
    from distil_utils.results_io import LOCK_ENV

    env = {k: v for k, v in subprocess_env().items() if k != LOCK_ENV}
    out = tmp_path / "smoke"
    holder = subprocess.Popen(_lock_script(out, "notebook 04_glue", True), env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(_lock_script(out, "second", False), env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "being written by another run" in second.stderr
        assert "notebook 04_glue" in second.stderr and f'"pid": {holder.pid}' in second.stderr
        cli = subprocess.run(distill_cli(tmp_path, corpus, 2), env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 2 and "being written by another run" in cli.stderr
    finally:
        holder.kill()
        holder.wait()
    # what a killed write leaves behind is removed by the next writer
    (out / ".glue_student.json.abc123.tmp").write_text("{half")
    (out / ".student.tmp").mkdir()
    third = subprocess.run(_lock_script(out, "third", False), env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert not (out / ".glue_student.json.abc123.tmp").exists()
    assert not (out / ".student.tmp").exists()


def test_the_lock_names_its_holder_lets_its_children_through_and_dies_with_it(tmp_path,
                                                                           monkeypatch):
    """One holder in a subprocess: this process is refused with the holder's record; killed
    (SIGKILL on POSIX), it leaves the folder free; held here, a child started with this
    environment passes, and giving the lock up removes the record."""
    import json
    import os

    from distil_utils import results_io
    from distil_utils.results_io import (
        HOLDER_NAME,
        LOCK_ENV,
        ResultsLockedError,
        lock_results,
        unlock_results,
    )

    monkeypatch.delenv(LOCK_ENV, raising=False)
    env = {k: v for k, v in subprocess_env().items() if k != LOCK_ENV}
    out = tmp_path / "res"
    holder = subprocess.Popen(_lock_script(out, "notebook 03_distillation", True), env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ResultsLockedError, match="being written by another run") as err:
            lock_results(out, "here")
        record = json.loads((out / HOLDER_NAME).read_text())
        assert record["pid"] == holder.pid and record["what"] == "notebook 03_distillation"
        assert set(record) == {"pid", "host", "what", "command", "since"}
        assert f'"pid": {holder.pid}' in str(err.value) and "shut down" in str(err.value)
    finally:
        holder.kill()  # SIGKILL: no exit handler runs, the OS drops the lock
        holder.wait()
    assert (out / HOLDER_NAME).exists()  # a killed holder's record stays; the lock does not
    try:
        assert lock_results(out, "here") is True
        assert json.loads((out / HOLDER_NAME).read_text())["pid"] == os.getpid()
        assert lock_results(out, "again") is False  # held by this process already
        assert str(out.resolve()) in os.environ[LOCK_ENV].split(os.pathsep)
        child = subprocess.run(_lock_script(out, "kernel", False), cwd=ROOT, text=True,
                               env={**env, LOCK_ENV: os.environ[LOCK_ENV]},
                               capture_output=True, timeout=120)
        assert child.returncode == 0 and child.stdout.strip() == "held", child.stderr
        other = subprocess.run(_lock_script(out, "other", False), env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
        assert other.returncode != 0 and '"what": "here"' in other.stderr
    finally:
        unlock_results(out)
    assert not (out / HOLDER_NAME).exists() and LOCK_ENV not in os.environ
    assert str(out.resolve()) not in results_io._HELD
    free = subprocess.run(_lock_script(out, "next", False), env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert free.returncode == 0, free.stderr
    assert not (out / HOLDER_NAME).exists()  # removed when that process ended


def test_a_refused_write_names_the_file_and_the_fix(tmp_path, monkeypatch):
    """A full disk, a file-size limit or a read-only folder: one line naming the file (not a
    temporary name) and what to do. Simulated: the tests run as root, whom permissions do not
    stop."""
    import errno
    import os
    import tempfile

    import filelock

    from distil_utils import results_io

    for code, words in ((errno.ENOSPC, "the disk is full"), (errno.EFBIG, "ulimit -f"),
                        (errno.EACCES, "chmod u\\+w"), (errno.EROFS, "read-only")):
        def refuse(*a, code=code, **k):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
        with pytest.raises(OSError, match=words) as err:
            results_io.write_json(tmp_path / "out" / "x.json", {"a": 1})
        assert f"cannot write {tmp_path / 'out' / 'x.json'}" in str(err.value)
        assert err.value.errno == code
    monkeypatch.undo()

    def locked_out(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(filelock.FileLock, "acquire", locked_out)
    with pytest.raises(PermissionError, match="chmod u\\+w") as err:
        results_io.lock_results(tmp_path / "ro", "test")
    assert ".writer.lock" in str(err.value) and "--results-dir" in str(err.value)
    # a library's own error with the system's wording (safetensors: "File too large")
    named = results_io.write_error("m/model.safetensors",
                                   RuntimeError("File too large (os error 27)"))
    assert isinstance(named, OSError) and "ulimit" in str(named)
    plain = ValueError("something else")
    assert results_io.write_error("x", plain) is plain


def test_every_record_names_the_processor_its_timings_were_measured_on(tmp_path, monkeypatch):
    """Speed ratios moved between runs on hosts that the platform string does not tell apart
    (the int8 student's 4.5x, later 2.9x): the records name the processor and the instruction
    sets that pick torch's kernels."""
    import platform

    from distil_utils import results_io

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example Xeon 8480\n"
                       "flags\t\t: fpu avx2 avx512f avx512_vnni amx_int8 sse4_2\n")
    real_path = results_io.Path
    monkeypatch.setattr(results_io, "Path",
                        lambda p: real_path(cpuinfo if p == "/proc/cpuinfo" else p))
    monkeypatch.setattr(platform, "processor", lambda: "")
    got = results_io.cpu()
    assert got.startswith("Example Xeon 8480 · ")
    assert got.endswith(" · avx2 avx512f avx512_vnni amx_int8")
    assert results_io.versions()["cpu"] == got
