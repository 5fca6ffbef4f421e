"""The papermill runner on tiny fixture notebooks, and the committed notebooks' hygiene."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from distil_utils.reproduce import SuiteError, declared_parameters, main, run_suite

ROOT = Path(__file__).resolve().parent.parent


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "smoke"\nX = 1\nRESULTS_DIR = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture()
def suite(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_a.ipynb", "from pathlib import Path\n"
              "Path(RESULTS_DIR, f'a_{PROFILE}_{X}.txt').write_text('x')")
    _notebook(d / "02_b.ipynb", "assert X < 5, 'X too big'")
    return d


def test_runs_in_order_and_keeps_executed_copies(suite, tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    log = run_suite("smoke", params={"X": 3}, notebooks_dir=suite, results_dir=str(res),
                    quiet=True)
    assert [r["notebook"] for r in log] == ["01_a.ipynb", "02_b.ipynb"]
    assert all(r["status"] == "ok" and r["seconds"] >= 0 for r in log)
    assert (res / "a_smoke_3.txt").exists()
    assert (res / "smoke" / "notebooks" / "02_b.ipynb").exists()
    saved = json.loads((res / "smoke" / "reproduce_log.json").read_text())
    assert len(saved["runs"]) == 2 and "torch" in saved["versions"]
    again = run_suite("smoke", params={"X": 3}, notebooks_dir=suite, results_dir=str(res),
                      skip_done=True, quiet=True)
    assert all(r["status"] == "skipped (done)" for r in again)


def test_undeclared_parameter_is_refused_before_running(suite, tmp_path):
    with pytest.raises(SuiteError, match=r"does not declare parameter\(s\) \['MAX_STPES'\]"):
        run_suite("smoke", params={"MAX_STPES": 3}, notebooks_dir=suite,
                  results_dir=str(tmp_path), quiet=True)
    assert not (tmp_path / "smoke" / "notebooks").exists()


def test_failure_names_notebook_and_cell_and_keeps_the_copy(suite, tmp_path, capsys):
    res = tmp_path / "res"
    res.mkdir()
    with pytest.raises(SuiteError, match=r"02_b.ipynb failed at cell 2 .*X too big"):
        run_suite("smoke", params={"X": 9}, notebooks_dir=suite, results_dir=str(res),
                  quiet=True)
    kept = res / "smoke" / "notebooks" / "02_b.ipynb"
    assert kept.exists() and "AssertionError" in kept.read_text()
    log = json.loads((res / "smoke" / "reproduce_log.json").read_text())["runs"]
    assert log[-1]["status"] == "failed"


def test_only_selects_and_unknown_is_an_error(suite, tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    log = run_suite("smoke", only=["02"], notebooks_dir=suite, results_dir=str(res), quiet=True)
    assert [r["notebook"] for r in log] == ["02_b.ipynb"]
    with pytest.raises(SuiteError, match="no notebook matches"):
        run_suite("smoke", only=["09"], notebooks_dir=suite, results_dir=str(res), quiet=True)


def test_cli_exit_code(tmp_path, capsys):
    rc = main(["--profile", "smoke", "--only", "99", "--results-dir", str(tmp_path)])
    assert rc == 1 and "no notebook matches" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")),
                         ids=lambda p: p.name)
def test_source_notebooks_are_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{path.name} is committed with outputs"
    assert not any(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    params = declared_parameters(path)  # exactly one parameters cell, literals only
    assert params["PROFILE"] == "smoke" and "RESULTS_DIR" in params
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "google.colab" in first_code.source
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                ast.literal_eval(node.value)
