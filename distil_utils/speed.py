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

    python -m distil_utils.speed --teacher PATH_OR_NAME --student PATH_OR_NAME [--task stsb]
        [--profile smoke] [--max-examples N] [--repeats N] [--threads N] [--no-grid]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import inspect
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import Config, get_config
from .hub import load_split, load_tokenizer, resolve_model
from .intervals import halfwidth, paired_ratio
from .results_io import ResultsLockedError, lock_results, write_result

# Text columns of each GLUE task (the same as finetune.TEXT_KEYS; repeated here so that timing
# does not import the Trainer stack).
PAIR_KEYS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}
DEV_SPLIT = {"mnli": "validation_matched"}
STANDARD_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FRESH_HEAD_NOTE = ("{name}: a masked-LM / encoder checkpoint, loaded with a freshly initialised "
                   "1-output classification head. Its weights are random, which does not change "
                   "the time of a forward pass: fine for timing, meaningless for accuracy.")
PAPER_CPU = "Xeon E5-2690 v3, full 1,500-pair STS-B dev set"


# ------------------------------------------------------------------------------ size
def _is_quantized(model: torch.nn.Module) -> bool:
    return any(hasattr(m, "_packed_params") for m in model.modules())


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied weights once), including the int8 weights of quantised layers,
    which torch keeps in packed buffers rather than parameters."""
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    for m in model.modules():
        if hasattr(m, "_packed_params") and callable(getattr(m, "weight", None)):
            n += m.weight().numel()
            bias = m.bias() if callable(getattr(m, "bias", None)) else None
            n += bias.numel() if bias is not None else 0
    return n


def model_size(model: torch.nn.Module) -> dict[str, Any]:
    """Parameters (millions) and size on disk (MB) of the model's weights.

    Disk is what `save_pretrained` writes as safetensors, i.e. what one ships. A dynamically
    quantised model cannot be written as safetensors (its weights are packed int8 objects), so
    its state dict is measured with `torch.save` instead; `format` says which was used.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if _is_quantized(model) or not hasattr(model, "save_pretrained"):
            torch.save(model.state_dict(), Path(tmp) / "weights.pt")
            fmt, pattern = "torch.save state_dict", "*.pt"
        else:
            model.save_pretrained(tmp)
            fmt, pattern = "safetensors", "*.safetensors"
        disk = sum(f.stat().st_size for f in Path(tmp).glob(pattern))
    if disk == 0:
        raise RuntimeError(f"saving {type(model).__name__} wrote no {pattern} file in a temporary "
                           "directory: cannot measure its size on disk")
    return {"params_m": count_parameters(model) / 1e6, "disk_mb": disk / 1e6, "format": fmt}


# ------------------------------------------------------------------------------ inputs
def accepted_inputs(model: Any) -> set[str]:
    """Tokenizer outputs the model takes: DistilBERT takes no token_type_ids.

    Hugging Face forwards also take `**kwargs`, which must not receive token_type_ids, so only
    named parameters count; an object listing `input_names` (an ONNX session) is believed.
    """
    names = getattr(model, "input_names", None)
    if names is not None:
        return set(names)
    fwd = getattr(model, "forward", model)
    try:
        params = inspect.signature(fwd).parameters
    except (TypeError, ValueError):
        return set(STANDARD_INPUTS)
    named = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if named & set(STANDARD_INPUTS):
        return named & set(STANDARD_INPUTS)
    return set(STANDARD_INPUTS)


def max_positions(models: Mapping[str, Any] | Sequence[Any], default: int = 512) -> int:
    """The longest input every model accepts (position embeddings), capped at `default`."""
    values = models.values() if isinstance(models, Mapping) else models
    limits = [getattr(getattr(m, "config", None), "max_position_embeddings", None) for m in values]
    return min([default, *[x for x in limits if x]])


def _vocab_size(models: Mapping[str, Any], default: int = 30522) -> int:
    sizes = [getattr(getattr(m, "config", None), "vocab_size", None) for m in models.values()]
    return min([x for x in sizes if x] or [default])


def task_texts(task: str, cfg: Config, split: str | None = None) -> list:
    """Sentences (or sentence pairs) of a GLUE task's dev split, capped by `bench_max_examples`."""
    if task not in PAIR_KEYS:
        raise ValueError(f"unknown task {task!r} for timing; choose one of {sorted(PAIR_KEYS)}")
    a, b = PAIR_KEYS[task]
    ds = load_split(f"glue/{task}", split or DEV_SPLIT.get(task, "validation"), cfg.data_dir)
    if cfg.bench_max_examples is not None:
        ds = ds.select(range(min(len(ds), cfg.bench_max_examples)))
    return [(x, y) for x, y in zip(ds[a], ds[b], strict=True)] if b else list(ds[a])


