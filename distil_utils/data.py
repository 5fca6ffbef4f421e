"""The pre-training corpus: load, tokenise once, cache on disk, batch by length.

Sized for the paper's corpus: tokenisation is batched (`datasets.map`, fast tokenizer, numpy),
ids are stored as uint16 when the vocabulary fits, and the result is saved once under
`results/<profile>/corpus/<key>/` (or `corpus_cache`) for every later run, rank and ablation
to memory-map. Columns are read whole and batches gathered with Arrow `take`, so host memory
does not grow with the corpus beyond one epoch's index arrays.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .hub import corpus_files, load_split
from .results_io import note_read
from .tasks import CORPORA, DATASETS

CACHE_FORMAT = 2  # bump when the stored sequences change meaning
CHUNK_BATCHES = 50  # length-sorted chunks of 50 batches (the reference's group_by_size)


def _clean_wikitext(ds: Any) -> Any:
    """Drop blank lines and ` = Heading = ` lines of the raw WikiText dump."""
    return ds.filter(lambda r: len(r["text"].strip()) > 0 and not r["text"].strip().startswith("="))


def _load_source(name: str, data_dir: str | None) -> Any:
    import datasets

    if name == "wikitext":
        return _clean_wikitext(load_split(*CORPORA[name], data_dir))
    if name == "imdb":
        return load_split(*CORPORA[name], data_dir).select_columns(["text"])
    if name in CORPORA:  # the paper's corpus, from the Hub only
        key, split = CORPORA[name]
        repo, conf = DATASETS[key].hub, DATASETS[key].config
        try:
            return datasets.load_dataset(repo, conf, split=split).select_columns(["text"])
        except Exception as err:
            raise ConnectionError(f"corpus {name!r} ({repo}) could not be loaded from the Hub: "
                                  f"{err}. Offline, use corpus=('imdb', 'wikitext') with a local "
                                  "data_dir, or a path to your own .txt/.jsonl files.") from err
    path = Path(name)
    if path.exists():
        files = corpus_files(path)
        for f in files:
            note_read(f)  # the runner keys `--skip-done` on the content of what was read
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
    return ds.select(range(cut)), ds.select(range(cut, n_keep))


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 where every id fits (bert-base-uncased: 30,522), else int32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.int32)


def _splitter(tokenizer: Any, max_seq_len: int, min_seq_len: int) -> Any:
    """The batched map function: documents -> [CLS] piece [SEP] sequences, in numpy."""
    import pyarrow as pa

    body = max_seq_len - 2
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    dtype = token_dtype(len(tokenizer))

    def split(batch: dict[str, list]) -> Any:
        enc = tokenizer(batch["text"], add_special_tokens=False,
                        return_attention_mask=False)["input_ids"]
        n = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
        flat = np.fromiter(itertools.chain.from_iterable(enc), dtype=np.int64,
                           count=int(n.sum()))
        doc_start = np.cumsum(n) - n
        pieces = -(-n // body)
        doc = np.repeat(np.arange(len(n)), pieces)
        k = np.arange(len(doc)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        start = doc_start[doc] + k * body
        size = np.minimum(body, n[doc] - k * body)
        keep = size + 2 >= min_seq_len  # the reference's rule: short pieces are dropped
        start, size = start[keep], size[keep]
        offsets = np.zeros(len(size) + 1, dtype=np.int64)
        np.cumsum(size + 2, out=offsets[1:])
        values = np.empty(int(offsets[-1]), dtype=dtype)
        values[offsets[:-1]] = cls_id
        values[offsets[1:] - 1] = sep_id
        row = np.repeat(np.arange(len(size)), size)
        within = np.arange(len(row)) - np.repeat(np.cumsum(size) - size, size)
        values[offsets[:-1][row] + 1 + within] = flat[start[row] + within]
        ids = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
        return pa.table({"input_ids": ids, "length": pa.array((size + 2).astype(np.uint16))})

    return split


def tokenize_corpus(docs: Any, tokenizer: Any, max_seq_len: int, min_seq_len: int,
                    num_proc: int | None = None) -> Any:
    """Tokenise documents in batches and cut each into [CLS] … [SEP] sequences ≤ max_seq_len.

    Sequences shorter than `min_seq_len` are dropped (the reference's rule); an empty
    result is an error rather than a silent zero-step run. Columns: `input_ids` (uint16
    where the vocabulary fits) and `length`.
    """
    if max_seq_len > 2**16:
        raise ValueError(f"max_seq_len={max_seq_len} does not fit the uint16 length column")
    if len(docs) == 0:
        raise ValueError("the corpus is empty: no documents to tokenise")
    ds = docs.map(_splitter(tokenizer, max_seq_len, min_seq_len), batched=True,
                  batch_size=1000, remove_columns=docs.column_names, num_proc=num_proc,
                  desc="tokenise")
    if len(ds) == 0 and not any(str(t).strip() for t in docs["text"]):
        raise ValueError(f"the corpus holds no text: its {len(docs)} documents are blank or "
                         "whitespace; check the corpus setting names the files you meant")
    if len(ds) == 0:
        raise ValueError(f"no sequence of the corpus reaches min_seq_len={min_seq_len} tokens: "
                         "lower min_seq_len or use a corpus with longer documents")
    return ds.with_format("python")


# ------------------------------------------------------------------------ the cache
def _source_id(name: str) -> Any:
    """A corpus file's identity includes its size and mtime, so an edited file re-tokenises."""
    path = Path(name)
    if path.exists():
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        return [name, [(f.name, f.stat().st_size, f.stat().st_mtime_ns)
                       for f in files if f.is_file()]]
    return name


def corpus_cache_dir(cfg: Config, tokenizer_name: str | None = None) -> Path:
    """Where the profile's tokenised corpus lives: one directory per corpus settings."""
    key = {"format": CACHE_FORMAT, "corpus": [_source_id(c) for c in cfg.corpus],
           "data_dir": cfg.data_dir, "max_docs": cfg.corpus_max_docs,
           "heldout": cfg.heldout_docs, "seed": cfg.seed, "max_len": cfg.max_seq_len,
           "min_len": cfg.min_seq_len,
           "tokenizer": tokenizer_name or cfg.tokenizer or cfg.teacher}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    base = Path(cfg.corpus_cache) if cfg.corpus_cache else cfg.out / "corpus"
    return base / digest


def corpus_info(cfg: Config) -> dict[str, Any] | None:
    """The cached corpus's summary (sequence and token counts), or None if not built yet."""
    meta = corpus_cache_dir(cfg) / "meta.json"
    if not meta.exists():
        return None
    try:
        return json.loads(meta.read_text())
    except (ValueError, OSError) as err:
        raise ValueError(_damaged_cache(meta.parent, err)) from None


def prepare_sequences(cfg: Config, tokenizer: Any) -> tuple[Any, Any]:
    """(train, held-out) sequences, tokenised once and memory-mapped from the cache.

    Only one process should build a missing cache (distill.prepare_corpus lets rank 0 go
    first); the cache is written to a temporary directory and renamed into place, so an
    interrupted build leaves no half cache behind.
    """
    import datasets

    final = corpus_cache_dir(cfg)
    if not (final / "meta.json").exists():
        t0 = time.perf_counter()
        train_docs, held_docs = load_corpus(cfg)
        procs = None if len(train_docs) < 20_000 else min(8, os.cpu_count() or 1)
        train = tokenize_corpus(train_docs, tokenizer, cfg.max_seq_len, cfg.min_seq_len, procs)
        held = tokenize_corpus(held_docs, tokenizer, cfg.max_seq_len, cfg.min_seq_len)
        tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        train.save_to_disk(str(tmp / "train"))
        held.save_to_disk(str(tmp / "held"))
        counts = token_counts_of(train, len(tokenizer))
        np.save(tmp / "train" / "token_counts.npy", counts)
        meta = {"train_sequences": len(train), "held_sequences": len(held),
                "train_tokens": int(counts.sum()), "train_docs": len(train_docs),
                "vocab_size": len(tokenizer), "token_dtype": str(token_dtype(len(tokenizer))),
                "seconds": round(time.perf_counter() - t0, 1)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: its copy is the same
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        train = datasets.load_from_disk(str(final / "train")).with_format("python")
        held = datasets.load_from_disk(str(final / "held")).with_format("python")
    except Exception as err:  # a deleted or truncated Arrow file: pyarrow raises many kinds
        raise ValueError(_damaged_cache(final, err)) from None
    return train, held


def _damaged_cache(folder: Path, err: BaseException) -> str:
    return (f"the tokenised-corpus cache {folder} is damaged ({type(err).__name__}: "
            f"{str(err)[:200]}): delete that folder and run again, it is rebuilt")


def token_counts_of(ds: Any, vocab_size: int) -> np.ndarray:
    """Token id counts of a sequence set: np.bincount over the Arrow values, cached beside a
    dataset that `prepare_sequences` wrote (counts ignore order, so any permutation of the
    whole set reuses them; a subset has another length and is counted afresh)."""
    files = getattr(ds, "cache_files", None) or []
    cached = Path(files[0]["filename"]).parent / "token_counts.npy" if files else None
    if cached is not None and cached.exists():
        meta = cached.parent.parent / "meta.json"
        if meta.exists() and json.loads(meta.read_text())["train_sequences"] == len(ds):
            return np.load(cached)
    counts = np.zeros(vocab_size, dtype=np.int64)
    col = ds.with_format("arrow")["input_ids"]
    for chunk in col.chunks:
        values = chunk.flatten().to_numpy()
        counts += np.bincount(values, minlength=vocab_size)[:vocab_size]
    return counts


# ------------------------------------------------------------------------ batching
def lengths_of(ds: Any) -> np.ndarray:
    """The `length` column as one numpy array (an Arrow read, not a Python loop)."""
    return ds.with_format("arrow")["length"].to_numpy().astype(np.int64)


def batches_per_epoch(n: int, batch_size: int) -> int:
    """How many micro-batches `length_grouped_batches` cuts `n` sequences into."""
    chunk = batch_size * CHUNK_BATCHES
    return (n // chunk) * CHUNK_BATCHES + -(-(n % chunk) // batch_size)


def _epoch_batches(lengths: np.ndarray, batch_size: int, seed: int,
                   epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): batch b is order[starts[b]:starts[b + 1]] of the epoch's shuffle."""
    rng = np.random.default_rng([seed, epoch])
    n = len(lengths)
    order = rng.permutation(n).astype(np.int64 if n >= 2**31 else np.int32)
    chunk = batch_size * CHUNK_BATCHES
    bounds = []
    for s in range(0, n, chunk):
        part = order[s:s + chunk]
        order[s:s + chunk] = part[np.argsort(lengths[part], kind="stable")]
        bounds.append(np.arange(s, min(s + chunk, n), batch_size))
    starts = np.concatenate(bounds) if bounds else np.zeros(0, dtype=np.int64)
    ends = np.append(starts[1:], n)
    ends = np.minimum(ends, (starts // chunk + 1) * chunk)  # a batch never crosses a chunk
    perm = rng.permutation(len(starts))
    return order, np.stack([starts[perm], ends[perm]], axis=1)


def length_grouped_batches(lengths: Any, batch_size: int, seed: int,
                           epoch: int) -> list[list[int]]:
    """Batches of indices of similar length (little padding), in a seeded random order.

    Sorting by length inside chunks of 50 batches keeps batches homogeneous while keeping
    the order random from epoch to epoch; the result depends only on (seed, epoch), which is
    what makes a resumed run see the same batches.
    """
    order, spans = _epoch_batches(np.asarray(lengths, dtype=np.int64), batch_size, seed, epoch)
    return [order[a:b].tolist() for a, b in spans]


def collate(sequences: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of the batch; attention_mask marks the real tokens."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.as_tensor(np.asarray(seq, dtype=np.int64))
        mask[row, :len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def collate_rows(view: Any, rows: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """`collate` of rows of an Arrow-formatted dataset, without Python lists: one `take`,
    then the flat values are scattered into the padded matrix."""
    col = view[rows]["input_ids"].combine_chunks()
    offsets = col.offsets.to_numpy().astype(np.int64)
    values = col.flatten().to_numpy().astype(np.int64)
    lens = np.diff(offsets)
    ids = np.full((len(lens), int(lens.max())), pad_id, dtype=np.int64)
    row = np.repeat(np.arange(len(lens)), lens)
    ids[row, np.arange(len(values)) - np.repeat(offsets[:-1] - offsets[0], lens)] = values
    mask = (np.arange(ids.shape[1])[None, :] < lens[:, None]).astype(np.int64)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def batch_stream(ds: Any, batch_size: int, seed: int, pad_id: int, start: int = 0,
                 rank: int = 0, world: int = 1) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Endless (position, batch) stream over epochs, starting at micro-batch `start`.

    Position counts global micro-batches; with `world` processes, rank r takes every
    world-th batch, so replicas never see the same data and resuming is exact.
    """
    lengths = lengths_of(ds)
    view = ds.with_format("arrow")
    per_epoch = batches_per_epoch(len(lengths), batch_size)
    usable = per_epoch - per_epoch % world
    if usable == 0:
        raise ValueError(f"the corpus gives {per_epoch} batches of {batch_size}, fewer than the "
                         f"{world} processes: use a larger corpus or a smaller batch_size")
    pos = start
    while True:
        epoch, idx = divmod(pos, usable)
        order, spans = _epoch_batches(lengths, batch_size, seed, epoch)
        for i in range(idx, usable):
            if i % world == rank:
                a, b = spans[i]
                yield pos + (i - idx), collate_rows(view, order[a:b], pad_id)
        pos += usable - idx
