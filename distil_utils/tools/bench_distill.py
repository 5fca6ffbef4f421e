"""Distillation throughput and memory: our training step against the reference algorithm.

One distillation step, end to end: masking, the frozen teacher's forward, the student's
forward and backward, gradient clipping and the AdamW/linear-schedule update: the very
optimizer step of `training.train_loop` (`training.TrainStep`). Each step is timed and
reported as *real* (non-padding) tokens per second, seconds per step and peak memory (CPU:
peak resident set size, reset before each run through /proc/self/clear_refs where Linux
allows it, else the process peak from `getrusage`; GPU: `torch.cuda.max_memory_allocated`).

Two algorithms on the same teacher, student, batch size, loss weights and sequences:

* **ours** — `distill.make_distill_loss` (with the speed settings of `Config`) on the
  length-grouped batches of `data.batch_stream`;
* **reference** — the algorithm of the reference distiller (huggingface/
  transformers-research-projects, distillation/distiller.py), re-implemented from its
  description in `tools.reference_distiller` (`reference_loss`): the student computes
  full-vocabulary logits at every position, the teacher does the same under `no_grad`,
  both are `masked_select`ed into copies for a KL over every real token, the masked-LM
  cross-entropy runs over the full logits, the hidden states are `masked_select`ed for the
  cosine loss; batches are padded and in random order (`random_batches`; the reference's
  train.py groups by size by default, the `reference_grouped` variant shows that case).

On the very same batch the two compute the same losses (`compare_losses`, asserted in
tests/test_bench_distill.py). Every speed option of ours is also shown switched the other
way, one at a time. The runs are interleaved (round r: A B C ..., round r+1: ... C B A),
every run sees the same sequences, starts from the same student and has one untimed
warm-up step; the median and spread over rounds are reported.

    python -m distil_utils.tools.bench_distill --profile cpu [--teacher T] [--steps N]
        [--batch-size B] [--rounds R] [--variants a,b,...] [--no-tokenize-bench] [-p k v]

It also times the data preparation: `data.tokenize_corpus` over the IMDb unsupervised
set (batched fast tokenizer through `datasets.map`, one process and `num_proc`).
"""

from __future__ import annotations

import copy
import gc
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from ..config import Config
from ..data import batch_stream
from ..distill import corpus_weights, make_distill_loss
from ..training import LossFn, TrainStep, apply_speed_settings, make_accelerator, make_optimizer
from .memory import peak_memory, rss_mb  # noqa: F401  (rss_mb: tests)
from .reference_distiller import random_batches, reference_loss

LOSS_KEYS = ("loss", "ce", "mlm", "cos")
# Losses of two float32 computations of the same step must agree to this relative tolerance.
LOSS_RTOL = 1e-4
# Mixed precision is reported as "equal" if its step-0 losses are within this of float32.
AMP_RTOL = 1e-2