def _encode(tokenizer: Any, batch: Sequence, max_length: int = 512) -> dict[str, torch.Tensor]:
    if batch and isinstance(batch[0], (tuple, list)):
        return dict(tokenizer([x for x, _ in batch], [y for _, y in batch], return_tensors="pt",
                              padding=True, truncation=True, max_length=max_length))
    return dict(tokenizer(list(batch), return_tensors="pt", padding=True, truncation=True,
                          max_length=max_length))


def _batches(texts: Sequence, batch_size: int) -> list[Sequence]:
    return [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]


def encode_texts(tokenizer: Any, texts: Sequence, batch_size: int = 1,
                 max_length: int = 512) -> list[dict[str, torch.Tensor]]:
    """Tokenise `texts` (strings or (a, b) pairs) into padded batches, once.

    `time_dataset_pass` feeds these very tensors to every model when tokenisation is excluded,
    so the models are compared on identical inputs.
    """
    return [_encode(tokenizer, b, max_length) for b in _batches(texts, batch_size)]


def _select(enc: Mapping[str, torch.Tensor], keys: set[str]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in enc.items() if k in keys}


# ------------------------------------------------------------------------------ timing
def _bar(items: Sequence, desc: str, progress: bool) -> Any:
    """A progress bar that `TQDM_DISABLE=1` can still switch off (an explicit `disable=False`
    would override the environment)."""
    return tqdm(items, desc=desc, **({} if progress else {"disable": True}))


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
            enc = _encode(tokenizer, item, max_length) if tokenize else item
            model(**_select(enc, keys))
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
    inputs = _batches(texts, batch_size) if include_tokenization else encoded
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

    for r in _bar(range(repeats), f"dataset passes ({what} tokenisation)", progress):
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
    for bs, length in _bar(cells, "latency grid", progress):
        batch = _random_batch(bs, length, vocab, gen)
        feeds = {name: _select(batch, accepted_inputs(models[name])) for name in names}
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


# ------------------------------------------------------------------------------ loading
def _has_classifier_head(path: str) -> bool:
    from transformers import AutoConfig

    archs = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def load_for_timing(path: str) -> tuple[torch.nn.Module, bool]:
    """A sequence classifier from any checkpoint, and whether its head is freshly initialised.

    A masked-LM (or plain encoder) checkpoint gets a fresh 1-output head
    (`num_labels=1`, STS-B's regression head): random head weights do not change the time of a
    forward pass. A checkpoint that already is a classifier keeps its own head.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    resolved = resolve_model(path)
    fresh = not _has_classifier_head(resolved)
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
    try:
        kwargs = {"num_labels": 1} if fresh else {}
        model = AutoModelForSequenceClassification.from_pretrained(resolved, **kwargs)
    finally:
        hf_logging.set_verbosity(previous)
    return model.eval(), fresh


def _bench_tokenizer(teacher: str, student: str, cfg: Config) -> Any:
    """The student's own tokenizer, else the teacher's, else the profile's."""
    errors = []
    for name in (student, teacher, cfg.tokenizer):
        if not name:
            continue
        try:
            return load_tokenizer(name)
        except (OSError, ValueError, TypeError) as err:
            errors.append(f"{name}: {str(err).splitlines()[0]}")
    raise OSError("no tokenizer found for the benchmark; tried " + "; ".join(errors) +
                  ". Save the tokenizer beside the model or pass tokenizer=...")


def _check_vocab(tokenizer: Any, models: Mapping[str, Any]) -> None:
    for name, m in models.items():
        vocab = getattr(getattr(m, "config", None), "vocab_size", None)
        if vocab is not None and len(tokenizer) > vocab:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the {name} has a "
                             f"{vocab}-token vocabulary: ids would index past its embeddings. "
                             "Pass the model's own tokenizer.")


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
    res["path"] = str(write_result(out / "speed.json", res, cfg, teacher=teacher,
                                   student=student))
    if verbose:
        print(format_table(res))
        print("written:", res["path"])
    return res


def _measure(teacher: str, student: str, cfg: Config, task: str, tokenizer: Any,
             grid: bool) -> dict[str, Any]:
    loaded = {"teacher": load_for_timing(teacher), "student": load_for_timing(student)}
    models = {n: m for n, (m, _) in loaded.items()}
    notes = [FRESH_HEAD_NOTE.format(name=n) for n, (_, fresh) in loaded.items() if fresh]
    tok = tokenizer if tokenizer is not None else _bench_tokenizer(teacher, student, cfg)
    _check_vocab(tok, models)
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
    res = _assemble(task, texts, models, loaded, sizes, passes, rows, notes, teacher, student)
    if cfg.bench_paper_shapes:
        del models, loaded  # free the suite's pair before building two BERT-base-sized models
        res["paper_shapes"] = paper_shapes(cfg, tok, task)
    return res


