"""The papermill runner end to end: real kernels on tiny fixture notebooks (in order, copies
and log, --skip-done, failures, cell timeouts), and what --skip-done compares."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from helpers import write_notebook

from distil_utils.tools.reproduce import (
    SuiteError,
    check_clean,
    declared_parameters,
    run_suite,
    strip_outputs,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(suite_dir, tmp_path_factory):
    """The whole fixture suite once, X=3: three kernels, shared by the tests below."""
    res = tmp_path_factory.mktemp("results")
    before = {k: os.environ.get(k) for k in ("DISTIL_COMMAND", "PYTHONPATH")}
    done = run_suite("smoke", params={"X": 3}, notebooks_dir=suite_dir, results_dir=str(res),
                     quiet=True)
    assert {k: os.environ.get(k) for k in before} == before, "the environment must be restored"
    return res, done


@pytest.mark.slow
def test_runs_in_order_and_writes_copies_and_log(first_run):
    res, done = first_run
    assert [r["notebook"] for r in done] == ["01_first.ipynb", "02_check.ipynb", "03_last.ipynb"]
    assert all(r["status"] == "ok" and r["seconds"] >= 0 for r in done)
    for r in done:
        executed = res / "smoke" / "notebooks" / r["notebook"]
        nb = nbformat.read(executed, as_version=4)
        assert nb.metadata.papermill.parameters["X"] == 3
        assert not nb.metadata.papermill.exception
    # RESULTS_DIR and the command line reach the kernel
    command = (res / "01_smoke_3.txt").read_text()
    assert command.startswith("python -m distil_utils.tools.reproduce --profile smoke")
    assert "-p X 3" in command and (res / "03_smoke_3.txt").exists()
    log = json.loads((res / "smoke" / "reproduce_log.json").read_text())
    assert [r["notebook"] for r in log["runs"]] == [r["notebook"] for r in done]
    rec = log["runs"][0]
    assert rec["status"] == "ok" and rec["parameters"]["X"] == 3
    assert rec["parameters"]["RESULTS_DIR"] == str(res) and rec["parameters"]["PROFILE"] == "smoke"
    assert {"python", "torch", "transformers"} <= set(rec["versions"])


@pytest.mark.slow
def test_skip_done_skips_only_what_is_done_with_the_same_parameters(first_run, suite_dir):
    res, _ = first_run
    again = run_suite("smoke", params={"X": 3}, notebooks_dir=suite_dir, results_dir=str(res),
                      skip_done=True, quiet=True)
    assert [r["status"] for r in again] == ["skipped"] * 3
    # other parameters: not done, runs (one notebook, to stay quick)
    other = run_suite("smoke", only=["01"], params={"X": 4}, notebooks_dir=suite_dir,
                      results_dir=str(res), skip_done=True, quiet=True)
    assert [r["status"] for r in other] == ["ok"] and (res / "01_smoke_4.txt").exists()
    log = {r["notebook"]: r for r in
           json.loads((res / "smoke" / "reproduce_log.json").read_text())["runs"]}
    assert log["01_first.ipynb"]["parameters"]["X"] == 4  # the others' records are kept
    assert log["03_last.ipynb"]["parameters"]["X"] == 3


@pytest.mark.slow
def test_skip_done_reruns_what_an_edited_profile_would_change(first_run, suite_dir,
                                                              monkeypatch):
    from distil_utils.config import PROFILES

    res, _ = first_run
    monkeypatch.setitem(PROFILES, "smoke", {**PROFILES["smoke"], "max_steps": 13})
    again = run_suite("smoke", only=["02"], params={"X": 3}, notebooks_dir=suite_dir,
                      results_dir=str(res), skip_done=True, quiet=True)
    assert [r["status"] for r in again] == ["ok"]


@pytest.mark.slow
def test_failure_names_notebook_and_cell_keeps_copy_and_stops(suite_dir, tmp_path):
    with pytest.raises(SuiteError) as info:
        run_suite("smoke", only=["02", "03"], params={"X": 9}, notebooks_dir=suite_dir,
                  results_dir=str(tmp_path), quiet=True)
    msg = str(info.value)
    assert "02_check.ipynb failed at cell 2" in msg
    assert "assert X <= 5" in msg and "AssertionError: X is too big" in msg
    assert "--skip-done" in msg
    kept = tmp_path / "smoke" / "notebooks" / "02_check.ipynb"
    assert str(kept) in msg and "X is too big" in kept.read_text()
    assert not (tmp_path / "smoke" / "notebooks" / "03_last.ipynb").exists()
    assert not (tmp_path / "03_smoke_9.txt").exists()
    log = json.loads((tmp_path / "smoke" / "reproduce_log.json").read_text())["runs"]
    assert [(r["notebook"], r["status"], r["cell"]) for r in log] == \
        [("02_check.ipynb", "failed", 2)]
    assert info.value.record["cell_source"].startswith("assert X <= 5")


@pytest.mark.slow
def test_a_real_kernel_past_the_cell_timeout_fails_clearly(tmp_path):
    """papermill really stops the cell and raises a TimeoutError (one kernel, a few seconds)."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    write_notebook(nbs / "01_sleep.ipynb", "import time\ntime.sleep(30)")
    with pytest.raises(SuiteError, match=r"(?s)01_sleep.ipynb failed at cell 2 «import time».*"
                       r"cell timeout: 2 s; for longer: --cell-timeout"):
        run_suite("cpu", notebooks_dir=nbs, results_dir=str(tmp_path / "res"), cell_timeout=2,
                  quiet=True)