# ----------------------------------------------------------------------------- memory
class Stepper:
    """`training.TrainStep`, the optimizer step of `train_loop` (its seeds, AdamW and
    schedule, clipping, finite checks, precision), one batch per step, without the loop's
    checkpointing: the step that trains is the step that is timed."""

    def __init__(self, student: torch.nn.Module, loss_fn: LossFn, cfg: Config,
                 max_steps: int) -> None:
        device = next(student.parameters()).device
        cfg = replace(cfg, grad_accum=1)  # one timed batch per optimizer step
        params = [p for p in student.parameters() if p.requires_grad]
        opt, sched = make_optimizer([{"params": params}], cfg, cfg.lr, max_steps)
        student.train()
        self.train_step = TrainStep(student, loss_fn, make_accelerator(cfg, device), opt, sched,
                                    cfg, desc="bench")
        self.n = 0

    def step(self, batch: dict) -> dict[str, float]:
        losses, _, _ = self.train_step(self.n, iter([batch]))
        self.n += 1
        return losses


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(student: torch.nn.Module, loss_fn: LossFn, batches: Sequence[dict],
               cfg: Config, *, warmup: int = 1) -> dict[str, Any]:
    """Run `warmup` untimed steps on the first batch, then one timed step per batch.

    Returns the seconds of every timed step, the real (attention_mask) and padded token
    counts, real tokens per second over the whole run (wall clock, and per CPU-second of
    this process: less sensitive to other jobs on the machine), and peak memory.
    """
    if not batches:
        raise ValueError("no batches to time")
    device = next(student.parameters()).device
    stepper = Stepper(student, loss_fn, cfg, max_steps=warmup + len(batches))
    for _ in range(warmup):
        stepper.step(batches[0])
    times, real, padded, losses = [], 0, 0, []
    enabled = gc.isenabled()
    gc.disable()  # a collection pause would land in one run only
    try:
        with peak_memory(device) as mem:
            cpu0 = time.process_time()
            for batch in batches:
                _sync(device)
                t0 = time.perf_counter()
                losses.append(stepper.step(batch)["loss"])
                _sync(device)
                times.append(time.perf_counter() - t0)
                real += int(batch["attention_mask"].sum())
                padded += batch["attention_mask"].numel()
            cpu = time.process_time() - cpu0
    finally:
        if enabled:
            gc.enable()
    total = sum(times)
    return {"step_seconds": times, "seconds_total": total,
            "seconds_per_step": statistics.median(times), "real_tokens": real,
            "padded_tokens": padded, "padding_frac": 1 - real / padded,
            "real_tokens_per_s": real / total, "padded_tokens_per_s": padded / total,
            "cpu_seconds_total": cpu, "real_tokens_per_cpu_s": real / cpu,
            "losses": losses, **mem, "rss_end_mb": rss_mb()}


# ------------------------------------------------------------------- equal losses
def compare_losses(teacher: torch.nn.Module, student: torch.nn.Module, batch: dict,
                   cfgs: dict[str, Config], weights: torch.Tensor, mask_id: int,
                   vocab_size: int, reference: str = "reference") -> dict[str, Any]:
    """Step-0 losses of each named computation on the same batch, student and masking.

    `cfgs` maps a name to a Config; the name `reference` uses `reference_loss`, any other
    `make_distill_loss`. Each runs from a copy of `student` in train mode with the same torch
    seed (so dropout is identical) and the same masking generator; the relative difference
    of every term to `reference` is returned.
    """
    rows: dict[str, dict[str, float]] = {}
    for name, cfg in cfgs.items():
        make = reference_loss if name == reference else make_distill_loss
        fn = make(teacher, cfg, weights, mask_id, vocab_size)
        model = copy.deepcopy(student).train()
        torch.manual_seed(cfg.seed)
        out = fn(model, batch, torch.Generator().manual_seed(cfg.seed + 1))
        rows[name] = {k: float(out[k].detach()) for k in LOSS_KEYS}
    ref = rows[reference]
    diffs = {name: max(abs(r[k] - ref[k]) / max(abs(ref[k]), 1e-8) for k in LOSS_KEYS)
             for name, r in rows.items()}
    return {"losses": rows, "max_rel_diff": diffs}


# ----------------------------------------------------------------------- variants
# name: (algorithm, batching, Config overrides). "ours" is the Config as given; each other
# "ours" variant switches one option the other way.
def variants(cfg: Config, device: torch.device) -> dict[str, tuple[str, str, dict]]:
    v: dict[str, tuple[str, str, dict]] = {
        "reference": ("reference", "random", {}),
        "ours": ("ours", "grouped", {}),
        "ours_no_grouping": ("ours", "random", {}),
        "ours_fused_head_" + ("off" if cfg.distill_fused_head else "on"):
            ("ours", "grouped", {"distill_fused_head": not cfg.distill_fused_head}),
        "ours_attn_" + ("eager" if cfg.attn_implementation != "eager" else "sdpa"):
            ("ours", "grouped",
             {"attn_implementation": "eager" if cfg.attn_implementation != "eager" else "sdpa"}),
        "reference_grouped": ("reference", "grouped", {}),
    }
    threads = cfg.num_threads or torch.get_num_threads()
    other = 1 if threads > 1 else min(2, os.cpu_count() or 1)
    if other != threads:
        v[f"ours_threads_{other}"] = ("ours", "grouped", {"num_threads": other})
    amp = "fp16" if device.type == "cuda" else "bf16"
    if cfg.distill_autocast is None:
        v[f"ours_{amp}"] = ("ours", "grouped", {"distill_autocast": amp})
    else:
        v["ours_fp32"] = ("ours", "grouped", {"distill_autocast": None})
    if device.type == "cuda":
        v["ours_compile_" + ("off" if cfg.distill_compile else "on")] = (
            "ours", "grouped", {"distill_compile": not cfg.distill_compile})
    return v


