"""Model FLOPs of a distillation step, counted from shapes, and the device's matmul peak.

Model-FLOP utilisation (MFU) = the FLOPs the step needs (2 per multiply-add, real tokens
only: padding is waste, not work) / its time / the peak of this very device, measured with
a large matmul in the step's precision (not a datasheet number). Counted per step:

the teacher's encoder forward and MLM head on the rows the loss uses, and the student's same
forward plus twice it for the backward. Embedding look-ups, softmaxes, LayerNorms and the
optimizer are left out (a few percent).
"""

from __future__ import annotations

import time
from typing import Any

import torch


def encoder_flops(n_layers: int, hidden: int, inner: int, lengths: Any) -> float:
    """Forward FLOPs of a BERT encoder over sequences of the given real lengths."""
    lengths = [float(n) for n in lengths]
    tokens, squares = sum(lengths), sum(n * n for n in lengths)
    dense = 2 * (4 * hidden * hidden + 2 * hidden * inner)  # Q, K, V, O and the FFN, per token
    attention = 2 * 2 * hidden  # QK^T and AV, per pair of tokens
    return n_layers * (dense * tokens + attention * squares)


def head_flops(hidden: int, vocab: int, rows: int) -> float:
    """The MLM head (transform + vocabulary projection) on `rows` positions."""
    return 2.0 * rows * (hidden * hidden + hidden * vocab)


def _shape(config: Any) -> tuple[int, int, int, int]:
    """(layers, hidden, inner, vocab) of a BertConfig or DistilBertConfig."""
    if hasattr(config, "n_layers"):  # DistilBERT
        return config.n_layers, config.dim, config.hidden_dim, config.vocab_size
    return (config.num_hidden_layers, config.hidden_size, config.intermediate_size,
            config.vocab_size)


def distill_step_flops(teacher_config: Any, student_config: Any, lengths: Any,
                       head_rows: int | None = None) -> float:
    """Model FLOPs of one distillation step over sequences of `lengths` (all micro-batches
    of the step); `head_rows` defaults to every real token (L_ce over all of them)."""
    rows = sum(float(n) for n in lengths) if head_rows is None else head_rows
    tl, th, ti, tv = _shape(teacher_config)
    sl, sh, si, sv = _shape(student_config)
    teacher = encoder_flops(tl, th, ti, lengths) + head_flops(th, tv, rows)
    student = encoder_flops(sl, sh, si, lengths) + head_flops(sh, sv, rows)
    return teacher + 3 * student


def mlm_step_flops(config: Any, lengths: Any, masked_rows: int) -> float:
    """Model FLOPs of one masked-LM training step (forward + backward, head on masked rows)."""
    n, h, i, v = _shape(config)
    return 3 * (encoder_flops(n, h, i, lengths) + head_flops(h, v, masked_rows))


def matmul_peak(device: torch.device | str, dtype: torch.dtype = torch.float32,
                n: int | None = None, repeats: int = 10) -> float:
    """The device's measured dense matmul rate in FLOP/s at `dtype` (best of `repeats`, at
    torch's current thread count: on a shared machine the best is the least disturbed)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first is a warm-up
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def precision_dtype(precision: str | None) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision or "", torch.float32)


def run_throughput(history: list[dict], teacher_config: Any, student_config: Any,
                   sequences_per_step: int, peak: float, skip: int = 1,
                   world: int = 1) -> dict[str, float]:
    """Real tokens/s and MFU of a `train_loop` history (its first `skip` steps, warm-up and
    compilation, left out); attention FLOPs from the mean sequence length of each step.

    A history's `tokens` are the global batch's, all-reduced over the `world` processes, and
    `sequences_per_step` is the global batch: the work of all devices. MFU compares one
    device's share (the total over `world`) with one device's `peak`; both the global and the
    per-device token rates are returned.
    """
    rows = history[skip:] if len(history) > skip else history
    start = history[skip - 1]["seconds"] if len(history) > skip and skip else 0.0
    seconds = rows[-1]["seconds"] - start
    tokens = sum(r["tokens"] for r in rows)
    flops = 0.0
    for r in rows:
        mean = r["tokens"] / sequences_per_step
        flops += distill_step_flops(teacher_config, student_config,
                                    [mean] * sequences_per_step, head_rows=r["tokens"])
    per_device = flops / world / seconds
    return {"real_tokens_per_s": tokens / seconds,
            "real_tokens_per_s_per_device": tokens / world / seconds,
            "model_flops_per_s": flops / seconds, "model_flops_per_s_per_device": per_device,
            "peak_flops_per_s": peak, "mfu": per_device / peak, "world": world,
            "steps_timed": len(rows)}


def batch_lengths(batches: Any) -> list[int]:
    """Real lengths of every sequence of a list of collated batches."""
    return [int(n) for b in batches for n in b["attention_mask"].sum(1).tolist()]


def add_mfu(bench: dict[str, Any], teacher_config: Any, student_config: Any, batches: Any,
            peaks: dict[str, float], ce_on_masked_only: bool = False) -> dict[str, Any]:
    """Model FLOP/s and MFU of every variant of a `bench_distill` result, in place.

    Every variant runs the same sequences, so the FLOPs of a run are counted once from the
    batches' real lengths; each variant's MFU is over the peak of its own precision
    (`peaks`: {"fp32": ..., "bf16": ...} in FLOP/s)."""
    lengths = batch_lengths(batches)
    rows = sum(lengths) if not ce_on_masked_only else int(0.15 * sum(lengths))
    flops = distill_step_flops(teacher_config, student_config, lengths, head_rows=rows)
    bench["model_flops_per_run"] = flops
    bench["matmul_peak_flops_per_s"] = peaks
    for row in bench["variants"].values():
        amp = row["overrides"].get("distill_autocast", bench.get("autocast")) or "fp32"
        rates = [flops / r["seconds_total"] for r in row["runs"]]
        rates.sort()
        row["model_flops_per_s_median"] = rates[len(rates) // 2]
        row["mfu_peak"] = amp if amp in peaks else "fp32"
        row["mfu_median"] = row["model_flops_per_s_median"] / peaks[row["mfu_peak"]]
    return bench
