"""Checkpoints: a resume under other settings, a damaged file or a checkpoint of another model
is a clear error, never a silent restart."""

from __future__ import annotations

import pytest
from helpers import make_tiny_bert, prepared_run, smoke_config, smoke_teacher

from distil_utils.checkpoint import CheckpointError
from distil_utils.distill import prepare_corpus, run_distillation


def test_bad_checkpoints_are_errors_not_restarts(tmp_path, corpus_file, tokenizer):
    cfg = smoke_config(tmp_path, corpus_file, preset="distill")
    train, _ = prepare_corpus(cfg, tokenizer)
    teacher = smoke_teacher(tokenizer, cfg)
    run_distillation(cfg, teacher, tokenizer, train, stop_at=4)
    ckpt = cfg.out / "checkpoints" / "student.pt"
    other = smoke_config(tmp_path, corpus_file, preset="distill", alpha_cos=0.0)
    with pytest.raises(CheckpointError, match="alpha_cos"):
        run_distillation(other, teacher, tokenizer, train)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(ckpt)):
        run_distillation(cfg, teacher, tokenizer, train)
    assert ckpt.exists(), "the damaged checkpoint must not be deleted or overwritten"


@pytest.mark.parametrize("key, value", [("heldout_docs", 11), ("tiny_heads", 4),
                                        ("distill_autocast", "bf16")])
def test_resume_refuses_any_setting_that_changes_the_run(tmp_path, corpus, key, value):
    from distil_utils.checkpoint import CheckpointError
    from distil_utils.distill import run_distillation

    cfg = smoke_config(tmp_path, corpus, preset="small", max_steps=4, adapt_steps=0)
    tok, train, _, teacher, _, _ = prepared_run(cfg)
    run_distillation(cfg, teacher, tok, train, stop_at=2)  # unfinished: step 2 of 4
    with pytest.raises(CheckpointError, match=f"{key}: checkpoint .* vs now {value!r}"):
        run_distillation(smoke_config(tmp_path, corpus, preset="small", max_steps=4,
                                      adapt_steps=0, **{key: value}), teacher, tok, train)


def test_a_checkpoint_that_does_not_fit_the_model_is_a_clear_error(tmp_path, corpus):
    from distil_utils.checkpoint import CheckpointError
    from distil_utils.distill import run_distillation

    cfg = smoke_config(tmp_path, corpus, preset="small", max_steps=4, adapt_steps=0)
    tok, train, _, teacher, _, _ = prepared_run(cfg)
    run_distillation(cfg, teacher, tok, train, stop_at=2)
    wider = make_tiny_bert(layers=2, hidden=64)  # same settings, another model: no raw error
    with pytest.raises(CheckpointError, match=r"student.pt does not fit this model.*Delete it"):
        run_distillation(cfg, wider, tok, train)
