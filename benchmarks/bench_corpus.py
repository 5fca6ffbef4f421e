"""Corpus preparation at scale: time, peak memory and disk for 0.5M, 1M, 2M sentences.

    python -m benchmarks.bench_corpus [--sizes 500000,1000000,2000000] [--max-seq-len 512]

The IMDb unsupervised reviews, split into sentences and repeated in a seeded order to reach
each size, one per line like BookCorpus. Each size runs `data.prepare_sequences` in a fresh
process (so its peak RSS is its own), then draws 100 batches of `data.batch_stream` from the
memory-mapped cache. The result is extrapolated linearly to the paper's ~74M sentences
(`datasets.map` is linear in the corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distil_utils.config import default_data_dir
from distil_utils.hub import load_split

PAPER_SENTENCES = 74_000_000

CHILD = """
import json, os, resource, sys, threading, time
t0 = time.perf_counter()
# RSS counts touched pages of memory-mapped files too (reclaimable page cache); the heap is
# RssAnon. Sampled every 50 ms for this process and its tokeniser workers.
peaks = {"main_anon": 0, "main_file": 0, "workers_anon": 0}
def status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("RssAnon:", "RssFile:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out
def sample():
    me = os.getpid()
    while True:
        s = status(me)
        peaks["main_anon"] = max(peaks["main_anon"], s.get("RssAnon", 0))
        peaks["main_file"] = max(peaks["main_file"], s.get("RssFile", 0))
        try:
            kids = open(f"/proc/{me}/task/{me}/children").read().split()
        except OSError:
            kids = []
        for k in kids:
            peaks["workers_anon"] = max(peaks["workers_anon"], status(k).get("RssAnon", 0))
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
from distil_utils import data
from distil_utils.config import get_config
from distil_utils.hub import load_tokenizer
path, out, max_len = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = get_config("smoke", explicit_none=("corpus_max_docs",), corpus=(path,),
                 corpus_max_docs=None, heldout_docs=100,
                 max_seq_len=max_len, min_seq_len=12, results_dir=out, tokenizer="minilm")
tok = load_tokenizer("minilm")
t1 = time.perf_counter()
train, held = data.prepare_sequences(cfg, tok)
t2 = time.perf_counter()
stream = data.batch_stream(train, 32, 0, tok.pad_token_id)
for _ in range(100):
    next(stream)
t3 = time.perf_counter()
cache = data.corpus_cache_dir(cfg)
disk = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
print(json.dumps({"prepare_s": t2 - t1, "first_100_batches_s": t3 - t2, "startup_s": t1 - t0,
                  "sequences": len(train), "tokens": data.corpus_info(cfg)["train_tokens"],
                  "cache_mb": disk / 2**20,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_peak_rss_mb":
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "peak_anon_mb": peaks["main_anon"], "peak_file_mb": peaks["main_file"],
                  "workers_peak_anon_mb": peaks["workers_anon"]}))
"""


def sentences(data_dir: str | None) -> list[str]:
    """The IMDb unsupervised reviews cut into sentences (markup removed)."""
    texts = load_split("imdb", "unsupervised", data_dir)["text"]
    out = []
    for t in texts:
        t = re.sub(r"<br\s*/?>", " ", t)
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", t) if len(s.split()) >= 4]
    return out


def write_corpus(path: Path, pool: list[str], n: int, seed: int = 0) -> None:
    import numpy as np

    idx = np.random.default_rng(seed).integers(0, len(pool), n)
    with path.open("w") as fh:
        for i in idx:
            fh.write(pool[i] + "\n")


def run_size(pool: list[str], n: int, max_len: int, work: Path) -> dict[str, Any]:
    src = work / f"sentences_{n}.txt"
    write_corpus(src, pool, n)
    env = {**os.environ, "HF_DATASETS_CACHE": str(work / f"hf_{n}"), "TQDM_DISABLE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(work / f"res_{n}"),
                           str(max_len)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update(sentences=n, wall_s=time.perf_counter() - t0,
               input_mb=src.stat().st_size / 2**20)
    return row


def extrapolate(rows: list[dict], target: int = PAPER_SENTENCES) -> dict[str, Any]:
    """Least-squares line through (sentences, seconds) and (sentences, MB)."""
    import numpy as np

    x = np.array([r["sentences"] for r in rows], dtype=float)
    out = {"sentences": target}
    for key in ("prepare_s", "cache_mb", "peak_rss_mb", "workers_peak_rss_mb", "peak_anon_mb",
                "workers_peak_anon_mb"):
        slope, icpt = np.polyfit(x, [r[key] for r in rows], 1)
        out[key] = float(slope * target + icpt)
        out[key + "_per_million"] = float(slope * 1e6)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500000,1000000,2000000")
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--out", default=None, help="write the JSON result here")
    args = ap.parse_args(argv)

    pool = sentences(default_data_dir())
    print(f"{len(pool):,} distinct IMDb sentences, {os.cpu_count()} CPUs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            row = run_size(pool, n, args.max_seq_len, Path(tmp))
            rows.append(row)
            print(f"{n:>10,} sentences: prepared in {row['prepare_s']:7.1f} s, peak RSS "
                  f"{row['peak_rss_mb']:6.0f} MB (tokeniser workers "
                  f"{row['workers_peak_rss_mb']:.0f} MB); heap (RssAnon) {row['peak_anon_mb']:.0f}"
                  f" MB, workers {row['workers_peak_anon_mb']:.0f} MB; cache "
                  f"{row['cache_mb']:.0f} MB, "
                  f"{row['sequences']:,} sequences, "
                  f"first 100 batches {row['first_100_batches_s']:.2f} s", flush=True)
    res = {"rows": rows, "max_seq_len": args.max_seq_len, "cpus": os.cpu_count(),
           "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if len(rows) > 1:
        ex = res["extrapolation"] = extrapolate(rows)
        print(f"extrapolated to {PAPER_SENTENCES:,} sentences on this machine: "
              f"{ex['prepare_s'] / 3600:.1f} h, peak RSS {ex['peak_rss_mb']:,.0f} MB (heap "
              f"{ex['peak_anon_mb']:,.0f} MB, workers {ex['workers_peak_anon_mb']:,.0f} MB), "
              f"cache {ex['cache_mb'] / 1024:,.1f} GB", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