def bench_distill(cfg: Config, teacher: torch.nn.Module, student: torch.nn.Module,
                  seqs: Any, tokenizer: Any, *, steps: int, rounds: int = 2,
                  names: Sequence[str] | None = None, warmup: int = 1,
                  peaks: dict[str, float] | None = None) -> dict[str, Any]:
    """Time every variant `rounds` times, interleaved, on the same `steps × batch_size`
    sequences drawn from `seqs`; check step-0 loss equality first. With `peaks` (measured
    matmul FLOP/s per precision, `flops.matmul_peak`) each variant also gets its MFU."""
    device = next(teacher.parameters()).device
    all_variants = variants(cfg, device)
    names = list(all_variants) if names is None else list(names)
    unknown = [n for n in names if n not in all_variants]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {sorted(all_variants)}")
    for required in ("reference", "ours"):
        if required not in names:
            names.insert(0, required)
    n_seq = steps * cfg.batch_size
    if len(seqs) < n_seq:
        raise ValueError(f"{steps} steps of {cfg.batch_size} need {n_seq} sequences; the "
                         f"corpus has {len(seqs)}: lower --steps or --batch-size")
    pick = sorted(random.Random(cfg.seed).sample(range(len(seqs)), n_seq))
    pool = seqs.select(pick)
    pad = tokenizer.pad_token_id
    stream = batch_stream(pool, cfg.batch_size, cfg.seed, pad)
    batching = {"grouped": [next(stream)[1] for _ in range(steps)],
                "random": random_batches(pool, cfg.batch_size, cfg.seed, pad)}
    counts = {k: sum(int(b["attention_mask"].sum()) for b in bs) for k, bs in batching.items()}
    assert len(set(counts.values())) == 1, counts  # the same real tokens, batched two ways
    weights = _weights(pool, tokenizer, cfg)
    mask_id, vocab = tokenizer.mask_token_id, len(tokenizer)
    amp_name = next((n for n in all_variants if n in ("ours_bf16", "ours_fp16")), None)
    fused_flip = "ours_fused_head_" + ("off" if cfg.distill_fused_head else "on")
    check_cfgs = {"reference": cfg, "ours": cfg, fused_flip: replace(
        cfg, distill_fused_head=not cfg.distill_fused_head)}
    if amp_name:
        check_cfgs[amp_name] = replace(cfg, **all_variants[amp_name][2])
    equal = compare_losses(teacher, student, batching["grouped"][0], check_cfgs, weights,
                           mask_id, vocab)
    equal["rtol"] = {n: AMP_RTOL if n == amp_name else LOSS_RTOL for n in check_cfgs}
    equal["equal"] = {n: equal["max_rel_diff"][n] < equal["rtol"][n] for n in check_cfgs}
    default_threads = torch.get_num_threads()
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            algo, batches_kind, over = all_variants[name]
            vcfg = replace(cfg, **over)
            model = copy.deepcopy(student).to(device)
            torch.set_num_threads(vcfg.num_threads or default_threads)
            attn = {m: m.config._attn_implementation for m in (teacher, model)}
            apply_speed_settings(replace(vcfg, num_threads=None), teacher, model)
            make = reference_loss if algo == "reference" else make_distill_loss
            fn = make(teacher, vcfg, weights, mask_id, vocab)
            try:
                res = time_steps(model, fn, batching[batches_kind], vcfg, warmup=warmup)
            finally:
                torch.set_num_threads(default_threads)
                for m, a in attn.items():
                    m.set_attn_implementation(a)
            res["round"] = r
            runs[name].append(res)
            print(f"  round {r} {name:<22} {res['real_tokens_per_s']:8.1f} real tok/s  "
                  f"{res['seconds_per_step']:.3f} s/step  peak RSS {res['rss_peak_mb']:.0f} MB",
                  flush=True)
            del model, fn
            gc.collect()
    res = _summarize(cfg, names, all_variants, runs, equal, counts["grouped"], steps)
    res["autocast"] = cfg.distill_autocast
    if peaks is not None:  # model-FLOP utilisation: FLOPs from shapes / the measured peak
        from ..flops import add_mfu

        add_mfu(res, teacher.config, student.config, batching["grouped"], peaks,
                cfg.ce_on_masked_only)
        res["_grouped_batches"] = batching["grouped"]  # for a re-count (popped by main)
    return res


