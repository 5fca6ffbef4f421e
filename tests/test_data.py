"""The corpus pipeline: split into bounded sequences, tokenised once (vectorised, cached,
uint16), length-grouped batches over ranks, flat host memory at the paper's scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import smoke_config

from distil_utils import data
from distil_utils.config import get_config
from distil_utils.data import length_grouped_batches, load_corpus, tokenize_corpus


def test_corpus_is_split_into_bounded_sequences(tmp_path, corpus_file, tokenizer):
    cfg = smoke_config(tmp_path, corpus_file, preset="distill")
    train_docs, held_docs = load_corpus(cfg)
    assert len(held_docs) == 10 and len(train_docs) == 150
    seqs = tokenize_corpus(train_docs, tokenizer, 32, 4)
    lengths = seqs["length"]
    assert max(lengths) <= 32 and min(lengths) >= 4
    first = seqs[0]["input_ids"]
    assert first[0] == tokenizer.cls_token_id and first[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in first  # a real vocabulary, not the 5-token trap


def test_empty_or_too_short_corpus_is_a_clear_error(tmp_path, corpus_file, tokenizer):
    cfg = smoke_config(tmp_path, corpus_file, preset="distill")
    docs, _ = load_corpus(cfg)
    with pytest.raises(ValueError, match="min_seq_len"):
        tokenize_corpus(docs, tokenizer, 32, 1000)
    with pytest.raises(ValueError, match="empty"):
        tokenize_corpus(docs.select([]), tokenizer, 32, 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no .txt or .jsonl"):
        load_corpus(smoke_config(tmp_path, empty, preset="distill"))


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


def test_empty_corpus_and_corpus_too_short(tmp_path, tokenizer):
    from distil_utils.data import load_corpus, tokenize_corpus

    (tmp_path / "c.txt").write_text("one two\nthree\n")
    cfg = get_config("smoke", corpus=(str(tmp_path / "c.txt"),), corpus_max_docs=None,
                     heldout_docs=1)
    docs, _ = load_corpus(cfg)
    with pytest.raises(ValueError, match="no sequence of the corpus reaches min_seq_len"):
        tokenize_corpus(docs, tokenizer, 64, 8)
    (tmp_path / "blank.txt").write_text("   \n\t\n  \n   \n")
    blank, _ = load_corpus(get_config("smoke", corpus=(str(tmp_path / "blank.txt"),),
                                      corpus_max_docs=None, heldout_docs=1))
    with pytest.raises(ValueError, match="holds no text"):
        tokenize_corpus(blank, tokenizer, 64, 4)
    with pytest.raises(ValueError, match="nothing is left to train on"):
        load_corpus(get_config("smoke", corpus=(str(tmp_path / "c.txt"),),
                               corpus_max_docs=None, heldout_docs=5))


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


def test_vectorised_tokenisation_matches_the_python_definition(tmp_path, pipeline_corpus,
                                                               tokenizer):
    docs, _ = data.load_corpus(smoke_config(tmp_path, pipeline_corpus, preset="sequences"))
    seqs = data.tokenize_corpus(docs, tokenizer, 32, 5)
    assert seqs.features["input_ids"].feature.dtype == "uint16"  # 30,522 ids fit in 16 bits
    got = [list(s) for s in seqs["input_ids"]]
    assert got == _reference_split(docs, tokenizer, 32, 5)
    assert list(seqs["length"]) == [len(s) for s in got]
    assert data.token_dtype(30522) == np.uint16 and data.token_dtype(70000) == np.int32


def test_the_corpus_is_tokenised_once_and_shared(tmp_path, pipeline_corpus, tokenizer,
                                                 monkeypatch):
    cfg = smoke_config(tmp_path, pipeline_corpus, preset="sequences")
    train, held = data.prepare_sequences(cfg, tokenizer)
    cache = data.corpus_cache_dir(cfg)
    assert all(Path(f["filename"]).is_relative_to(cache) for f in train.cache_files)
    info = data.corpus_info(cfg)
    assert info["train_sequences"] == len(train) and info["token_dtype"] == "uint16"

    def no_tokenising(*a, **k):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(data, "tokenize_corpus", no_tokenising)
    # an ablation row (other loss weights) and another run of the profile: the same cache
    again, _ = data.prepare_sequences(smoke_config(tmp_path, pipeline_corpus, preset="sequences",
                                                   alpha_cos=0.0), tokenizer)
    assert len(again) == len(train) and again[0] == train[0]
    # what changes the sequences gets its own cache
    assert data.corpus_cache_dir(smoke_config(tmp_path, pipeline_corpus, preset="sequences",
                                              max_seq_len=64)) != cache
    # token counts: one bincount, cached beside the sequences, equal to a Python count
    from distil_utils.masking import token_counts

    want = token_counts(train["input_ids"], len(tokenizer))
    assert (cache / "train" / "token_counts.npy").exists()
    assert np.array_equal(data.token_counts_of(train, len(tokenizer)), want)
    sub = train.select(range(10))
    assert np.array_equal(data.token_counts_of(sub, len(tokenizer)),
                          token_counts(sub["input_ids"], len(tokenizer)))
    del train, again, sub  # memory-mapped from the files damaged below
    # a damaged cache is named, with the fix (a deleted Arrow file, a truncated one)
    arrow = next((cache / "train").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"cache {cache} is damaged.*delete that folder"):
        data.prepare_sequences(cfg, tokenizer)
    arrow.unlink()
    with pytest.raises(ValueError, match="is damaged"):
        data.prepare_sequences(cfg, tokenizer)


def test_batches_cover_every_sequence_once_per_epoch_over_ranks(tmp_path, pipeline_corpus,
                                                                tokenizer):
    train, _ = data.prepare_sequences(smoke_config(tmp_path, pipeline_corpus, preset="sequences"),
                                      tokenizer)
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
