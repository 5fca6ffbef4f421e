"""Size and CPU speed, teacher vs student, the way the paper's Table 3 measured them, and more.

The paper timed one full pass over the STS-B dev set at batch size 1 on a CPU (Table 3:
BERT-base 668 s, DistilBERT 410 s). A single pass on a shared machine is noise, so here:

* every model is warmed up first (the first calls allocate memory and pick kernels);
* the models are *interleaved* in the same run (repeat r: A, B; repeat r+1: B, A), so a busy
  neighbour or a CPU frequency change slows them alike instead of biasing one;
* each pass is repeated and the median with its spread (min/max, quartiles) is reported;
* with tokenisation excluded, the texts are tokenised once and the very same tensors reach
  every model; with it included, each pass tokenises as a deployed model would;
* the student/teacher *ratio* is reported for every figure: it is what carries over between
  machines, unlike the seconds.

The batch × length grid is `speed_grid`, the plots `figures`, the command line
`python -m distil_utils.tools.speed_cli`.
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

from .analysis import count_parameters
from .config import Config
from .intervals import halfwidth, paired_ratio
from .model_inputs import (
    FRESH_HEAD_NOTE,
    accepted_inputs,
    batches,
    bench_tokenizer,
    check_vocab,
    encode_batch,
    encode_texts,
    load_for_timing,
    max_positions,
    model_size,
    progress_bar,
    select_inputs,
    task_texts,
)
from .results_files import BENCH
from .speed_grid import latency_grid
from .speed_report import assemble, format_table, paper_table3


# ------------------------------------------------------------------------------ timing
@torch.inference_mode()
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
    before comparing two runs (tests/test_suite_smoke.py) recognise them.
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

    `warmup` batches go through every model first. Then `repeats` rounds, each one pass per
    model, the order alternating between rounds (A, B / B, A ...). The first model is the
    reference (the teacher): `time_ratio_vs_first` is a model's median over the reference's
    (0.6 = 40% less time), `speedup_vs_first` its inverse (1.6 = "60% faster", the paper's
    wording); `paired_speedup_median` is the median of the per-round ratios, which cancels
    drifts that hit both models of a round, and `paired_speedup_interval` its 95% bootstrap
    interval over rounds. With `target_halfwidth`, rounds are added after the first `repeats`
    until every model's interval is that narrow (or `max_repeats` rounds have run), so a
    ratio is reported as precisely as asked rather than after a fixed count.
    `torch.nn.Module`s are put in eval mode.
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
              threads: int | None = None, plots: bool = True,
              verbose: bool = True) -> dict[str, Any]:
    """Table 3 for a teacher/student pair, and beyond; written to `speed.json`.

    Sizes, the task's dev-set pass at batch 1 with and without tokenisation, the latency grid
    over `bench_batch_sizes` × `bench_seq_lens`, and the student/teacher ratio of every
    figure. `threads` sets torch's intra-op threads for the run (restored afterwards); the
    number used is recorded either way. Results go to `out_dir` (default `cfg.out`), plots to
    its `figures/` folder as PNG and SVG.
    """
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        res = _measure(teacher, student, cfg, task, tokenizer, grid)
    finally:
        torch.set_num_threads(previous_threads)
    out = Path(out_dir) if out_dir is not None else cfg.out
    if plots and res["grid"]:
        res["figures"] = [str(p) for p in save_plots(res, out / "figures")]
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
    check_vocab(tok, models)
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
    not depend on the values, and no pretrained BERT-base ships offline. The paper timed a
    full STS-B dev pass (1,500 pairs) on CPU, 668 s against 410 s; `bench_shape_examples`
    caps the pairs (None = all) so the tiny profiles time a few.
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


def save_plots(res: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """The latency grid and the dev-set passes as PNG and SVG in `folder` (`figures.save`)."""
    import matplotlib.pyplot as plt

    from .figures import latency_grid_figure, passes_figure, save

    paths = []
    for name, fig in (("speed_latency_grid", latency_grid_figure(res["grid"])),
                      ("speed_dataset_pass", passes_figure(res))):
        paths += save(fig, folder, name)
        plt.close(fig)
    return paths
