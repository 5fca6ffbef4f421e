"""The command line of the distillation benchmark (`tools.bench_distill`): models, corpus,
the data-preparation timing, the printed report and `results/<profile>/bench_distill.json`.

    python -m distil_utils.tools.bench_distill --profile cpu [--teacher T] [--steps N] ...
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..devices import resolve_device
from ..distill import config_from_cli, prepare_corpus
from ..results_io import write_result
from ..teacher import build_teacher, check_vocab, prepare_tokenizer
from .bench_distill import bench_distill, variants  # noqa: F401
from .memory import rss_mb


def tokenize_bench(cfg: Config, tokenizer: Any, max_docs: int | None = None,
                   num_procs: Sequence[int | None] = (None, 2)) -> dict[str, Any]:
    """Tokens per second of `data.tokenize_corpus` over the IMDb unsupervised set.

    The documents are held in memory (no cache file), so `datasets.map` really runs every
    time instead of returning its on-disk cache. Tokens are those of the produced
    sequences ([CLS]/[SEP] included, pieces shorter than `min_seq_len` dropped).
    """
    import datasets

    from ..data import tokenize_corpus
    from ..hub import load_split

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
    from ..student import load_teacher, student_from_teacher

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
PROFILE_DEFAULTS = {"smoke": {"steps": 3, "rounds": 1, "tokenize": True, "tokenize_docs": 300},
                    "cpu": {"steps": 8, "rounds": 2, "tokenize": True, "tokenize_docs": None},
                    "paper": {"steps": 3, "rounds": 1, "tokenize": False, "tokenize_docs": None}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m distil_utils.tools.bench_distill`: see the module docstring."""
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
    from ..flops import matmul_peak

    amp_dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        amp_dtypes["fp16"] = torch.float16
    peaks = {k: matmul_peak(device, dt) for k, dt in amp_dtypes.items()}
    print(f"timing {steps} steps x {rounds} rounds per variant on {device} "
          f"({torch.get_num_threads()} threads); measured matmul peak " + ", ".join(
              f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peaks.items()), flush=True)
    bench = bench_distill(cfg, teacher, student, train, tokenizer, steps=steps, rounds=rounds,
                          names=names, peaks=peaks)
    # measured again after the runs, the best of both: other jobs on a shared machine lower
    # a single measurement, which would overstate the MFU
    again = {k: max(v, matmul_peak(device, amp_dtypes[k])) for k, v in peaks.items()}
    if again != peaks:
        from ..flops import add_mfu

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
