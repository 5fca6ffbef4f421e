"""Source notebooks: clean (no outputs, one literal `parameters` cell), the Colab cell first,
what JupyterLab writes, how to run them where they are, computed readings, linted."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from helpers import ROOT

from distil_utils.tools import colab
from distil_utils.tools.reproduce import check_clean, declared_parameters, find_notebooks

NOTEBOOKS = find_notebooks()
SOURCE_NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_metadata_is_what_jupyterlab_writes(path):
    """JupyterLab fills in a kernelspec and language_info it finds missing, which marks a
    freshly opened notebook as modified; cell ids likewise (nbformat 4.5)."""
    nb = nbformat.read(path, as_version=4)
    assert nb.nbformat == 4 and nb.nbformat_minor >= 5
    assert nb.metadata["kernelspec"] == {"display_name": "Python 3 (ipykernel)",
                                         "language": "python", "name": "python3"}
    info = nb.metadata["language_info"]
    for key in ("codemirror_mode", "file_extension", "mimetype", "name", "nbconvert_exporter",
                "pygments_lexer", "version"):
        assert key in info, f"{path.name}: language_info lacks {key}"
    ids = [c.get("id") for c in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_says_how_to_run_it_on_binder_and_colab(path):
    nb = nbformat.read(path, as_version=4)
    intro = nb.cells[0].source
    assert "Shut Down Kernel" in intro and 'PROFILE = "binder"' in intro
    assert 'PROFILE = "colab"' in intro
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "colab" in params.source and "binder" in params.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_echo_no_paths_or_raw_dicts(path):
    """The last line of a cell is echoed: never a `write_result` path or a bare dict."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        last = cell.source.strip().splitlines()[-1]
        assert not last.startswith("write_result("), f"{path.name}: echoes a PosixPath"
        assert "print(\"paper" not in cell.source and "TABLE4_ABLATION)" not in cell.source


def test_every_section_ends_with_a_computed_reading():
    """Each notebook that compares with the paper formats its readings from numbers."""
    for path in NOTEBOOKS:
        text = Path(path).read_text()
        assert "display(Markdown(" in text, f"{path.name} has no computed reading"


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebooks_clean(path):
    """No outputs; exactly one `parameters` cell, literals only, declaring PROFILE/RESULTS_DIR."""
    assert check_clean(path, colab_cell=False) == [], \
        "fix with: python -m distil_utils.tools.reproduce --strip"
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    for node in ast.parse(cell.source).body:
        ast.literal_eval(node.value)
    assert declared_parameters(path)["PROFILE"] is None  # chosen by DISTIL_PROFILE, never saved


@pytest.mark.parametrize("path", SOURCE_NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebooks_start_with_the_colab_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source == colab.colab_cell_source(), \
        f"{path.name}: sync it with: python -m distil_utils.tools.reproduce --strip"


def test_notebooks_are_linted_with_ruff():
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "distil_utils", "notebooks",
                           "tests"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
