"""The pre-training corpus: load, tokenise once, split into sequences, batch by length.

Tokenisation goes through `datasets.map(batched=True)` with the fast (Rust) tokenizer, which
caches its result on disk — the reference code binarises line by line in Python instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .hub import load_split

HUB_CORPORA = {
    # paper profile only: these are not mirrored offline
    "wikipedia": ("wikimedia/wikipedia", "20231101.en", "train"),
    "bookcorpus": ("bookcorpus/bookcorpus", None, "train"),
}


def _clean_wikitext(ds: Any) -> Any:
    """Drop blank lines and ` = Heading = ` lines of the raw WikiText dump."""
    return ds.filter(lambda r: len(r["text"].strip()) > 0 and not r["text"].strip().startswith("="))


def _load_source(name: str, data_dir: str | None) -> Any:
    import datasets

    if name == "wikitext":
        return _clean_wikitext(load_split("wikitext", "test", data_dir))
    if name == "imdb":
        return load_split("imdb", "unsupervised", data_dir).select_columns(["text"])
    if name in HUB_CORPORA:
        repo, conf, split = HUB_CORPORA[name]
        try:
            return datasets.load_dataset(repo, conf, split=split).select_columns(["text"])
        except Exception as err:
            raise ConnectionError(f"corpus {name!r} ({repo}) could not be loaded from the Hub: "
                                  f"{err}. Offline, use corpus=('imdb', 'wikitext') with a local "
                                  "data_dir, or a path to your own .txt/.jsonl files.") from err
    path = Path(name)
    if path.exists():
        files = [path]
        if path.is_dir():
            files = sorted(path.glob("*.txt")) + sorted(path.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"corpus directory {path} holds no .txt or .jsonl files")
        kind = "text" if files[0].suffix == ".txt" else "json"
        return datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    raise ValueError(f"unknown corpus {name!r}: use 'wikitext', 'imdb', 'wikipedia', "
                     "'bookcorpus', or a path to .txt/.jsonl files with a 'text' column")


def load_corpus(cfg: Config) -> tuple[Any, Any]:
    """(train, held-out) documents with a `text` column; held-out = last `heldout_docs`."""
    import datasets

    parts = [_load_source(name, cfg.data_dir).select_columns(["text"]) for name in cfg.corpus]
    ds = datasets.concatenate_datasets(parts).shuffle(seed=cfg.seed)
    n_keep = len(ds) if cfg.corpus_max_docs is None else min(len(ds), cfg.corpus_max_docs)
    if n_keep <= cfg.heldout_docs:
        raise ValueError(f"the corpus {cfg.corpus} has {n_keep} documents, not more than the "
                         f"{cfg.heldout_docs} held out: nothing is left to train on")
    cut = n_keep - cfg.heldout_docs
    return ds.select(range(cut)), ds.select(list(range(cut, n_keep)))


def tokenize_corpus(docs: Any, tokenizer: Any, max_seq_len: int, min_seq_len: int,
                    num_proc: int | None = None) -> Any:
    """Tokenise documents in batches and cut each into [CLS] … [SEP] sequences ≤ max_seq_len.

    Sequences shorter than `min_seq_len` are dropped (the reference's rule); an empty
    result is an error rather than a silent zero-step run.
    """
    body = max_seq_len - 2
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id

    def split(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False)
        out = []
        for ids in enc["input_ids"]:
            for i in range(0, len(ids), body):
                seq = [cls_id, *ids[i:i + body], sep_id]
                if len(seq) >= min_seq_len:
                    out.append(seq)
        return {"input_ids": out, "length": [len(s) for s in out]}

    if len(docs) == 0:
        raise ValueError("the corpus is empty: no documents to tokenise")
    ds = docs.map(split, batched=True, batch_size=1000, remove_columns=docs.column_names,
                  num_proc=num_proc, desc="tokenise")
    if len(ds) == 0:
        raise ValueError(f"no sequence of the corpus reaches min_seq_len={min_seq_len} tokens: "
                         "lower min_seq_len or use a corpus with longer documents")
    return ds.with_format("python")


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int,
                           epoch: int) -> list[list[int]]:
    """Batches of indices of similar length (little padding), in a seeded random order.

    Sorting by length inside chunks of 50 batches keeps batches homogeneous while keeping
    the order random from epoch to epoch; the result depends only on (seed, epoch), which is
    what makes a resumed run see the same batches.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(sequences: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of the batch; attention_mask marks the real tokens."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def batch_stream(ds: Any, batch_size: int, seed: int, pad_id: int, start: int = 0,
                 rank: int = 0, world: int = 1) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Endless (position, batch) stream over epochs, starting at micro-batch `start`.

    Position counts global micro-batches; with `world` processes, rank r takes every
    world-th batch, so replicas never see the same data and resuming is exact.
    """
    lengths = ds["length"]
    per_epoch = len(length_grouped_batches(lengths, batch_size, seed, 0))
    usable = per_epoch - per_epoch % world
    if usable == 0:
        raise ValueError(f"the corpus gives {per_epoch} batches of {batch_size}, fewer than the "
                         f"{world} processes: use a larger corpus or a smaller batch_size")
    pos = start
    while True:
        epoch, idx = divmod(pos, usable)
        batches = length_grouped_batches(lengths, batch_size, seed, epoch)
        for i in range(idx, usable):
            if i % world == rank:
                yield pos + (i - idx), collate(ds[batches[i]]["input_ids"], pad_id)
        pos += usable - idx
