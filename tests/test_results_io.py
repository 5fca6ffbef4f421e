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
