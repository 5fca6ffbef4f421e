"""Size and CPU speed, teacher vs student, the way the paper's Table 3 measured them.

The paper timed a full pass over the STS-B dev set at batch size 1 on a CPU. Here each model is
warmed up first, the models are interleaved in the same run (so a busy machine slows them
alike), every pass is repeated, and the median and spread are reported; the student/teacher
ratio is the figure that carries over between machines.

    python -m distil_utils.bench --teacher PATH_OR_NAME --student PATH_OR_NAME [--task stsb]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import Config, get_config
from .hub import load_split, load_tokenizer, resolve_model
from .io import write_result

PAIR_KEYS = {"stsb": ("sentence1", "sentence2"), "sst2": ("sentence", None),
             "mrpc": ("sentence1", "sentence2"), "rte": ("sentence1", "sentence2"),
             "cola": ("sentence", None)}


def model_size(model: torch.nn.Module) -> dict[str, float]:
    """Parameters (millions, tied weights once) and size on disk (MB) of `save_pretrained`."""
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        disk = sum(f.stat().st_size for f in Path(tmp).glob("*.safetensors"))
    return {"params_m": params / 1e6, "disk_mb": disk / 1e6}


def accepted_inputs(model: Any) -> set[str]:
    """Keyword inputs the model's forward takes (DistilBERT takes no token_type_ids)."""
    fwd = getattr(model, "forward", model)
    try:
        return set(inspect.signature(fwd).parameters)
    except (TypeError, ValueError):
        return {"input_ids", "attention_mask", "token_type_ids"}


def task_texts(task: str, cfg: Config, split: str = "validation") -> list:
    """Sentences (or sentence pairs) of a GLUE task's dev split, capped by the profile."""
    a, b = PAIR_KEYS[task]
    ds = load_split(f"glue/{task}", split, cfg.data_dir)
    if cfg.bench_max_examples is not None:
        ds = ds.select(range(min(len(ds), cfg.bench_max_examples)))
    return [(x, y) for x, y in zip(ds[a], ds[b], strict=True)] if b else list(ds[a])


def _encode(tokenizer: Any, batch: Sequence) -> dict[str, torch.Tensor]:
    if batch and isinstance(batch[0], tuple):
        return tokenizer([x for x, _ in batch], [y for _, y in batch], return_tensors="pt",
                         padding=True, truncation=True, max_length=512)
    return tokenizer(list(batch), return_tensors="pt", padding=True, truncation=True,
                     max_length=512)


def _batches(texts: Sequence, batch_size: int) -> list[Sequence]:
    return [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]


@torch.inference_mode()
def _one_pass(model: Any, inputs: list, tokenizer: Any, tokenize: bool) -> float:
    keys = accepted_inputs(model)
    t0 = time.perf_counter()
    for item in inputs:
        enc = _encode(tokenizer, item) if tokenize else item
        model(**{k: v for k, v in enc.items() if k in keys})
    return time.perf_counter() - t0


def time_dataset_pass(models: dict[str, Any], tokenizer: Any, texts: Sequence, *,
                      batch_size: int = 1, include_tokenization: bool = False, repeats: int = 3,
                      warmup: int = 5, progress: bool = True) -> dict[str, Any]:
    """Seconds for a full pass over `texts`, per model, interleaved and repeated.

    Without tokenisation the texts are tokenised once up front, so every model receives the
    very same tensors. Ratios are the first model's (the teacher's) median over each model's:
    2.0 means twice as fast.
    """
    if not models:
        raise ValueError("no models to time")
    batches = _batches(texts, batch_size)
    encoded = [_encode(tokenizer, b) for b in batches]
    inputs = batches if include_tokenization else encoded
    names = list(models)
    for name in names:  # warm-up: first calls allocate and pick kernels
        _one_pass(models[name], inputs[:warmup], tokenizer, include_tokenization)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in tqdm(range(repeats), desc="timing passes", disable=not progress):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(_one_pass(models[name], inputs, tokenizer, include_tokenization))
    out: dict[str, Any] = {"examples": len(texts), "batch_size": batch_size,
                           "tokenization": include_tokenization, "repeats": repeats,
                           "threads": torch.get_num_threads(), "models": {}}
    base = statistics.median(times[names[0]])
    for name in names:
        med = statistics.median(times[name])
        out["models"][name] = {"times": times[name], "median": med, "min": min(times[name]),
                               "max": max(times[name]), "speedup_vs_first": base / med}
    return out


