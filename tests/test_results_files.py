"""Results files: one declared schema per file, shared by its writer and its readers."""

from __future__ import annotations

import pytest

from distil_utils.config import get_config
from distil_utils.summary import collect


def test_each_results_file_has_one_declared_schema_that_writers_and_readers_share(tmp_path):
    from distil_utils.results_files import FILES, GLUE, GLUE_MODEL

    assert len({f.pattern for f in FILES}) == len(FILES)  # one declaration per file
    cfg = get_config("smoke", results_dir=str(tmp_path))
    with pytest.raises(ValueError, match="missing keys"):
        GLUE.write({"models": {}}, cfg)
    with pytest.raises(ValueError, match="undeclared keys"):
        GLUE.write({k: {} for k in (*GLUE.keys, "extra")}, cfg)
    assert not (cfg.out / "04_glue.json").exists()
    with pytest.raises(KeyError, match="declares no key"):
        GLUE.get({}, "model")
    path = GLUE.write({k: {} for k in GLUE.keys}, cfg, notebook="04_glue")
    assert path == cfg.out / "04_glue.json"
    assert collect(cfg.out)["04_glue"] == {k: {} for k in GLUE.keys}
    assert GLUE_MODEL.stem(name="student") == "glue_student"
    assert GLUE_MODEL.get({"glue_student": {"score": 50.0}}, "score", name="student") == 50.0
