"""Size and CPU speed, teacher vs student, the way the paper's Table 3 measured them, and more.

The paper timed one full pass over the STS-B dev set at batch size 1 on a CPU (Table 3:
BERT-base 668 s, DistilBERT 410 s). A single pass on a shared machine is noise, so every
model is warmed up, the models are interleaved (A, B; then B, A) so drifts hit both alike,
passes are repeated (median and spread), and the student/teacher *ratio* is reported for
every figure: it carries over between machines, unlike the seconds.

Beyond Table 3, a batch size × sequence length grid on random token ids without padding.
The plots are `figures.save_speed_plots`, the command line `python -m benchmarks.speed_cli`.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .intervals import halfwidth, paired_ratio
from .model_inputs import (
    FRESH_HEAD_NOTE,
    accepted_inputs,
    batches,
    bench_tokenizer,
    encode_batch,
    encode_texts,
    load_for_timing,
    max_positions,
    model_size,
    progress_bar,
    select_inputs,
    task_texts,
)
from .paper import SOURCE, TABLE3_SPEED
from .results_files import BENCH
from .student import count_parameters
from .tasks import TASKS
from .teacher import check_vocab


# ------------------------------------------------------------- the latency grid
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


# ------------------------------------------------ Table 3, ours beside the paper's
PAPER_CPU = "Xeon E5-2690 v3, full 1,500-pair STS-B dev set"


def assemble(task: str, texts: list, models: dict, loaded: dict, sizes: dict, passes: dict,
             rows: list, notes: list, teacher: str, student: str) -> dict[str, Any]:
    """`speed.json`'s metrics from `run_bench`'s measurements: Table 3 per model, the
    student/teacher ratios, every timed pass, the grid and its ratios, the paper's table."""
    no_tok, tok = passes[False]["models"], passes[True]["models"]
    table = {n: {"params_m": sizes[n]["params_m"], "disk_mb": sizes[n]["disk_mb"],
                 "seconds": no_tok[n]["seconds_median"],
                 "seconds_min": no_tok[n]["seconds_min"],
                 "seconds_max": no_tok[n]["seconds_max"],
                 "seconds_iqr": no_tok[n]["seconds_iqr"],
                 "seconds_with_tokenization": tok[n]["seconds_median"],
                 "time_per_example_ms": no_tok[n]["time_per_example_ms"],
                 "layers": _n_layers(models[n]), "fresh_head": loaded[n][1]}
             for n in models}
    ratios = {
        "params": sizes["student"]["params_m"] / sizes["teacher"]["params_m"],
        "disk": sizes["student"]["disk_mb"] / sizes["teacher"]["disk_mb"],
        "time": no_tok["student"]["time_ratio_vs_first"],
        "speedup": no_tok["student"]["speedup_vs_first"],
        "speedup_paired": no_tok["student"]["paired_speedup_median"],
        "speedup_paired_interval": no_tok["student"]["paired_speedup_interval"],
        "speedup_rounds": passes[False]["rounds"],
        "time_with_tokenization": tok["student"]["time_ratio_vs_first"],
        "speedup_with_tokenization": tok["student"]["speedup_vs_first"],
    }
    return {"task": task, "split": TASKS[task].dev_split, "examples": len(texts),
            "batch_size": 1, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "teacher": teacher,
            "student": student, "models": table, "ratios": ratios,
            "passes": {"without_tokenization": passes[False], "with_tokenization": passes[True]},
            "grid": rows, "grid_ratios": grid_ratios(rows), "notes": notes,
            "paper": paper_table3()}


def reported_speedup(ratios: dict[str, Any]) -> tuple[float | None, tuple[float, float] | None]:
    """The batch-1 speed-up every reader reports (notebook 06's reading, the targets, the
    headline figure, the README), with its 95% interval: the median of the per-round paired
    ratios where rounds were paired (drift between rounds cancels), else the ratio of medians
    without an interval. One function, so the suite never prints two values for it."""
    if ratios.get("speedup_paired_interval"):
        return ratios.get("speedup_paired"), tuple(ratios["speedup_paired_interval"])
    return ratios.get("speedup"), None


