"""Distillation throughput and memory: our training step against the reference algorithm.

One optimizer step end to end (masking, teacher forward, student forward and backward,
clipping, AdamW update: `training.TrainStep`, the step `train_loop` takes), reported as real
(non-padding) tokens per second, seconds per step and peak memory (`benchmarks.memory`).
Two algorithms on the same models, loss weights and sequences:

* **ours** — `distill.make_distill_loss` on the length-grouped batches of `data.batch_stream`;
* **reference** — the reference distiller's algorithm (huggingface/transformers-research-
  projects, distillation/distiller.py) as re-implemented in `benchmarks.reference_distiller`:
  full-vocabulary logits, `masked_select`ed copies, padded batches in random order
  (`reference_grouped`: grouped by size, as the reference's train.py does by default).

Both give the same step-0 losses (`compare_losses`); each speed option of ours is also run
switched the other way. Runs are interleaved (A B C, then C B A) from the same student with
one untimed warm-up step; the median and spread over rounds are reported. It also times
`data.tokenize_corpus` over the IMDb unsupervised set.

    python -m benchmarks.bench_distill --profile cpu [--teacher T] [--steps N]
        [--batch-size B] [--rounds R] [--variants a,b,...] [--no-tokenize-bench] [-p k v]
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.memory import (
    peak_memory,  # noqa: F401  (rss_mb: tests)
    rss_mb,
)
from benchmarks.reference_distiller import random_batches, reference_loss
from distil_utils.artefacts import write_result
from distil_utils.config import Config
from distil_utils.data import batch_stream, tokenize_corpus
from distil_utils.devices import resolve_device
from distil_utils.distill import config_from_cli, corpus_weights, make_distill_loss, prepare_corpus
from distil_utils.flops import add_mfu, matmul_peak
from distil_utils.hub import load_split
from distil_utils.student import student_from_teacher
from distil_utils.teacher import build_teacher, check_vocab, load_teacher, prepare_tokenizer
from distil_utils.training import (
    LossFn,
    TrainStep,
    apply_speed_settings,
    make_accelerator,
    make_optimizer,
)

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


# The step's named phases (`torch.profiler.record_function` ranges in training and fused_head).
PHASES = ("distil.masking", "distil.teacher_forward", "distil.student_forward",
          "distil.vocab_head", "distil.cosine", "distil.backward", "distil.optimizer")


def breakdown(student: torch.nn.Module, loss_fn: LossFn, batches: Sequence[dict],
              cfg: Config, data_seconds: float) -> dict[str, Any]:
    """Where one step's time goes: seconds per step in each named phase (wall time of its
    range, from `torch.profiler` over the `batches` after one warm-up step), the rest as
    "other" (finite checks, autograd bookkeeping), and `data_seconds` (collating one batch,
    done outside the step). Profiled steps are a little slower than timed ones: read the
    shares, not the absolute seconds."""
    from torch.profiler import ProfilerActivity, profile

    stepper = Stepper(student, loss_fn, cfg, max_steps=1 + len(batches))
    stepper.step(batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for batch in batches:
            stepper.step(batch)
        total = (time.perf_counter() - t0) / len(batches)
    seconds = {name.removeprefix("distil."): 0.0 for name in PHASES}
    for event in prof.key_averages():
        if event.key in PHASES:
            seconds[event.key.removeprefix("distil.")] += event.cpu_time_total / 1e6 / len(batches)
    seconds["other"] = max(total - sum(seconds.values()), 0.0)
    return {"seconds_per_step": seconds, "profiled_step_seconds": total,
            "share": {k: v / total for k, v in seconds.items()},
            "data_seconds_per_batch": data_seconds}


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
    t0 = time.perf_counter()
    grouped = [next(stream)[1] for _ in range(steps)]
    data_seconds = (time.perf_counter() - t0) / steps
    batching = {"grouped": grouped,
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
    model = copy.deepcopy(student).to(device)
    apply_speed_settings(replace(cfg, num_threads=None), teacher, model)
    res["breakdown_ours"] = breakdown(
        model, make_distill_loss(teacher, cfg, weights, mask_id, vocab),
        batching["grouped"][:2], cfg, data_seconds)
    del model
    if peaks is not None:  # model-FLOP utilisation: FLOPs from shapes / the measured peak

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


# --------------------------------------------------------------------- command line
def tokenize_bench(cfg: Config, tokenizer: Any, max_docs: int | None = None,
                   num_procs: Sequence[int | None] = (None, 2)) -> dict[str, Any]:
    """Tokens per second of `data.tokenize_corpus` over the IMDb unsupervised set.

    The documents are held in memory (no cache file), so `datasets.map` really runs every
    time instead of returning its on-disk cache. Tokens are those of the produced
    sequences ([CLS]/[SEP] included, pieces shorter than `min_seq_len` dropped).
    """
    import datasets


    docs = load_split("imdb", "unsupervised", cfg.data_dir).select_columns(["text"])
    if max_docs is not None:
        docs = docs.select(range(min(max_docs, len(docs))))
    texts = docs["text"]
    mem = datasets.Dataset.from_dict({"text": texts})
    chars = sum(len(t) for t in texts)
    rows = []
    for procs in num_procs:
        t0 = time.perf_counter()
        out = tokenize_corpus(mem, tokenizer, cfg.max_seq_len, cfg.min_seq_len, procs)
        seconds = time.perf_counter() - t0
        tokens = sum(out["length"])
        rows.append({"num_proc": procs or 1, "docs": len(texts), "sequences": len(out),
                     "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                     "docs_per_s": len(texts) / seconds, "mb_text_per_s": chars / 2**20 / seconds})
        print(f"  tokenise {len(texts)} IMDb docs, num_proc={procs or 1}: "
              f"{tokens / seconds:,.0f} tokens/s ({seconds:.1f} s)", flush=True)
    return {"corpus": "imdb/unsupervised", "max_seq_len": cfg.max_seq_len,
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset"),
            "runs": rows}


# ------------------------------------------------------------------------- models
def load_models(cfg: Config, tokenizer: Any, teacher: str | None = None,
                ) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """(teacher, student, description). The teacher is `teacher`, else the profile's
    adapted teacher if cached under results/, else the profile's teacher — with a fresh MLM
    head if it has none (fine for timing: the head's values do not change the work). Built
    by the product's `teacher.build_teacher`; `random-bert-base` is its tiny teacher at
    BERT-base's shape (12 x 768, random weights): timing without the Hub."""
    cached = cfg.out / "teacher"
    if teacher is None and (cached / "config.json").exists():
        model, what = load_teacher(cached), f"{cached} (adapted)"
        check_vocab(model, tokenizer)
    else:
        name = teacher or cfg.teacher
        if name == "random-bert-base":
            cfg = replace(cfg, tiny_layers=12, tiny_hidden=768, tiny_heads=12,
                          tiny_intermediate=3072)
            model = build_teacher(cfg, tokenizer, "tiny")
            what = "random-bert-base (BERT-base shape, random weights, timing only)"
        else:
            model = build_teacher(cfg, tokenizer, name, allow_new_head=True)
            what = ("tiny (random, built from config)" if name == "tiny" else
                    f"{name} (MLM head as loaded; random if the checkpoint has none)")
    student = student_from_teacher(model, cfg.student_layers)
    return model.eval(), student, what


# ------------------------------------------------------------------------- report
def format_report(res: dict[str, Any]) -> str:
    b = res["bench"]
    lines = [f"distillation step, batch {b['batch_size']}, {b['steps']} steps x "
             f"{len(b['variants']['ours']['runs'])} rounds, {b['real_tokens_per_run']} real "
             f"tokens per run, {b['threads']} threads",
             f"teacher {res['teacher']} ({res['teacher_layers']} layers), student "
             f"{res['student_layers']} layers, attention {res['attn_implementation']}",
             f"{'variant':<22} {'real tok/s':>11} {'(min-max)':>17} {'s/step':>7} "
             f"{'x ref':>6} {'tok/CPU-s':>9} {'x ref':>6} {'pad%':>5} {'peak RSS MB':>11} "
             f"{'+MB':>6} {'MFU%':>5}"]
    for name, r in b["variants"].items():
        lines.append(
            f"{name:<22} {r['real_tokens_per_s_median']:11.1f} "
            f"{r['real_tokens_per_s_min']:8.1f}-{r['real_tokens_per_s_max']:<8.1f} "
            f"{r['seconds_per_step_median']:7.3f} {r['speedup_vs_reference_ratio_median']:6.2f} "
            f"{r['real_tokens_per_cpu_s_median']:9.1f} "
            f"{r['speedup_vs_reference_cpu_ratio_median']:6.2f} "
            f"{100 * r['padding_frac']:5.1f} {r['rss_peak_mb_max']:11.0f} "
            f"{r['rss_extra_mb_max']:6.0f} "
            + (f"{100 * r['mfu_median']:5.1f}" if "mfu_median" in r else f"{'-':>5}"))
    if "matmul_peak_flops_per_s" in b:
        pk = b["matmul_peak_flops_per_s"]
        lines.append("MFU: model FLOPs of the step (from the shapes, real tokens) / time / the "
                     "measured matmul peak: " + ", ".join(
                         f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in pk.items()))
    lines.append(f"ours vs reference, real tokens/s: x{b['speedup_ours_vs_reference_median']:.2f} "
                 f"(median over rounds; min x{b['speedup_ours_vs_reference_min']:.2f}, "
                 f"max x{b['speedup_ours_vs_reference_max']:.2f})")
    if "breakdown_ours" in b:
        bd = b["breakdown_ours"]
        lines.append("where ours' step goes (profiled, share of the step): " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in sorted(bd["share"].items(),
                                                     key=lambda kv: -kv[1]))
            + f"; collating a batch: {1000 * bd['data_seconds_per_batch']:.0f} ms")
    eq = b["step0_losses"]
    lines.append("step-0 losses on one batch, max relative difference to the reference "
                 "(equal within tolerance?): " + ", ".join(
                     f"{k} {v:.1e} ({'yes' if eq['equal'][k] else 'NO'})"
                     for k, v in eq["max_rel_diff"].items() if k != "reference"))
    if res.get("tokenize"):
        for row in res["tokenize"]["runs"]:
            lines.append(f"tokenise IMDb unsupervised ({row['docs']} docs), num_proc "
                         f"{row['num_proc']}: {row['tokens_per_s']:,.0f} tokens/s, "
                         f"{row['docs_per_s']:,.0f} docs/s")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI
