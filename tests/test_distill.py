"""Corpus preparation and the distillation loop: resume, checkpoints, DDP, command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import write_corpus

from distil_utils.checkpoint import CheckpointError
from distil_utils.config import get_config
from distil_utils.data import length_grouped_batches, load_corpus, tokenize_corpus
from distil_utils.distill import (
    main,
    prepare_corpus,
    run_distillation,
)
from distil_utils.heldout import evaluate_mlm, mlm_counts
from distil_utils.teacher import tiny_teacher

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("the model learns a small student from a large teacher by matching its soft "
         "predictions on masked words while the cosine loss aligns hidden states").split()


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "docs.txt", WORDS, 160, 5, 60, 0)


def _cfg(tmp, corpus_file, **kw):
    base = dict(results_dir=str(tmp), corpus=(str(corpus_file),), corpus_max_docs=None,
                heldout_docs=10, max_seq_len=32, min_seq_len=4, batch_size=4, max_steps=8,
                checkpoint_every=4, log_every=1, adapt_steps=0, tiny_layers=4, tiny_hidden=32)
    base.update(kw)
    return get_config("smoke", **base)


def _teacher(tokenizer, cfg):
    t = tiny_teacher(len(tokenizer), cfg.tiny_layers, cfg.tiny_hidden, 2, 64, seed=0)
    return t.eval()


def test_corpus_is_split_into_bounded_sequences(tmp_path, corpus_file, tokenizer):
    cfg = _cfg(tmp_path, corpus_file)
    train_docs, held_docs = load_corpus(cfg)
    assert len(held_docs) == 10 and len(train_docs) == 150
    seqs = tokenize_corpus(train_docs, tokenizer, 32, 4)
    lengths = seqs["length"]
    assert max(lengths) <= 32 and min(lengths) >= 4
    first = seqs[0]["input_ids"]
    assert first[0] == tokenizer.cls_token_id and first[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in first  # a real vocabulary, not the 5-token trap


def test_empty_or_too_short_corpus_is_a_clear_error(tmp_path, corpus_file, tokenizer):
    cfg = _cfg(tmp_path, corpus_file)
    docs, _ = load_corpus(cfg)
    with pytest.raises(ValueError, match="min_seq_len"):
        tokenize_corpus(docs, tokenizer, 32, 1000)
    with pytest.raises(ValueError, match="empty"):
        tokenize_corpus(docs.select([]), tokenizer, 32, 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no .txt or .jsonl"):
        load_corpus(_cfg(tmp_path, empty))


def test_length_grouped_batches_cover_everything_with_little_padding():
    import random

    rng = random.Random(1)
    lengths = [rng.randint(5, 128) for _ in range(2000)]
    batches = length_grouped_batches(lengths, 16, seed=0, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(2000))
    assert batches == length_grouped_batches(lengths, 16, seed=0, epoch=0)
    assert batches != length_grouped_batches(lengths, 16, seed=0, epoch=1)

    def padding(bs):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)

    random_batches = [list(range(i, min(i + 16, 2000))) for i in range(0, 2000, 16)]
    assert padding(batches) < 0.2 * padding(random_batches)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, corpus_file, tokenizer):
    cfg_a = _cfg(tmp_path / "a", corpus_file)
    train, _ = prepare_corpus(cfg_a, tokenizer)
    teacher = _teacher(tokenizer, cfg_a)
    student_a, hist_a = run_distillation(cfg_a, teacher, tokenizer, train)

    cfg_b = _cfg(tmp_path / "b", corpus_file)
    _, first = run_distillation(cfg_b, teacher, tokenizer, train, stop_at=4)
    assert len(first) == 4 and not (cfg_b.out / "student").exists()
    student_b, hist_b = run_distillation(cfg_b, teacher, tokenizer, train)

    assert [h["step"] for h in hist_b] == list(range(1, 9))
    for a, b in zip(hist_a[4:], hist_b[4:], strict=True):
        for k in ("loss", "ce", "mlm", "cos"):
            assert abs(a[k] - b[k]) < 1e-6, (a["step"], k, a[k], b[k])
    for (n, pa), (_, pb) in zip(student_a.state_dict().items(),
                                student_b.state_dict().items(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), n
    # the losses moved: the loop really trained
    assert hist_a[0]["loss"] != hist_a[-1]["loss"]
    assert all(h["lr"] >= 0 for h in hist_a) and hist_a[-1]["lr"] < max(h["lr"] for h in hist_a)
    # a finished run is not redone
    _, again = run_distillation(cfg_b, teacher, tokenizer, train)
    assert again == hist_b
    from transformers import DistilBertForMaskedLM
    assert DistilBertForMaskedLM.from_pretrained(cfg_a.out / "student").config.n_layers == 2


def test_bad_checkpoints_are_errors_not_restarts(tmp_path, corpus_file, tokenizer):
    cfg = _cfg(tmp_path, corpus_file)
    train, _ = prepare_corpus(cfg, tokenizer)
    teacher = _teacher(tokenizer, cfg)
    run_distillation(cfg, teacher, tokenizer, train, stop_at=4)
    ckpt = cfg.out / "checkpoints" / "student.pt"
    other = _cfg(tmp_path, corpus_file, alpha_cos=0.0)
    with pytest.raises(CheckpointError, match="alpha_cos"):
        run_distillation(other, teacher, tokenizer, train)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(ckpt)):
        run_distillation(cfg, teacher, tokenizer, train)
    assert ckpt.exists(), "the damaged checkpoint must not be deleted or overwritten"


def test_evaluate_mlm_is_deterministic_and_teacher_matches_full_student(
        tmp_path, corpus_file, tokenizer):
    from distil_utils.student import student_from_teacher

    cfg = _cfg(tmp_path, corpus_file)
    _, held = prepare_corpus(cfg, tokenizer)
    teacher = _teacher(tokenizer, cfg)
    a = evaluate_mlm(teacher, held, tokenizer, n_batches=3, seed=1)
    b = evaluate_mlm(teacher, held, tokenizer, n_batches=3, seed=1)
    full = evaluate_mlm(student_from_teacher(teacher, range(4)), held, tokenizer, n_batches=3,
                        seed=1)
    assert a == b and a["n_masked"] > 0
    assert abs(full["mlm_loss"] - a["mlm_loss"]) < 1e-4


def test_mlm_counts_add_up_to_the_summary_and_its_interval_brackets_it(
        tmp_path, corpus_file, tokenizer):
    from distil_utils.heldout import summarise_mlm

    cfg = _cfg(tmp_path, corpus_file)
    _, held = prepare_corpus(cfg, tokenizer)
    counts = mlm_counts(_teacher(tokenizer, cfg), held, tokenizer, batch_size=4, n_batches=3,
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


def test_command_line_runs_the_pipeline(tmp_path, corpus_file, capsys):
    main(["--profile", "smoke", "-p", "results_dir", str(tmp_path), "-p", "corpus",
          f"('{corpus_file}',)", "-p", "corpus_max_docs", "None", "-p", "heldout_docs", "10",
          "-p", "max_steps", "3", "-p", "adapt_steps", "2", "-p", "max_seq_len", "32"])
    out = capsys.readouterr().out
    assert "step 3: loss" in out and "held-out masked-token accuracy" in out
    run = json.loads((tmp_path / "smoke" / "student_run.json").read_text())
    assert run["metrics"]["n_masked"] > 0 and 0 <= run["metrics"]["mlm_acc"] <= 100
    assert (tmp_path / "smoke" / "student" / "config.json").exists()
    assert (tmp_path / "smoke" / "teacher" / "config.json").exists()
    assert (tmp_path / "smoke" / "teacher_adaptation.json").exists()


def test_torchrun_two_cpu_processes_keep_identical_replicas(tmp_path, corpus_file):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from distil_utils.config import get_config
        from distil_utils.devices import dist_info
        from distil_utils.distill import prepare_corpus, run_distillation
        from distil_utils.hub import load_tokenizer
        from distil_utils.teacher import tiny_teacher
        cfg = get_config("smoke", results_dir={str(tmp_path)!r}, corpus=({str(corpus_file)!r},),
                         corpus_max_docs=None, heldout_docs=10, max_seq_len=32, min_seq_len=4,
                         batch_size=4, max_steps=4, checkpoint_every=2, adapt_steps=0)
        tok = load_tokenizer("minilm")
        train, _ = prepare_corpus(cfg, tok)
        if "WORLD_SIZE" not in os.environ:  # one process first: distill --prepare-corpus
            raise SystemExit(0)
        teacher = tiny_teacher(len(tok), 2, 32, 2, 64, seed=0)
        student, hist = run_distillation(cfg, teacher, tok, train)
        rank, world = dist_info()
        assert world == 2
        torch.save(student.state_dict(), {str(tmp_path)!r} + f"/rank{{rank}}.pt")
        torch.distributed.destroy_process_group()
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    prep = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    init = tiny_teacher(30522, 2, 32, 2, 64, seed=0)
    assert not torch.equal(a["distilbert.transformer.layer.0.ffn.lin1.weight"],
                           init.bert.encoder.layer[0].intermediate.dense.weight)
    assert (tmp_path / "smoke" / "student" / "config.json").exists()