def _n_layers(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None)


def paper_table3() -> dict[str, Any]:
    """The paper's Table 3 and the ratios it implies (labelled as the paper's)."""
    bert, distil = TABLE3_SPEED["BERT-base (paper)"], TABLE3_SPEED["DistilBERT (paper)"]
    return {"source": SOURCE, "hardware": PAPER_CPU, "rows": TABLE3_SPEED,
            "ratios": {"params": distil["params_m"] / bert["params_m"],
                       "time": distil["seconds"] / bert["seconds"],
                       "speedup": bert["seconds"] / distil["seconds"]}}


def format_table(res: dict[str, Any]) -> str:
    """Our rows, the paper's Table 3 rows beside them (labelled), and the ratios of both."""
    head = (f"{'':28} {'params (M)':>10} {'disk (MB)':>10} {'pass (s)':>10} "
            f"{'min-max (s)':>15} {'+tok (s)':>10}")
    lines = [f"{res['task']} {res['split']}: {res['examples']} examples, batch size 1, "
             f"{res['threads']} threads, {len(res['passes']['without_tokenization']['order'])} "
             "interleaved repeats (median)", head]
    for n, r in res["models"].items():
        spread = f"{r['seconds_min']:.3f}-{r['seconds_max']:.3f}"
        lines.append(f"{n + ' (ours)':28} {r['params_m']:10.1f} {r['disk_mb']:10.1f} "
                     f"{r['seconds']:10.3f} {spread:>15} {r['seconds_with_tokenization']:10.3f}")
    paper = res["paper"]
    for n, r in paper["rows"].items():
        lines.append(f"{n:28} {r['params_m']:10.1f} {'':>10} {r['seconds']:10.1f} {'':>15} "
                     f"{'':>10}")
    rt, pr = res["ratios"], paper["ratios"]
    lines.append(f"student/teacher params: ours {rt['params']:.2f}, paper {pr['params']:.2f}; "
                 f"disk: ours {rt['disk']:.2f}")
    lines.append(f"student/teacher time: ours {rt['time']:.2f} (student {rt['speedup']:.2f}x "
                 f"faster; {rt['speedup_with_tokenization']:.2f}x with tokenisation), paper "
                 f"{pr['time']:.2f} ({pr['speedup']:.2f}x faster)")
    lines.append(f"paper's rows: {paper['source']}, {paper['hardware']}")
    lines.extend(f"note: {n}" for n in res["notes"])
    return "\n".join(lines)


# ------------------------------------------------------------------ the timing
def _one_pass(model: Any, inputs: Sequence, tokenizer: Any, tokenize: bool,
              max_length: int) -> float:
    """Seconds for one pass. No progress bar inside (its own cost would be timed) and no
    garbage collection (a collection pause would land in one model's pass only)."""
    keys = accepted_inputs(model)
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for item in inputs:
            enc = encode_batch(tokenizer, item, max_length) if tokenize else item
            model(**select_inputs(enc, keys))
        return time.perf_counter() - t0
    finally:
        if enabled:
            gc.enable()


def summarize(times: Sequence[float]) -> dict[str, Any]:
    """Median and spread of repeated timings (quartiles need two or more repeats).

    Every key names its unit (`seconds_*`), so tools that drop timings from results files
    before comparing two runs (tests/suite/test_suite_smoke.py) recognise them.
    """
    times = list(times)
    q1, _, q3 = (statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1
                 else (times[0],) * 3)
    return {"times": times, "seconds_median": statistics.median(times),
            "seconds_mean": statistics.fmean(times), "seconds_min": min(times),
            "seconds_max": max(times), "seconds_q1": q1, "seconds_q3": q3,
            "seconds_iqr": q3 - q1}


def _check_timing_args(models: Mapping, texts: Sequence, batch_size: int, repeats: int,
                       warmup: int) -> None:
    if not models:
        raise ValueError("no models to time: pass {'teacher': model, 'student': model}")
    if not texts:
        raise ValueError("no texts to time: the data split is empty (check bench_max_examples)")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch_size >= 1, repeats >= 1 and warmup >= 0 (got "
                         f"{batch_size}, {repeats}, {warmup})")


