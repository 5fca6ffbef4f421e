"""The corpus pipeline at the paper's scale: tokenised once, cached, uint16, flat memory;
and the recipe derived from it (grad_accum, max_steps, the --plan)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_corpus

from distil_utils import data
from distil_utils.config import get_config
from distil_utils.recipe import grad_accum, plan, total_steps
from distil_utils.validation import RecipeError

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("distillation keeps most of the teacher while the student runs faster on long and "
         "short documents alike").split()


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("pipe") / "docs.txt", WORDS, 300, 1, 90, 2)


def _cfg(tmp, corpus_file, **kw):
    base = dict(results_dir=str(tmp), corpus=(str(corpus_file),), corpus_max_docs=None,
                heldout_docs=20, max_seq_len=32, min_seq_len=5, batch_size=4, max_steps=4)
    return get_config("smoke", **{**base, **kw})


def _reference_split(docs, tokenizer, max_len, min_len):
    """The former per-sequence Python loop, the definition the vectorised code must match."""
    out, body = [], max_len - 2
    for text in docs["text"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for i in range(0, len(ids), body):
            seq = [tokenizer.cls_token_id, *ids[i:i + body], tokenizer.sep_token_id]
            if len(seq) >= min_len:
                out.append(seq)
    return out


def test_vectorised_tokenisation_matches_the_python_definition(tmp_path, corpus_file,
                                                               tokenizer):
    docs, _ = data.load_corpus(_cfg(tmp_path, corpus_file))
    seqs = data.tokenize_corpus(docs, tokenizer, 32, 5)
    assert seqs.features["input_ids"].feature.dtype == "uint16"  # 30,522 ids fit in 16 bits
    got = [list(s) for s in seqs["input_ids"]]
    assert got == _reference_split(docs, tokenizer, 32, 5)
    assert list(seqs["length"]) == [len(s) for s in got]
    assert data.token_dtype(30522) == np.uint16 and data.token_dtype(70000) == np.int32


def test_the_corpus_is_tokenised_once_and_shared(tmp_path, corpus_file, tokenizer,
                                                 monkeypatch):
    cfg = _cfg(tmp_path, corpus_file)
    train, held = data.prepare_sequences(cfg, tokenizer)
    cache = data.corpus_cache_dir(cfg)
    assert all(Path(f["filename"]).is_relative_to(cache) for f in train.cache_files)
    info = data.corpus_info(cfg)
    assert info["train_sequences"] == len(train) and info["token_dtype"] == "uint16"

    def no_tokenising(*a, **k):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(data, "tokenize_corpus", no_tokenising)
    # an ablation row (other loss weights) and another run of the profile: the same cache
    again, _ = data.prepare_sequences(_cfg(tmp_path, corpus_file, alpha_cos=0.0), tokenizer)
    assert len(again) == len(train) and again[0] == train[0]
    # what changes the sequences gets its own cache
    assert data.corpus_cache_dir(_cfg(tmp_path, corpus_file, max_seq_len=64)) != cache
    # token counts: one bincount, cached beside the sequences, equal to a Python count
    from distil_utils.masking import token_counts

    want = token_counts(train["input_ids"], len(tokenizer))
    assert (cache / "train" / "token_counts.npy").exists()
    assert np.array_equal(data.token_counts_of(train, len(tokenizer)), want)
    sub = train.select(range(10))
    assert np.array_equal(data.token_counts_of(sub, len(tokenizer)),
                          token_counts(sub["input_ids"], len(tokenizer)))


def test_batches_cover_every_sequence_once_per_epoch_over_ranks(tmp_path, corpus_file,
                                                                tokenizer):
    train, _ = data.prepare_sequences(_cfg(tmp_path, corpus_file), tokenizer)
    n_batches = data.batches_per_epoch(len(train), 4)
    assert n_batches == len(data.length_grouped_batches(data.lengths_of(train), 4, 0, 0))
    usable = n_batches - n_batches % 2
    seen = []
    for rank in (0, 1):
        stream = data.batch_stream(train, 4, 0, tokenizer.pad_token_id, rank=rank, world=2)
        for _ in range(usable // 2):
            pos, batch = next(stream)
            assert pos % 2 == rank
            seen += [tuple(row[m.bool()].tolist()) for row, m in
                     zip(batch["input_ids"], batch["attention_mask"], strict=True)]
    everything = sorted(tuple(s) for s in train["input_ids"])
    full = sorted(seen)
    assert len(full) <= len(everything) and set(full) <= set(everything)
    assert len(everything) - len(full) < 2 * 4 * data.CHUNK_BATCHES  # only the odd batch left
    # collate_rows is collate, without Python lists
    rows = np.array([3, 0, 7])
    a = data.collate_rows(train.with_format("arrow"), rows, tokenizer.pad_token_id)
    b = data.collate([train[int(i)]["input_ids"] for i in rows], tokenizer.pad_token_id)
    assert all((a[k] == b[k]).all() for k in a)
    # resuming mid-epoch gives the batches an uninterrupted stream gives there
    s1 = data.batch_stream(train, 4, 0, 0)
    ref = [next(s1) for _ in range(9)]
    s2 = data.batch_stream(train, 4, 0, 0, start=5)
    for (pa, ba), (pb, bb) in zip(ref[5:], [next(s2) for _ in range(4)], strict=True):
        assert pa == pb and (ba["input_ids"] == bb["input_ids"]).all()


def test_host_memory_does_not_grow_with_the_corpus(tmp_path):
    """300k sequences (19M tokens) memory-mapped: starting the stream and drawing batches
    holds index arrays (bytes per sequence), never the sequences as Python objects."""
    import datasets
    import psutil
    import pyarrow as pa

    n, width = 300_000, 64
    rng = np.random.default_rng(0)
    lens = rng.integers(8, width, n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lens, out=offsets[1:])
    values = rng.integers(1000, 30000, int(offsets[-1])).astype(np.uint16)
    table = pa.table({"input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
                      "length": pa.array(lens.astype(np.uint16))})
    datasets.Dataset(table).save_to_disk(str(tmp_path / "big"))
    del table, values, offsets
    ds = datasets.load_from_disk(str(tmp_path / "big"))
    proc = psutil.Process()
    before = proc.memory_info().rss
    stream = data.batch_stream(ds, 32, 0, 0)
    for _ in range(50):
        next(stream)
    grown = (proc.memory_info().rss - before) / 2**20
    # the token data alone is 37 MB; as Python lists it would be ~1.5 GB
    print(f"RSS grew by {grown:.1f} MB")
    assert grown < 40, f"RSS grew by {grown:.0f} MB"


def test_recipe_derives_accumulation_and_steps(tmp_path, corpus_file, tokenizer):
    paper = get_config("paper")
    assert (paper.global_batch, paper.epochs, paper.lr, paper.warmup_frac) == (4000, 3.0,
                                                                               5e-4, 0.05)
    assert paper.max_steps is None
    from transformers import BertConfig, BertForMaskedLM

    from distil_utils.student import student_from_teacher

    teacher = BertForMaskedLM(BertConfig(num_hidden_layers=12, hidden_size=32,
                                         num_attention_heads=2, intermediate_size=64,
                                         vocab_size=100))
    student = student_from_teacher(teacher, paper.student_layers)  # the 6-of-12 layer map
    assert student.config.to_dict()["distil_teacher_layers"] == [0, 2, 4, 7, 9, 11]
    assert [grad_accum(paper, w) for w in (1, 2, 8)] == [250, 125, 31]
    for w in (1, 2, 8):  # the global batch stays ~4,000 whatever the hardware
        assert abs(grad_accum(paper, w) * 16 * w - 4000) / 4000 < 0.01
    with pytest.raises(RecipeError, match="would train nothing"):
        get_config("paper", explicit_none=("epochs",), epochs=None)
    with pytest.raises(RecipeError, match="would train nothing"):
        get_config("smoke", max_steps=0)
    # epochs -> steps once the corpus is known: prepare_corpus fills them in
    from distil_utils.distill import prepare_corpus

    cfg = _cfg(tmp_path, corpus_file, explicit_none=("max_steps",), max_steps=None,
               epochs=2.0, global_batch=8)
    assert plan(cfg)["total_steps"] is None
    train, _ = prepare_corpus(cfg, tokenizer)
    per_epoch = data.batches_per_epoch(len(train), 4)
    assert cfg.grad_accum == 2 and cfg.max_steps == math.ceil(2 * per_epoch / 2)
    assert cfg.max_steps == total_steps(cfg, len(train), 1)
    fresh = _cfg(tmp_path, corpus_file, explicit_none=("max_steps",), max_steps=None,
                 epochs=2.0, global_batch=8)
    assert plan(fresh)["total_steps"] == cfg.max_steps  # the cached corpus has a size now


def test_plan_command_prints_one_json_object_without_training(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "distil_utils.distill", "--profile", "paper",
                           "--plan", "--world-size", "8", "-p", "results_dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert {"world_size", "per_device_batch", "grad_accum", "global_batch", "epochs",
            "total_steps", "precision", "device"} <= set(out)
    assert (out["world_size"], out["per_device_batch"], out["grad_accum"]) == (8, 16, 31)
    assert out["global_batch"] == 3968 and out["epochs"] == 3.0
    assert out["total_steps"] is None  # the corpus has not been tokenised here
    assert not any(tmp_path.iterdir()), "--plan wrote something"