@pytest.mark.slow
def test_strip_outputs_makes_an_executed_copy_clean(first_run, tmp_path):
    res, _ = first_run
    copy = tmp_path / "01_first.ipynb"
    copy.write_bytes((res / "smoke" / "notebooks" / "01_first.ipynb").read_bytes())
    assert check_clean(copy, colab_cell=False)  # outputs, counts, papermill cells
    assert strip_outputs(copy) is True
    assert check_clean(copy, colab_cell=False) == []
    assert strip_outputs(copy) is False  # clean: untouched
    assert declared_parameters(copy)["X"] == 1  # the injected cell is gone


WRITES = """from distil_utils.config import get_config
from distil_utils.artefacts import write_result
cfg = get_config(PROFILE, results_dir=RESULTS_DIR)
write_result(cfg.out / "01_a.json", {"v": 1}, cfg)"""


READS = """from distil_utils.config import get_config
from distil_utils.results_io import read_result
from distil_utils.artefacts import write_result
cfg = get_config(PROFILE, results_dir=RESULTS_DIR)
v = read_result(cfg.out / "01_a.json")["metrics"]["v"]
write_result(cfg.out / "02_b.json", {"v": 2 * v}, cfg)"""


def test_skip_done_compares_every_file_a_notebook_read_and_wrote(tmp_path):
    import nbformat

    from distil_utils.tools.reproduce import run_suite

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, body in [("01_write", WRITES), ("02_read", READS)]:
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("PROFILE = 'smoke'\nRESULTS_DIR = None")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, nbs / f"{name}.ipynb")
    res = tmp_path / "results"
    out = res / "smoke"

    def run():
        done = run_suite("smoke", notebooks_dir=nbs, results_dir=str(res), skip_done=True,
                         quiet=True)
        return [r["status"] for r in done]

    assert run() == ["ok", "ok"]
    log = json.loads((out / "reproduce_log.json").read_text())["runs"]
    assert "01_a.json" in log[0]["files"] and set(log[1]["files"]) == {"01_a.json",
                                                                      "02_b.json"}
    assert run() == ["skipped", "skipped"]
    (out / "02_b.json").unlink()  # a deleted result: only its notebook runs again
    assert run() == ["skipped", "ok"]
    (out / "01_a.json").unlink()  # an upstream result re-made: everything downstream runs
    assert run() == ["ok", "ok"]
    data = json.loads((out / "reproduce_log.json").read_text())
    for rec in data["runs"]:
        rec.pop("files")  # a log without files (older, or committed without the models)
    (out / "reproduce_log.json").write_text(json.dumps(data))
    assert run() == ["ok", "ok"]