# peak_n: the side of the matmul that measures the peak (None: flops.matmul_peak's, 2048 on
# a CPU). The smoke profile's models are tiny and a CPU without bf16 units takes ~20 s per
# 2048³ bf16 product, 22 of them: 512 keeps its MFU column plumbing, in seconds.
PROFILE_DEFAULTS = {"smoke": {"steps": 3, "rounds": 1, "tokenize": True, "tokenize_docs": 300,
                              "peak_n": 512},
                    "cpu": {"steps": 8, "rounds": 2, "tokenize": True, "tokenize_docs": None,
                            "peak_n": None},
                    "paper": {"steps": 3, "rounds": 1, "tokenize": False, "tokenize_docs": None,
                              "peak_n": None}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m benchmarks.bench_distill`: see the module docstring."""
    ap = argparse.ArgumentParser(description="Throughput and memory of a distillation step, "
                                 "ours vs the reference algorithm.")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--teacher", default=None, help="default: the profile's (adapted) teacher")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None, help="interleaved repeats")
    ap.add_argument("--variants", default=None, help="comma-separated subset of variants")
    ap.add_argument("--tokenize-bench", dest="tokenize", action="store_true", default=None)
    ap.add_argument("--no-tokenize-bench", dest="tokenize", action="store_false")
    ap.add_argument("--tokenize-docs", type=int, default=None,
                    help="IMDb documents to tokenise (default: all for cpu, 300 for smoke)")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                    help="override a profile setting, e.g. -p distill_chunk_rows 512")
    args = ap.parse_args(argv)
    defaults = PROFILE_DEFAULTS.get(args.profile, PROFILE_DEFAULTS["smoke"])
    cfg = config_from_cli(args.profile, args.param, batch_size=args.batch_size)
    steps = args.steps or defaults["steps"]
    rounds = args.rounds or defaults["rounds"]
    tokenize = defaults["tokenize"] if args.tokenize is None else args.tokenize
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    tokenizer = prepare_tokenizer(cfg)
    teacher, student, what = load_models(cfg, tokenizer, args.teacher)
    teacher.to(device)
    student.to(device)
    train, _ = prepare_corpus(cfg, tokenizer)
    names = args.variants.split(",") if args.variants else None

    amp_dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        amp_dtypes["fp16"] = torch.float16
    # only the precisions timed: a CPU without bf16 units takes minutes per 2048³ bf16 product
    every = variants(cfg, device)
    timed = {(every[n][2].get("distill_autocast", cfg.distill_autocast) or "fp32")
             for n in (names or every) if n in every} | {cfg.distill_autocast or "fp32"}
    amp_dtypes = {k: v for k, v in amp_dtypes.items() if k in timed}
    peaks = {k: matmul_peak(device, dt, defaults["peak_n"]) for k, dt in amp_dtypes.items()}
    print(f"timing {steps} steps x {rounds} rounds per variant on {device} "
          f"({torch.get_num_threads()} threads); measured matmul peak " + ", ".join(
              f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peaks.items()), flush=True)
    bench = bench_distill(cfg, teacher, student, train, tokenizer, steps=steps, rounds=rounds,
                          names=names, peaks=peaks)
    # measured again after the runs, the best of both: other jobs on a shared machine lower
    # a single measurement, which would overstate the MFU
    again = {k: max(v, matmul_peak(device, amp_dtypes[k], defaults["peak_n"]))
             for k, v in peaks.items()}
    if again != peaks:
        peaks.update(again)
        add_mfu(bench, teacher.config, student.config, bench.pop("_grouped_batches"), peaks,
                cfg.ce_on_masked_only)
    bench.pop("_grouped_batches", None)
    res: dict[str, Any] = {
        "teacher": what, "teacher_layers": teacher.config.num_hidden_layers,
        "student_layers": student.config.n_layers, "device": str(device),
        "attn_implementation": {"teacher": teacher.config._attn_implementation,
                                "student": student.config._attn_implementation},
        "bench": bench,
        "rss_final_mb": rss_mb(),
    }
    if tokenize:
        res["tokenize"] = tokenize_bench(cfg, tokenizer, args.tokenize_docs
                                         or defaults["tokenize_docs"])
    print(format_report(res))
    path = write_result(Path(cfg.out) / "bench_distill.json", res, cfg, steps=steps,
                        rounds=rounds)
    print(f"-> {path}")
    return res


if __name__ == "__main__":
    main()