def time_dataset_pass(models: dict[str, Any], tokenizer: Any, texts: Sequence, *,
                      batch_size: int = 1, include_tokenization: bool, repeats: int,
                      warmup: int, max_length: int | None = None, progress: bool = True,
                      target_halfwidth: float | None = None,
                      max_repeats: int | None = None) -> dict[str, Any]:
    """Seconds for a full pass over `texts` per model: the paper's Table 3 protocol, made robust.

    `warmup` batches go through every model, then `repeats` rounds of one pass per model in
    alternating order. Against the first model (the teacher): `time_ratio_vs_first`, its
    inverse `speedup_vs_first`, and `paired_speedup_median` (median of per-round ratios,
    cancelling drifts within a round) with its 95% bootstrap interval. With
    `target_halfwidth`, rounds are added until every interval is that narrow (at most
    `max_repeats`).
    """
    _check_timing_args(models, texts, batch_size, repeats, warmup)
    names = list(models)
    for m in models.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    max_length = max_length or max_positions(models)
    encoded = encode_texts(tokenizer, texts, batch_size, max_length)
    inputs = batches(texts, batch_size) if include_tokenization else encoded
    for name in names:
        _one_pass(models[name], inputs[:warmup], tokenizer, include_tokenization, max_length)
    times: dict[str, list[float]] = {n: [] for n in names}
    orders = []
    what = "with" if include_tokenization else "without"
    ref = names[0]

    def one_round(r: int) -> None:
        order = names if r % 2 == 0 else names[::-1]
        orders.append(list(order))
        gc.collect()  # once per round, outside the timed passes
        for name in order:
            times[name].append(_one_pass(models[name], inputs, tokenizer, include_tokenization,
                                         max_length))

    def wide() -> bool:
        return any(not halfwidth(paired_ratio(times[ref], times[n])) <= target_halfwidth
                   for n in names[1:])

    for r in progress_bar(range(repeats), f"dataset passes ({what} tokenisation)", progress):
        one_round(r)
    limit = max(repeats, max_repeats or repeats)
    while target_halfwidth is not None and len(orders) < limit and wide():
        one_round(len(orders))
    out: dict[str, Any] = {
        "examples": len(texts), "batches": len(encoded), "batch_size": batch_size,
        "tokenization": include_tokenization, "repeats": repeats, "warmup_batches": warmup,
        "max_length": max_length, "reference": ref, "order": orders,
        "tokens": int(sum(int(e["attention_mask"].sum()) for e in encoded)),
        "threads": torch.get_num_threads(), "models": {},
    }
    for name in names:
        row = summarize(times[name])
        med = row["seconds_median"]
        row["time_per_example_ms"] = 1000 * med / len(texts)
        row["time_ratio_vs_first"] = med / statistics.median(times[ref])
        row["speedup_vs_first"] = statistics.median(times[ref]) / med
        ci = paired_ratio(times[ref], times[name])  # the median of per-round ratios, and its CI
        row["paired_speedup_median"] = ci["median"]
        row["paired_speedup_interval"] = [ci["low"], ci["high"]]
        out["models"][name] = row
    out["rounds"] = len(orders)
    return out


# ------------------------------------------------------------------------------ run
def run_bench(teacher: str, student: str, cfg: Config, task: str = "stsb",
              out_dir: str | Path | None = None, *, tokenizer: Any = None, grid: bool = True,
              threads: int | None = None,
              verbose: bool = True) -> dict[str, Any]:
    """Table 3 for a teacher/student pair, and beyond; written to `speed.json`.

    Sizes, the dev-set pass at batch 1 with and without tokenisation, the latency grid, and
    the student/teacher ratio of each. `threads` sets torch's intra-op threads for the run
    (restored afterwards). Results go to `out_dir` (default `cfg.out`).
    """
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        res = _measure(teacher, student, cfg, task, tokenizer, grid)
    finally:
        torch.set_num_threads(previous_threads)
    out = Path(out_dir) if out_dir is not None else cfg.out
    res["path"] = str(BENCH.write(res, cfg, out=out, teacher=teacher, student=student))
    if verbose:
        print(format_table(res))
        print("written:", res["path"])
    return res


