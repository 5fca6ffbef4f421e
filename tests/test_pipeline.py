"""The notebooks' model pipeline: a student made under other settings is refused downstream,
one made under the same settings is reused."""

from __future__ import annotations

import pytest
from helpers import prepared_run, smoke_config


def test_downstream_refuses_a_student_made_under_other_settings(tmp_path, corpus):
    from distil_utils.artefacts import StaleArtefactError, read_stamp
    from distil_utils.distill import run_distillation
    from distil_utils.pipeline import ensure_models

    cfg = smoke_config(tmp_path, corpus, preset="small")
    tok, train, _, teacher, teacher_path, _ = prepared_run(cfg)
    run_distillation(cfg, teacher, tok, train)
    stamp = read_stamp(cfg.out / "student")
    assert stamp["inputs"]["teacher"] == read_stamp(teacher_path)["digest"]
    assert ensure_models(cfg)[2] == str(cfg.out / "student")
    with pytest.raises(StaleArtefactError, match=r"max_steps: 2 -> 3.*--only 03"):
        ensure_models(smoke_config(tmp_path, corpus, preset="small", max_steps=3))
    # a student distilled again under the same settings is loaded, not trained again
    student, history = run_distillation(cfg, teacher, tok, train)
    assert read_stamp(cfg.out / "student")["created"] == stamp["created"] and len(history) == 2