@torch.inference_mode()
def latency_grid(models: dict[str, Any], batch_sizes: Sequence[int], seq_lens: Sequence[int],
                 repeats: int = 3, vocab_size: int = 30522, seed: int = 0) -> list[dict]:
    """Median latency (ms) and throughput (sequences/s) per model × batch size × length."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for bs in batch_sizes:
        for length in seq_lens:
            ids = torch.randint(1000, vocab_size, (bs, length), generator=gen)
            mask = torch.ones_like(ids)
            samples: dict[str, list[float]] = {n: [] for n in models}
            for model in models.values():
                model(input_ids=ids, attention_mask=mask)  # warm-up for this shape
            for r in range(repeats):
                for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
                    t0 = time.perf_counter()
                    models[name](input_ids=ids, attention_mask=mask)
                    samples[name].append(time.perf_counter() - t0)
            for name, s in samples.items():
                lat = statistics.median(s)
                rows.append({"model": name, "batch_size": bs, "seq_len": length,
                             "latency_ms": 1000 * lat, "throughput": bs / lat})
    return rows


def load_for_timing(path: str) -> torch.nn.Module:
    """A sequence-classification model from any checkpoint (a masked-LM checkpoint gets a fresh
    one-output head: its weights do not change the time of a forward pass)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(resolve_model(path),
                                                                   num_labels=1)
    finally:
        hf_logging.set_verbosity(previous)
    return model.eval()


def run_bench(teacher: str, student: str, cfg: Config, task: str = "stsb",
              tokenizer: Any = None, grid: bool = True) -> dict[str, Any]:
    """Table 3 for a teacher/student pair: sizes, STS-B dev pass with and without
    tokenisation, the latency grid, and every student/teacher ratio."""
    tok = tokenizer if tokenizer is not None else load_tokenizer(student)
    models = {"teacher": load_for_timing(teacher), "student": load_for_timing(student)}
    texts = task_texts(task, cfg)
    sizes = {n: model_size(m) for n, m in models.items()}
    passes = {tok_flag: time_dataset_pass(models, tok, texts, batch_size=1,
                                          include_tokenization=tok_flag,
                                          repeats=cfg.bench_repeats)
              for tok_flag in (False, True)}
    rows = latency_grid(models, cfg.bench_batch_sizes, cfg.bench_seq_lens,
                        repeats=cfg.bench_repeats) if grid else []
    table = {}
    for n in models:
        table[n] = {**sizes[n], "seconds": passes[False]["models"][n]["median"],
                    "seconds_with_tokenization": passes[True]["models"][n]["median"]}
    ratios = {
        "params": sizes["student"]["params_m"] / sizes["teacher"]["params_m"],
        "disk": sizes["student"]["disk_mb"] / sizes["teacher"]["disk_mb"],
        "speedup": passes[False]["models"]["student"]["speedup_vs_first"],
        "speedup_with_tokenization": passes[True]["models"]["student"]["speedup_vs_first"],
    }
    return {"task": task, "split": "validation", "examples": len(texts), "models": table,
            "ratios": ratios, "passes": {"without_tokenization": passes[False],
                                         "with_tokenization": passes[True]},
            "grid": rows, "threads": torch.get_num_threads(), "teacher": teacher,
            "student": student}


def plot_grid(rows: list[dict], save: Callable[[Any, str], Any] | None = None) -> Any:
    """Latency vs batch size and vs sequence length (log scales), one line per model."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    sns.lineplot(data=df, x="batch_size", y="latency_ms", hue="model", style="seq_len",
                 marker="o", ax=axes[0])
    sns.lineplot(data=df, x="seq_len", y="throughput", hue="model", style="batch_size",
                 marker="o", ax=axes[1])
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    axes[0].set_title("latency (ms)")
    axes[1].set_title("throughput (sequences / s)")
    if save is not None:
        save(fig, "06_latency_grid")
    return fig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Size and CPU speed of a teacher/student pair.")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--task", default="stsb", choices=sorted(PAIR_KEYS))
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-grid", action="store_true")
    ap.add_argument("--results-dir", default=None, help="default: results/ of this checkout")
    args = ap.parse_args(argv)
    over = {"bench_max_examples": args.max_examples, "bench_repeats": args.repeats,
            "results_dir": args.results_dir}
    cfg = get_config(args.profile, **over)
    res = run_bench(args.teacher, args.student, cfg, args.task, grid=not args.no_grid)
    print(f"{'model':10} {'params (M)':>10} {'disk (MB)':>10} {'pass (s)':>10} {'+tok (s)':>10}")
    for n, r in res["models"].items():
        print(f"{n:10} {r['params_m']:10.1f} {r['disk_mb']:10.1f} {r['seconds']:10.2f} "
              f"{r['seconds_with_tokenization']:10.2f}")
    from .paper import TABLE3_SPEED

    for n, r in TABLE3_SPEED.items():
        print(f"{n:26} {r['params_m']:>6}M {r['seconds']:>6} s  (Xeon E5-2690 v3, full dev set)")
    rt = res["ratios"]
    print(f"student/teacher: params {rt['params']:.2f}, disk {rt['disk']:.2f}; student "
          f"{rt['speedup']:.2f}x faster ({rt['speedup_with_tokenization']:.2f}x with "
          f"tokenisation) over {res['examples']} {args.task} dev examples, "
          f"{res['threads']} threads")
    path = write_result(cfg.out / "bench.json", res, cfg, teacher=args.teacher,
                        student=args.student)
    print("written:", path)


if __name__ == "__main__":
    main()
