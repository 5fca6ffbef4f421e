"""The papermill runner on tiny fixture notebooks (papermill replaced where no kernel is
needed): cell timeouts, failures, checks before anything runs, parameters and the command line.

The runs that start real kernels are in tests/suite/test_runner.py."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import nbformat
import pytest
from helpers import write_notebook

from distil_utils.config import ROOT
from distil_utils.tools.reproduce import (
    SuiteError,
    check_clean,
    check_parameters,
    check_values,
    command_line,
    declared_parameters,
    find_notebooks,
    fingerprint,
    main,
    parse_value,
    run_suite,
    spelled_as_declared,
    stale_reason,
)


@pytest.fixture
def fake_papermill(monkeypatch):
    """papermill.execute_notebook replaced: records its keyword arguments, raises `error` if set."""
    import papermill

    calls: list[dict] = []

    def execute_notebook(input_path, output_path, **kwargs):
        calls.append(kwargs)
        nb = json.loads(Path(input_path).read_text())  # the copy papermill saves, with its record
        nb.setdefault("metadata", {})["papermill"] = {"input_path": str(input_path),
                                                      "output_path": str(output_path)}
        Path(output_path).write_text(json.dumps(nb))
        if fake.error:
            raise fake.error

    fake = type("Fake", (), {"calls": calls, "error": None})
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    return fake


@pytest.mark.parametrize("profile, override, expected", [
    ("smoke", None, 1800), ("binder", None, 1800), ("cpu", None, None), ("paper", None, None),
    ("smoke", 0, None), ("smoke", 7, 7), ("paper", 7, 7),
], ids=["ci", "binder", "cpu", "paper", "ci-0", "ci-7", "paper-7"])  # run by -k 'not smoke'
def test_cell_timeout_by_profile_reaches_papermill(suite_dir, tmp_path, fake_papermill,
                                                   profile, override, expected):
    done = run_suite(profile, only=["01", "03"], notebooks_dir=suite_dir,
                     results_dir=str(tmp_path), kernel="python3", cell_timeout=override,
                     quiet=True)
    assert [c["execution_timeout"] for c in fake_papermill.calls] == [expected, expected]
    assert all(c["kernel_name"] == "python3" for c in fake_papermill.calls)
    assert [r["cell_timeout"] for r in done] == [expected, expected]  # and in the log


@pytest.mark.parametrize("argv, expected", [([], 1800), (["--cell-timeout", "60"], 60),
                                            (["--cell-timeout", "0"], None)])
def test_cli_cell_timeout_reaches_papermill(suite_dir, tmp_path, fake_papermill, argv, expected):
    assert main(["--profile", "smoke", "--only", "01", "--notebooks-dir", str(suite_dir),
                 "--results-dir", str(tmp_path), *argv]) == 0
    assert [c["execution_timeout"] for c in fake_papermill.calls] == [expected]


def test_cell_timeout_is_a_clear_failure(suite_dir, tmp_path, fake_papermill):
    from nbclient.exceptions import CellTimeoutError

    fake_papermill.error = CellTimeoutError("A cell timed out while it was being executed, "
                                            "after 60 seconds.")
    with pytest.raises(SuiteError) as info:
        run_suite("smoke", only=["02", "03"], notebooks_dir=suite_dir, results_dir=str(tmp_path),
                  cell_timeout=60, quiet=True)
    msg = str(info.value)
    assert msg.startswith("02_check.ipynb failed at") and "CellTimeoutError" in msg
    assert "cell timeout: 60 s; for longer: --cell-timeout SECONDS (0: none)" in msg
    assert "--skip-done" in msg and len(fake_papermill.calls) == 1  # 03 did not run
    log = json.loads((tmp_path / "smoke" / "reproduce_log.json").read_text())["runs"]
    assert [(r["status"], r["cell_timeout"]) for r in log] == [("failed", 60)]
    assert "--cell-timeout" in log[0]["error"]


def test_other_failures_do_not_blame_the_cell_timeout(suite_dir, tmp_path, fake_papermill):
    fake_papermill.error = RuntimeError("Kernel died")
    with pytest.raises(SuiteError) as info:
        run_suite("smoke", only=["02"], notebooks_dir=suite_dir, results_dir=str(tmp_path),
                  quiet=True)
    assert "Kernel died" in str(info.value) and "--cell-timeout" not in str(info.value)


def test_cli_exits_non_zero_with_the_reason(suite_dir, tmp_path, capsys):
    rc = main(["--profile", "smoke", "--notebooks-dir", str(suite_dir), "--results-dir",
               str(tmp_path), "-p", "X_TYPO", "3"])
    err = capsys.readouterr().err
    assert rc == 1 and "X_TYPO" in err and "01_first.ipynb" in err


def test_undeclared_parameter_is_refused_before_running(suite_dir, tmp_path):
    with pytest.raises(SuiteError) as info:
        run_suite("smoke", params={"MAX_STPES": 3}, notebooks_dir=suite_dir,
                  results_dir=str(tmp_path), quiet=True)
    msg = str(info.value)
    assert "01_first.ipynb does not declare parameter(s) ['MAX_STPES']" in msg
    assert "['NAME', 'PROFILE', 'RESULTS_DIR', 'X']" in msg
    assert not (tmp_path / "smoke").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"profile": "nope"}, "unknown profile 'nope'"),
    ({"only": ["09"]}, r"--only \['09'\] matches no notebook"),
    ({"params": {"PROFILE": "cpu"}}, "--profile, not -p PROFILE"),
])
def test_bad_arguments_are_clear_errors(suite_dir, tmp_path, kwargs, match):
    kwargs = {"profile": "smoke", **kwargs}
    with pytest.raises(SuiteError, match=match):
        run_suite(notebooks_dir=suite_dir, results_dir=str(tmp_path), quiet=True, **kwargs)


def test_two_runners_on_one_folder_keep_each_others_records(tmp_path):
    from distil_utils.tools.reproduce import _log, _read_log

    path = tmp_path / "smoke" / "reproduce_log.json"
    path.parent.mkdir()
    first, second = _read_log(path), _read_log(path)  # both runners start on an empty log
    _log(path.parent, second, {"notebook": "05_x.ipynb", "status": "ok"})
    _log(path.parent, first, {"notebook": "04_x.ipynb", "status": "ok"})
    runs = {r["notebook"]: r["status"] for r in json.loads(path.read_text())["runs"]}
    assert runs == {"04_x.ipynb": "ok", "05_x.ipynb": "ok"}


def test_find_notebooks_order_and_only(suite_dir):
    names = [p.name for p in find_notebooks(suite_dir)]
    assert names == ["01_first.ipynb", "02_check.ipynb", "03_last.ipynb"]
    assert [p.name for p in find_notebooks(suite_dir, ["03", "1"])] == \
        ["01_first.ipynb", "03_last.ipynb"]
    assert [p.name for p in find_notebooks(suite_dir, ["02_check"])] == ["02_check.ipynb"]


def test_parameters_cell_must_hold_literals(tmp_path):
    path = write_notebook(tmp_path / "01_x.ipynb", "pass", params="PROFILE = 'smoke'\nY = 2 * 3")
    with pytest.raises(SuiteError, match="parameter Y must be a literal"):
        declared_parameters(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    with pytest.raises(SuiteError, match=r"exactly one cell tagged 'parameters' \(found 2\)"):
        declared_parameters(path)


def test_values_and_command_line_round_trip():
    assert parse_value("200") == 200 and parse_value("None") is None
    assert parse_value("['sst2', 'rte']") == ["sst2", "rte"] and parse_value("sst2") == "sst2"
    params = {"MAX_STEPS": 200, "TASK": "sst2", "S": "None", "T": ("a b",)}
    cmd = command_line("cpu", ["03"], params)
    assert cmd.startswith("python -m distil_utils.tools.reproduce --profile cpu --only 03 "
                          "-p MAX_STEPS 200 -p TASK sst2 -p S ")
    args = shlex.split(cmd)
    parsed = {args[i + 1]: parse_value(args[i + 2]) for i, a in enumerate(args) if a == "-p"}
    assert parsed == params  # the string "None" stays a string, the tuple a tuple


def test_check_clean_cli(suite_dir, capsys):
    assert main(["--check-clean", "--notebooks-dir", str(suite_dir)]) == 1
    assert "first code cell is not" in capsys.readouterr().err


# --- a runner that talks, one spelling of a parameter (issue 24) -----------------------------

def test_parameter_names_are_read_in_any_case(tmp_path):
    nb = write_notebook(tmp_path / "01_a.ipynb", "pass",
                        params="PROFILE = None\nRESULTS_DIR = None\nMAX_STEPS = None")
    assert spelled_as_declared([nb], {"max_steps": 3, "Results_Dir": "x"}) == \
        {"MAX_STEPS": 3, "RESULTS_DIR": "x"}
    with pytest.raises(SuiteError, match="second time"):
        spelled_as_declared([nb], {"max_steps": 3, "MAX_STEPS": 4})
    unknown = spelled_as_declared([nb], {"max_stpes": 3})
    with pytest.raises(SuiteError, match=r"max_stpes is declared by no notebook.*MAX_STEPS"):
        check_parameters([nb], unknown)


def test_a_bad_value_is_refused_before_any_notebook_runs_and_not_repeated_as_a_hint():
    check_values("smoke", {"SEED": 7, "MAX_STEPS": 3, "ABLATIONS": False})  # fine
    with pytest.raises(SuiteError, match="before anything runs.*seed") as err:
        check_values("smoke", {"SEED": "abc"})
    assert "resume with" not in str(err.value) and "-p seed 42" in str(err.value)


def test_the_distillation_command_line_takes_either_case():
    from distil_utils.distill import parse_overrides

    assert parse_overrides([["SEED", "7"], ["max_steps", "20"]]) == {"seed": 7, "max_steps": 20}


def test_skip_done_says_why_a_notebook_runs_again(tmp_path):
    out = tmp_path / "smoke"
    (out / "notebooks").mkdir(parents=True)
    executed = out / "notebooks" / "01_a.ipynb"
    executed.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (out / "a.json").write_text("1")
    code = {"distil_utils/masking.py": "m", "distil_utils/figures.py": "f"}
    libs = {"torch": "2.13.0", "numpy": "2.4.6"}
    done = {"status": "ok", "parameters": {"PROFILE": "smoke"}, "source_sha256": "s",
            "profile_sha256": "p", "files": {"a.json": fingerprint(out / "a.json")},
            "code": code, "libraries": libs, "data": {}}

    def why(previous=done, injected=None, digest="s", settings="p", now_code=code,
            now_libs=libs):
        return stale_reason(previous, executed, injected or {"PROFILE": "smoke"}, digest,
                            settings, out, now_code, now_libs)

    assert why() is None
    assert why(None) == "never run into this results folder"
    # the code, the libraries and the data are inputs like the settings (issue 26, point 1)
    assert why(now_code={**code, "distil_utils/masking.py": "m2"}) == \
        "code changed: distil_utils/masking.py"
    assert why(now_libs={**libs, "torch": "2.14.0"}) == \
        "libraries changed: torch 2.13.0 -> 2.14.0"
    old = {k: v for k, v in done.items() if k != "libraries"}  # a log from before
    assert why(old) == "its record does not say which libraries made it (an older runner)"
    assert "'failed'" in why({**done, "status": "failed"})
    assert why(injected={"PROFILE": "smoke", "SEED": 7}) == \
        "parameters changed: SEED (not set) -> 7"
    assert why(digest="t") == "its source notebook changed"
    assert "profile's settings" in why(settings="q")
    (out / "a.json").write_text("2")
    assert why() == "a.json changed since it ran"
    (out / "a.json").unlink()
    assert why() == "a.json is missing since it ran"
    (out / "a.json").write_text("1")
    whole = executed.read_text()
    for damaged in ("", whole[:20]):  # emptied, cut off: as good as missing
        executed.write_text(damaged)
        assert why() == "its executed copy 01_a.ipynb is damaged (empty or not a notebook)"
    executed.unlink()
    assert "executed copy" in why()


def test_kernels_talk_over_ipc_so_ipykernel_has_no_tcp_warning():
    import os

    from distil_utils.tools.reproduce import _kernel_transport

    opts = _kernel_transport()
    if os.name == "posix":
        assert opts["config"]["KernelManager"]["transport"] == "ipc"
    else:
        assert opts == {}


def test_check_clean_names_a_notebook_saved_with_a_profile(tmp_path):
    nb = write_notebook(tmp_path / "01_a.ipynb", "pass",
                        params="PROFILE = 'binder'\nRESULTS_DIR = None")
    problems = check_clean(nb, colab_cell=False)
    assert any("PROFILE = 'binder'" in p and "DISTIL_PROFILE=binder" in p for p in problems)


def test_binder_starts_the_notebooks_on_the_binder_profile():
    import os
    import subprocess

    start = ROOT / "binder" / "start"
    assert os.access(start, os.X_OK)
    env = {k: v for k, v in os.environ.items() if k != "DISTIL_PROFILE"}
    out = subprocess.run([str(start), "sh", "-c", "echo $DISTIL_PROFILE"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "binder"


def test_the_executed_copy_appears_whole_or_not_at_all(suite_dir, tmp_path, fake_papermill,
                                                      monkeypatch):
    """papermill rewrites its output after every cell: it writes a hidden copy, renamed to the
    executed copy when the run ends, ok or failed; a run killed midway leaves no executed copy
    (so `--skip-done` runs it again) and never a half-written one under the real name."""
    import papermill

    out = tmp_path / "smoke" / "notebooks"
    run_suite("smoke", only=["01"], notebooks_dir=suite_dir, results_dir=str(tmp_path),
              quiet=True)
    assert (out / "01_ok.ipynb").is_file() or list(out.glob("01_*.ipynb"))
    assert not list(out.glob(".*partial*")), "the hidden copy is renamed, not left behind"
    (executed,) = out.glob("01_*.ipynb")
    recorded = json.loads(executed.read_text())["metadata"]["papermill"]["output_path"]
    assert Path(recorded).resolve() == executed.resolve(), "it names itself, not the hidden copy"
    seen = []

    def killed(input_path, output_path, **kwargs):
        seen.append(Path(output_path).name)
        Path(output_path).write_text('{"cells": [')  # cut off mid-write by the kill
        raise KeyboardInterrupt  # stands for the SIGKILL: nothing after this line runs

    monkeypatch.setattr(papermill, "execute_notebook", killed)
    with pytest.raises(KeyboardInterrupt):
        run_suite("smoke", only=["01"], notebooks_dir=suite_dir, results_dir=str(tmp_path),
                  quiet=True)
    assert seen and seen[0].startswith(".") and seen[0].endswith(".partial.ipynb")
