"""Reliability: a killed run resumes to the same weights; bad input fails early and clearly.

Each case asserts the error type and that the message names the problem (and, where there is
one, the fix).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_bert

from distil_utils.config import get_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(3)
    words = "alpha beta gamma delta river mountain city music science history".split()
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(6, 50)))
                              for _ in range(200)) + "\n")
    return path


def _cli(results: Path, corpus: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "distil_utils.distill", "--profile", "smoke",
            "-p", "results_dir", str(results), "-p", "corpus", f"('{corpus}',)",
            "-p", "corpus_max_docs", "None", "-p", "heldout_docs", "10",
            "-p", "max_seq_len", "32", "-p", "batch_size", "4", "-p", "adapt_steps", "0",
            "-p", "max_steps", str(steps), "-p", "checkpoint_every", "2"]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path, corpus):
    steps = 40
    ref = subprocess.run(_cli(tmp_path / "ref", corpus, steps), env=_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]

    killed = tmp_path / "killed"
    ckpt = killed / "smoke" / "checkpoints" / "student.pt"
    proc = subprocess.Popen(_cli(killed, corpus, steps), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, 1.0))  # a random point after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "smoke" / "student").exists()
    state = torch.load(ckpt, weights_only=False)  # whole: written by rename, never in place
    assert 0 < state["step"] < steps

    resumed = subprocess.run(_cli(killed, corpus, steps), env=_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from safetensors.torch import load_file

    a = load_file(tmp_path / "ref" / "smoke" / "student" / "model.safetensors")
    b = load_file(killed / "smoke" / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_tokenizer_that_does_not_match_the_teacher(tokenizer):
    from distil_utils.distill import check_vocab

    with pytest.raises(ValueError, match="tokenizer has 30522 tokens but the teacher embeds 999"):
        check_vocab(make_tiny_bert(layers=2, vocab=999), tokenizer)


def test_teacher_that_is_not_a_bert_masked_lm(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from distil_utils.student import load_teacher, student_from_teacher

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(TypeError, match="'gpt2' model.*BertForMaskedLM"):
        load_teacher(tmp_path / "gpt2")
    with pytest.raises(TypeError, match="BertForMaskedLM"):
        student_from_teacher(make_tiny_bert(layers=2).bert)


def test_layer_indices(tokenizer):
    from distil_utils.student import student_from_teacher

    teacher = make_tiny_bert(layers=4)
    with pytest.raises(ValueError, match="out of range.*0..3"):
        student_from_teacher(teacher, (0, 4))
    with pytest.raises(ValueError, match="repeat"):
        student_from_teacher(teacher, (0, 0, 3))


def test_empty_corpus_and_corpus_too_short(tmp_path, tokenizer):
    from distil_utils.data import load_corpus, tokenize_corpus

    (tmp_path / "c.txt").write_text("one two\nthree\n")
    cfg = get_config("smoke", corpus=(str(tmp_path / "c.txt"),), corpus_max_docs=None,
                     heldout_docs=0)
    docs, _ = load_corpus(cfg)
    with pytest.raises(ValueError, match="no sequence of the corpus reaches min_seq_len"):
        tokenize_corpus(docs, tokenizer, 64, 8)
    with pytest.raises(ValueError, match="nothing is left to train on"):
        load_corpus(get_config("smoke", corpus=(str(tmp_path / "c.txt"),),
                               corpus_max_docs=None, heldout_docs=5))


def test_data_dir_without_the_split(tmp_path):
    from distil_utils.hub import load_split

    (tmp_path / "glue" / "sst2").mkdir(parents=True)
    (tmp_path / "glue" / "sst2" / "validation.jsonl").write_text('{"sentence": "a", "label": 1}\n')
    with pytest.raises(FileNotFoundError, match="no split 'train'.*DISTIL_DATA_DIR"):
        load_split("glue/sst2", "train", tmp_path)
    assert len(load_split("glue/sst2", "validation", tmp_path)) == 1


def test_temperature_and_weights():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        get_config("smoke", temperature=0.0)
    with pytest.raises(ValueError, match="alpha_ce must be >= 0"):
        get_config("smoke", alpha_ce=-1.0)


def test_corrupt_teacher_checkpoint(tmp_path):
    from distil_utils.student import load_teacher

    make_tiny_bert(layers=2).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(OSError, match="truncated or corrupt"):
        load_teacher(tmp_path)


def test_same_seed_same_numbers(tmp_path, corpus):
    """Two runs of one seed give identical loss histories and weights (timings aside)."""
    outs = []
    for name in ("a", "b"):
        run = subprocess.run(_cli(tmp_path / name, corpus, 6), env=_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        import json

        hist = json.loads((tmp_path / name / "smoke" / "student_history.json").read_text())
        outs.append([{k: v for k, v in h.items() if k != "seconds"}
                     for h in hist["metrics"]["history"]])
    assert outs[0] == outs[1]