def _assemble(task: str, texts: list, models: dict, loaded: dict, sizes: dict, passes: dict,
              rows: list, notes: list, teacher: str, student: str) -> dict[str, Any]:
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
    return {"task": task, "split": DEV_SPLIT.get(task, "validation"), "examples": len(texts),
            "batch_size": 1, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "teacher": teacher,
            "student": student, "models": table, "ratios": ratios,
            "passes": {"without_tokenization": passes[False], "with_tokenization": passes[True]},
            "grid": rows, "grid_ratios": grid_ratios(rows), "notes": notes,
            "paper": paper_table3()}


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


def _n_layers(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None)


def paper_table3() -> dict[str, Any]:
    """The paper's Table 3 and the ratios it implies (labelled as the paper's)."""
    from .paper import SOURCE, TABLE3_SPEED

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


# ------------------------------------------------------------------------------ plots
def plot_grid(rows: list[dict], save: Callable[[Any, str], Any] | None = None) -> Any:
    """Latency vs batch size and vs sequence length (log-log), one line per model and size."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    from matplotlib.ticker import ScalarFormatter

    if not rows:
        raise ValueError("no latency-grid rows to plot (was the grid switched off?)")
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    sns.lineplot(data=df, x="batch_size", y="latency_ms", hue="model", style="seq_len",
                 marker="o", ax=axes[0])
    sns.lineplot(data=df, x="seq_len", y="latency_ms", hue="model", style="batch_size",
                 marker="o", ax=axes[1])
    for ax, col, x in zip(axes, ("batch_size", "seq_len"), ("batch size", "sequence length"),
                          strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(df[col].unique()))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel(x)
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize="small", framealpha=0.6)
    axes[0].set_title("latency vs batch size")
    axes[1].set_title("latency vs sequence length")
    fig.tight_layout()
    if save is not None:
        save(fig, "06_latency_grid")
    return fig


def plot_passes(res: dict[str, Any]) -> Any:
    """Every timed dev-set pass per model, with and without tokenisation."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=False)
    for ax, key in zip(axes, ("without_tokenization", "with_tokenization"), strict=True):
        models = res["passes"][key]["models"]
        ax.boxplot([models[m]["times"] for m in models], tick_labels=list(models))
        ax.set_title(key.replace("_", " "))
        ax.set_ylabel("seconds per pass")
    fig.suptitle(f"{res['task']} dev, batch 1, {res['examples']} examples")
    fig.tight_layout()
    return fig


def save_plots(res: dict[str, Any], folder: str | Path) -> list[Path]:
    """The grid and pass plots as PNG and SVG in `folder`."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in (("speed_latency_grid", plot_grid(res["grid"])),
                      ("speed_dataset_pass", plot_passes(res))):
        for suffix in (".png", ".svg"):
            fig.savefig(folder / f"{name}{suffix}", bbox_inches="tight",
                        dpi=120 if suffix == ".png" else None)
            paths.append(folder / f"{name}{suffix}")
        plt.close(fig)
    return paths


# ------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m distil_utils.speed`: see the module docstring."""
    ap = argparse.ArgumentParser(description="Size and CPU speed of a teacher/student pair "
                                 "(the paper's Table 3 protocol, interleaved and repeated).")
    ap.add_argument("--teacher", required=True, help="checkpoint path, Hub name or 'minilm'")
    ap.add_argument("--student", required=True, help="checkpoint path, Hub name or 'minilm'")
    ap.add_argument("--task", default="stsb", choices=sorted(PAIR_KEYS))
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--no-grid", action="store_true", help="skip the batch × length grid")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--results-dir", default=None, help="default: results/ of this checkout")
    args = ap.parse_args(argv)
    try:  # bad settings and a results folder another run is writing: named before any work
        cfg = get_config(args.profile, bench_max_examples=args.max_examples,
                         bench_repeats=args.repeats, results_dir=args.results_dir)
        lock_results(cfg.out, f"bench --profile {args.profile}")
    except (ValueError, ResultsLockedError, NotADirectoryError) as err:
        ap.exit(2, f"error: {err}\n")
    return run_bench(args.teacher, args.student, cfg, args.task, grid=not args.no_grid,
                     threads=args.threads, plots=not args.no_plots)


if __name__ == "__main__":
    main()