def _weights(pool: Any, tokenizer: Any, cfg: Config) -> torch.Tensor:
    return corpus_weights(pool, tokenizer, cfg.mlm_smoothing)


def _summarize(cfg: Config, names: list[str], all_variants: dict, runs: dict,
               equal: dict, real_tokens: int, steps: int) -> dict[str, Any]:
    rows = {}
    base = runs["reference"]
    for name in names:
        rs = runs[name]
        tps = [x["real_tokens_per_s"] for x in rs]
        cpu_tps = [x["real_tokens_per_cpu_s"] for x in rs]
        ratios = [x["real_tokens_per_s"] / b["real_tokens_per_s"]
                  for x, b in zip(rs, base, strict=True)]
        algo, batching, over = all_variants[name]
        rows[name] = {
            "algorithm": algo, "batching": batching, "overrides": over,
            "real_tokens_per_s_median": statistics.median(tps),
            "real_tokens_per_s_min": min(tps), "real_tokens_per_s_max": max(tps),
            "real_tokens_per_s_rounds": tps,
            "real_tokens_per_cpu_s_median": statistics.median(cpu_tps),
            "seconds_per_step_median": statistics.median(
                s for x in rs for s in x["step_seconds"]),
            "speedup_vs_reference_ratio_median": statistics.median(ratios),
            "speedup_vs_reference_ratio_min": min(ratios),
            "speedup_vs_reference_ratio_max": max(ratios),
            "speedup_vs_reference_cpu_ratio_median": statistics.median(
                x["real_tokens_per_cpu_s"] / b["real_tokens_per_cpu_s"]
                for x, b in zip(rs, base, strict=True)),
            "padding_frac": rs[0]["padding_frac"],
            "rss_peak_mb_max": max(x["rss_peak_mb"] for x in rs),
            "rss_extra_mb_max": max(x["rss_extra_mb"] for x in rs),
            "rss_peak_scope": rs[0]["rss_peak_scope"],
            **({"cuda_peak_mb_max": max(x["cuda_peak_mb"] for x in rs)}
               if "cuda_peak_mb" in rs[0] else {}),
            "runs": rs,
        }
    return {"variants": rows, "step0_losses": equal, "steps": steps,
            "batch_size": cfg.batch_size, "real_tokens_per_run": real_tokens,
            "threads": torch.get_num_threads(),
            "speedup_ours_vs_reference_median": rows["ours"]["speedup_vs_reference_ratio_median"],
            "speedup_ours_vs_reference_min": rows["ours"]["speedup_vs_reference_ratio_min"],
            "speedup_ours_vs_reference_max": rows["ours"]["speedup_vs_reference_ratio_max"]}


# --------------------------------------------------------------------- tokenisation


if __name__ == "__main__":  # the command line lives in bench_distill_cli
    from .bench_distill_cli import main

    main()
