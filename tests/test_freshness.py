"""What the runner's --skip-done compares: a model folder's fingerprint."""

from __future__ import annotations


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


def test_skip_done_keys_on_the_content_of_the_data_a_notebook_read(tmp_path, monkeypatch):
    """Flipped SST-2 dev labels in the data folder: the notebook that read them runs again,
    and the reason names the file; the same data at another place does not re-run it."""
    import shutil

    from distil_utils.tools.freshness import data_of_run, stale_reason

    data = tmp_path / "data"
    (data / "glue" / "sst2").mkdir(parents=True)
    dev = data / "glue" / "sst2" / "validation.jsonl"
    dev.write_text('{"sentence": "bad", "label": 0}\n')
    out = tmp_path / "smoke"
    (out / "notebooks").mkdir(parents=True)
    executed = out / "notebooks" / "04_glue.ipynb"
    executed.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    reads = out / ".reads.04_glue.log"
    reads.write_text(f"{dev}\n{out / 'x.json'}\n")
    monkeypatch.setenv("DISTIL_DATA_DIR", str(data))
    record = {"status": "ok", "parameters": {}, "source_sha256": "s", "profile_sha256": "p",
              "files": {}, "code": {}, "libraries": {},
              "data": data_of_run(out, reads, str(data))}
    assert list(record["data"]) == ["<data_dir>/glue/sst2/validation.jsonl"]

    def why():
        return stale_reason(record, executed, {}, "s", "p", out, {}, {})

    assert why() is None
    moved = tmp_path / "elsewhere"
    shutil.copytree(data, moved)
    monkeypatch.setenv("DISTIL_DATA_DIR", str(moved))
    assert why() is None
    (moved / "glue" / "sst2" / "validation.jsonl").write_text('{"sentence": "bad", "label": 1}\n')
    assert why() == "data <data_dir>/glue/sst2/validation.jsonl changed since it ran"
    (moved / "glue" / "sst2" / "validation.jsonl").unlink()
    assert why().startswith("data <data_dir>/glue/sst2/validation.jsonl is missing")


def test_a_notebooks_code_is_what_it_imports_of_the_package(tmp_path):
    from helpers import write_notebook

    from distil_utils.tools.freshness import notebook_code, notebook_modules

    nb = write_notebook(tmp_path / "01_a.ipynb",
                        "%matplotlib inline\nfrom distil_utils.figures import save\n"
                        "from distil_utils import summary\nimport distil_utils.masking")
    assert notebook_modules(nb) == ["figures", "masking", "summary"]
    code = notebook_code(nb)
    assert "distil_utils/figures.py" in code and "distil_utils/results_io.py" in code