def _measure(teacher: str, student: str, cfg: Config, task: str, tokenizer: Any,
             grid: bool) -> dict[str, Any]:
    loaded = {"teacher": load_for_timing(teacher), "student": load_for_timing(student)}
    models = {n: m for n, (m, _) in loaded.items()}
    notes = [FRESH_HEAD_NOTE.format(name=n) for n, (_, fresh) in loaded.items() if fresh]
    tok = tokenizer if tokenizer is not None else bench_tokenizer(teacher, student, cfg)
    for name, model in models.items():
        if getattr(model, "config", None) is not None:  # an ONNX session has none
            check_vocab(model, tok, what=name)
    texts = task_texts(task, cfg)
    sizes = {n: model_size(m) for n, m in models.items()}
    warmup = min(10, len(texts))
    # Table 3's ratio is timed until its interval is as narrow as `bench_ci_halfwidth` asks
    passes = {flag: time_dataset_pass(
        models, tok, texts, batch_size=1, warmup=warmup, include_tokenization=flag,
        repeats=cfg.bench_repeats, target_halfwidth=None if flag else cfg.bench_ci_halfwidth,
        max_repeats=cfg.bench_max_repeats) for flag in (False, True)}
    limit = max_positions(models)
    lens = [n for n in cfg.bench_seq_lens if n <= limit]
    if len(lens) < len(cfg.bench_seq_lens):
        notes.append(f"sequence lengths {sorted(set(cfg.bench_seq_lens) - set(lens))} skipped "
                     f"in the grid: the models accept at most {limit} positions")
    rows = (latency_grid(models, cfg.bench_batch_sizes, lens, repeats=cfg.bench_repeats)
            if grid and lens else [])
    res = assemble(task, texts, models, loaded, sizes, passes, rows, notes, teacher, student)
    if cfg.bench_paper_shapes:
        del models, loaded  # free the suite's pair before building two BERT-base-sized models
        res["paper_shapes"] = paper_shapes(cfg, tok, task)
    return res


def paper_shapes(cfg: Config, tokenizer: Any, task: str = "stsb") -> dict[str, Any]:
    """Table 3's own comparison: BERT-base against DistilBERT-base *shapes*, batch 1.

    Random weights (12 and 6 layers, 768 wide, the bert-base-uncased vocabulary): speed does
    not depend on the values, and no pretrained BERT-base ships offline. The paper timed the
    full STS-B dev set (1,500 pairs); `bench_shape_examples` caps the pairs (None = all).
    """
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    torch.manual_seed(cfg.seed)
    vocab = len(tokenizer)
    models = {"BERT-base shape": BertForSequenceClassification(
                  BertConfig(vocab_size=vocab, num_labels=1)),
              "DistilBERT-base shape": DistilBertForSequenceClassification(
                  DistilBertConfig(vocab_size=vocab, num_labels=1))}
    texts = task_texts(task, dataclasses.replace(cfg, bench_max_examples=cfg.bench_shape_examples))
    timing = time_dataset_pass(models, tokenizer, texts, batch_size=1, warmup=min(5, len(texts)),
                               include_tokenization=False, repeats=cfg.bench_repeats)
    names = list(models)
    row = timing["models"][names[1]]
    return {"task": task, "examples": len(texts), "threads": timing["threads"],
            "seconds": {n: timing["models"][n]["seconds_median"] for n in names},
            "params_m": {n: count_parameters(m) / 1e6 for n, m in models.items()},
            "speedup": row["speedup_vs_first"], "speedup_paired": row["paired_speedup_median"],
            "speedup_paired_interval": row["paired_speedup_interval"],
            "rounds": timing["rounds"], "paper": paper_table3(), "timing": timing}
