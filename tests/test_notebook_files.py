"""Source-notebook hygiene: `strip_outputs` (nbstripout underneath) takes an executed copy
back to a committable notebook, ids, tags and the `parameters` cell kept, and leaves a clean
notebook's bytes alone. (The runner's executed copy of a real run: tests/suite/test_runner.py.)"""

from __future__ import annotations

import shutil

import nbformat
import pytest
from helpers import ROOT, write_notebook

from distil_utils.tools.notebook_files import (
    PAPERMILL_TAGS,
    check_clean,
    declared_parameters,
    find_notebooks,
    strip_outputs,
)

SOURCES = find_notebooks(ROOT / "notebooks")
EXECUTED = sorted((ROOT / "results" / "cpu" / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_a_clean_source_notebook_keeps_its_bytes(source, tmp_path):
    copy = tmp_path / source.name
    shutil.copy2(source, copy)
    assert strip_outputs(copy) is False
    assert copy.read_bytes() == source.read_bytes()


def _cells(nb, *, drop=()):
    """(id, type, tags, source) of each cell, but those tagged with one of `drop`."""
    return [(c.get("id"), c.cell_type, c.metadata.get("tags", []), c.source) for c in nb.cells
            if not set(drop) & set(c.metadata.get("tags", []))]


@pytest.mark.skipif(not EXECUTED, reason="no committed executed copies in results/cpu")
@pytest.mark.parametrize("executed", EXECUTED, ids=lambda p: p.name)
def test_an_executed_copy_strips_to_a_committable_notebook(executed, tmp_path):
    copy = tmp_path / executed.name
    shutil.copy2(executed, copy)
    ran = nbformat.read(executed, as_version=4)
    assert check_clean(copy, colab_cell=False)  # outputs, counts, papermill's cell
    assert strip_outputs(copy) is True
    # (the copies ran an older source whose parameters cell still set PROFILE = "smoke")
    assert [p for p in check_clean(copy, colab_cell=False) if "sets PROFILE" not in p] == []
    stripped = nbformat.read(copy, as_version=4)
    # papermill's injected cell gone, every other cell's id, tags and source as they were
    assert _cells(stripped) == _cells(ran, drop=PAPERMILL_TAGS)
    assert "papermill" not in stripped.metadata
    assert stripped.metadata.get("kernelspec") == ran.metadata.get("kernelspec")
    assert declared_parameters(copy)["PROFILE"] != "cpu"  # what the runner injected
    before = copy.read_bytes()
    assert strip_outputs(copy) is False and copy.read_bytes() == before


def test_strip_outputs_drops_both_papermill_cells_and_session_metadata(tmp_path):
    path = write_notebook(tmp_path / "01_x.ipynb", "print(1)")
    nb = nbformat.read(path, as_version=4)
    body = nb.cells[2]
    body.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    body.execution_count = 3
    body.metadata.update({"scrolled": True, "collapsed": False, "ExecuteTime": {"end": "x"},
                          "papermill": {"status": "completed"}, "tags": ["mine"],
                          "custom": {"kept": True}})
    # both of papermill's tags, in one notebook (nbstripout 0.9 drops only the last of several)
    nb.cells[2:2] = [nbformat.v4.new_code_cell("PROFILE = 'cpu'", metadata={"tags": [tag]})
                     for tag in PAPERMILL_TAGS]
    nb.metadata.update({"papermill": {"parameters": {}}, "widgets": {}, "signature": "x"})
    nbformat.write(nb, path)
    ids = [c.id for c in nb.cells]

    assert strip_outputs(path) is True
    out = nbformat.read(path, as_version=4)
    assert [c.id for c in out.cells] == [ids[0], ids[1], ids[-1]]  # the ids as written
    assert out.cells[1].metadata["tags"] == ["parameters"]
    kept = out.cells[2]
    assert kept.outputs == [] and kept.execution_count is None
    assert kept.metadata == {"tags": ["mine"], "custom": {"kept": True}}
    assert not {"papermill", "widgets", "signature"} & set(out.metadata)
    assert check_clean(path, colab_cell=False) == []


def test_a_failure_is_described_even_when_its_executed_copy_is_damaged(tmp_path):
    """The runner's failure path must not fail itself on a copy the failure cut short (a full
    disk, a killed kernel): it names the notebook and the error, without a cell."""
    from distil_utils.tools.notebook_files import _describe_failure

    source = ROOT / "notebooks" / "01_teacher_inspection.ipynb"
    executed = tmp_path / "01_teacher_inspection.ipynb"
    for damaged in ("", '{"cells": [{"cell_ty'):
        executed.write_text(damaged)
        cell, first, message = _describe_failure(OSError("No space left on device"), source,
                                                 executed)
        assert cell is None and "damaged executed copy" in message and "No space" in message
