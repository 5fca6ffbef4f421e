"""The held-out masked-LM measure: deterministic, per-sequence counts that add up to the summary,
intervals that bracket it, paired differences."""

from __future__ import annotations

import pytest
from helpers import smoke_config, smoke_teacher

from distil_utils.distill import prepare_corpus
from distil_utils.heldout import evaluate_mlm, mlm_counts


def test_evaluate_mlm_is_deterministic_and_teacher_matches_full_student(
        tmp_path, corpus_file, tokenizer):
    from distil_utils.student import student_from_teacher

    cfg = smoke_config(tmp_path, corpus_file, preset="distill")
    _, held = prepare_corpus(cfg, tokenizer)
    teacher = smoke_teacher(tokenizer, cfg)
    a = evaluate_mlm(teacher, held, tokenizer, n_batches=3, seed=1)
    b = evaluate_mlm(teacher, held, tokenizer, n_batches=3, seed=1)
    full = evaluate_mlm(student_from_teacher(teacher, range(4)), held, tokenizer, n_batches=3,
                        seed=1)
    assert a == b and a["n_masked"] > 0
    assert abs(full["mlm_loss"] - a["mlm_loss"]) < 1e-4


def test_mlm_counts_add_up_to_the_summary_and_its_interval_brackets_it(
        tmp_path, corpus_file, tokenizer):
    from distil_utils.heldout import summarise_mlm

    cfg = smoke_config(tmp_path, corpus_file, preset="distill")
    _, held = prepare_corpus(cfg, tokenizer)
    counts = mlm_counts(smoke_teacher(tokenizer, cfg), held, tokenizer, batch_size=4, n_batches=3,
                        seed=1)
    assert 0 < len(counts["masked"]) <= 12  # one row per held-out sequence, 3 batches of <= 4
    assert (counts["correct"] <= counts["masked"]).all() and counts["masked"].sum() > 0
    summary = summarise_mlm(counts, seed=1)
    assert summary["n_masked"] == counts["masked"].sum()
    assert summary["mlm_acc"] == pytest.approx(
        100 * counts["correct"].sum() / counts["masked"].sum())
    assert summary["mlm_acc_low"] <= summary["mlm_acc"] <= summary["mlm_acc_high"]
    assert summary["mlm_loss"] == pytest.approx(counts["loss"].sum() / counts["masked"].sum())
    from distil_utils.heldout import paired_difference

    same = paired_difference(counts, counts, seed=1)
    assert same == {"delta": 0.0, "delta_low": 0.0, "delta_high": 0.0, "resolvable": False}
    better = {**counts, "correct": counts["masked"]}  # every masked token right
    diff = paired_difference(better, counts, seed=1)
    assert diff["delta"] == pytest.approx(100 - summary["mlm_acc"]) and diff["resolvable"]
    assert diff["delta_low"] <= diff["delta"] <= diff["delta_high"]
    with pytest.raises(ValueError, match="masked different positions"):
        paired_difference({**counts, "masked": counts["masked"] + 1}, counts)
