"""Latency and throughput over a batch size × sequence length grid, teacher vs student.

Beyond the paper's Table 3 (one pass at batch 1, see `speed`): random token ids without
padding, so every cell measures exactly `bs × len` tokens, the models interleaved per cell.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .model_inputs import accepted_inputs, max_positions, progress_bar, select_inputs


def _vocab_size(models: Mapping[str, Any], default: int = 30522) -> int:
    sizes = [getattr(getattr(m, "config", None), "vocab_size", None) for m in models.values()]
    return min([x for x in sizes if x] or [default])


def _random_batch(bs: int, length: int, vocab: int, gen: torch.Generator) -> dict:
    low = min(1000, vocab // 2)  # above BERT's [unused]/special ids when the vocabulary allows
    ids = torch.randint(low, vocab, (bs, length), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids)}


@torch.inference_mode()
def latency_grid(models: dict[str, Any], batch_sizes: Sequence[int], seq_lens: Sequence[int],
                 repeats: int, *, warmup: int = 1, seed: int = 0,
                 progress: bool = True) -> list[dict[str, Any]]:
    """Latency (ms, median of `repeats`) and throughput (sequences/s) per model × batch × length.

    Inputs are random token ids without padding, so every cell measures exactly `bs × len`
    tokens; the models are interleaved within each cell like `time_dataset_pass`.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1 (got {repeats})")
    limit = max_positions(models, default=10**9)
    too_long = [n for n in seq_lens if n > limit]
    if too_long:
        raise ValueError(f"sequence length(s) {too_long} exceed the {limit} positions a model "
                         "accepts; drop them from bench_seq_lens")
    for m in models.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    gen = torch.Generator().manual_seed(seed)
    vocab, names = _vocab_size(models), list(models)
    rows = []
    cells = [(bs, n) for bs in batch_sizes for n in seq_lens]
    for bs, length in progress_bar(cells, "latency grid", progress):
        batch = _random_batch(bs, length, vocab, gen)
        feeds = {name: select_inputs(batch, accepted_inputs(models[name])) for name in names}
        for name in names:
            for _ in range(warmup):
                models[name](**feeds[name])
        samples: dict[str, list[float]] = {n: [] for n in names}
        for r in range(repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                models[name](**feeds[name])
                samples[name].append(time.perf_counter() - t0)
        for name in names:
            lat = statistics.median(samples[name])
            rows.append({"model": name, "batch_size": bs, "seq_len": length,
                         "latency_ms": 1000 * lat, "latency_ms_min": 1000 * min(samples[name]),
                         "latency_ms_max": 1000 * max(samples[name]), "throughput": bs / lat,
                         "tokens_per_s": bs * length / lat, "repeats": repeats})
    return rows


def grid_ratios(rows: list[dict], teacher: str = "teacher",
                student: str = "student") -> list[dict[str, Any]]:
    """Student/teacher latency ratio and speed-up for every (batch size, length) cell."""
    cell = {(r["model"], r["batch_size"], r["seq_len"]): r for r in rows}
    out = []
    for (model, bs, n), r in cell.items():
        if model != student or (teacher, bs, n) not in cell:
            continue
        t = cell[(teacher, bs, n)]
        out.append({"batch_size": bs, "seq_len": n,
                    "latency_ratio": r["latency_ms"] / t["latency_ms"],
                    "speedup": t["latency_ms"] / r["latency_ms"],
                    "throughput_ratio": r["throughput"] / t["throughput"]})
    return out
