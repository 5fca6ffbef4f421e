"""The `paper` profile on real GPUs: skipped where torch sees no CUDA device.

Nothing here has run yet: the machines this suite was built on have no GPU (README, "What
has and has not run on a GPU"). The tests are written to run as they are on a CUDA machine:

    .venv/bin/python -m pytest -m gpu -s tests/test_gpu.py

A random teacher of BERT-base's shape (no Hub needed) is distilled into the paper's 6-layer
student for a few steps of the paper profile (512-token sequences, 16 per device, bf16 or
fp16, the ~4,000-sequence recipe shrunk to 4 micro-batches per step so that it ends in
seconds); each test prints real tokens/s, model-FLOP utilisation and peak GPU memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import save_bert_base_teacher, write_corpus

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

RUN = textwrap.dedent("""
    import json, sys, torch
    from distil_utils.config import get_config
    from distil_utils.devices import dist_info
    from distil_utils.distill import prepare_corpus, run_distillation
    from distil_utils.teacher import prepare_tokenizer
    from distil_utils.distill import prepare_teacher
    from distil_utils.flops import matmul_peak, precision_dtype, run_throughput
    from distil_utils.recipe import precision

    results, corpus, teacher_dir, steps, mode = sys.argv[1:6]
    cfg = get_config(
        "paper", explicit_none=("data_dir", "corpus_max_docs", "epochs", "tokenizer",
                                "global_batch"),
        results_dir=results, corpus=(corpus,), data_dir=None, corpus_max_docs=None,
        heldout_docs=20, teacher=teacher_dir, tokenizer=None, epochs=None,
        max_steps=int(steps), global_batch=None, grad_accum=4, checkpoint_every=1000)
    tok = prepare_tokenizer(cfg)
    train, held = prepare_corpus(cfg, tok)
    if mode == "prepare":  # one process, before torchrun: distill --prepare-corpus
        sys.exit(0)
    teacher, _, _ = prepare_teacher(cfg, tok, train, held)
    rank, world = dist_info()
    dev = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.reset_peak_memory_stats(dev)
    student, history = run_distillation(cfg, teacher, tok, train)
    amp = precision(cfg, dev)
    peak = matmul_peak(dev, precision_dtype(amp))
    out = run_throughput(history, teacher.config, student.config,
                         cfg.batch_size * cfg.grad_accum * world, peak, world=world)
    out.update(rank=rank, world=world, precision=amp, device=str(dev),
               gpu=torch.cuda.get_device_name(dev),
               peak_gpu_memory_mb=torch.cuda.max_memory_allocated(dev) / 2**20,
               loss=[h["loss"] for h in history],
               student=sum(float(p.double().sum()) for p in student.parameters()))
    print("GPU-RUN " + json.dumps(out), flush=True)
    with open(f"{results}/rank{rank}.json", "w") as fh:
        json.dump(out, fh)
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu")
    words = ("a distilled student keeps most of what the large teacher knows about language "
             "while it runs faster on every device").split()
    # long documents: 512-token sequences, as in the paper profile
    corpus = write_corpus(base / "docs.txt", words, 600, 200, 900, 0)
    save_bert_base_teacher(base / "teacher")
    (base / "run.py").write_text(RUN)
    return base, corpus


def _launch(base: Path, corpus: Path, results: Path, nproc: int) -> list[dict]:
    results.mkdir()
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
        str(nproc)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    args = [str(base / "run.py"), str(results), str(corpus), str(base / "teacher"), "6"]
    prep = subprocess.run([sys.executable, *args, "prepare"], env=env, capture_output=True,
                          text=True, timeout=1200)
    assert prep.returncode == 0, prep.stderr[-4000:]
    proc = subprocess.run([*launcher, *args, "train"], env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = [json.loads((results / f"rank{r}.json").read_text()) for r in range(nproc)]
    for r in runs:
        print(f"\n[gpu] {r['world']} process(es), rank {r['rank']} on {r['gpu']} ({r['device']}), "
              f"{r['precision']}: {r['real_tokens_per_s']:,.0f} real tokens/s, MFU "
              f"{100 * r['mfu']:.1f}% of a measured {r['peak_flops_per_s'] / 1e12:.1f} TFLOP/s, "
              f"peak GPU memory {r['peak_gpu_memory_mb']:,.0f} MB")
    return runs


def _check(runs: list[dict]) -> None:
    for r in runs:
        assert all(torch.isfinite(torch.tensor(r["loss"])))
        # bf16 only where native (sm80 on); a T4 or V100 takes fp16 with loss scaling
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        assert r["precision"] == ("bf16" if native else "fp16")
        assert 0 < r["mfu"] < 1 and r["real_tokens_per_s"] > 0
    assert len({r["student"] for r in runs}) == 1, "the replicas differ"
    assert len({r["device"] for r in runs}) == len(runs), "two ranks shared a GPU"


def test_paper_profile_on_one_gpu(setup, tmp_path):
    base, corpus = setup
    _check(_launch(base, corpus, tmp_path / "one", 1))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more GPUs")
def test_paper_profile_under_torchrun_on_every_gpu(setup, tmp_path):
    base, corpus = setup
    _check(_launch(base, corpus, tmp_path / "all", torch.cuda.device_count()))
