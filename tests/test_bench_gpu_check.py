"""`python -m benchmarks.gpu_check --dry-run`: the GPU user's first command, run on
the CPU at tiny shapes, so that it cannot rot between the rare runs on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

from benchmarks.gpu_check import datasheet_peak


@pytest.mark.slow  # every check, a DDP pair included (~30 s)
def test_the_dry_run_runs_every_check_and_writes_one_report(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry-run",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert report["dry_run"] is True
    assert {k: v["status"] for k, v in checks.items()} == {
        "environment": "ok", "precision": "ok", "step": "ok", "syncs": "ok", "ddp": "ok",
        "finetune": "ok", "gpu_tests": "skipped"}
    assert checks["environment"]["torch"] == torch.__version__
    rows = checks["step"]["rows"]
    assert [r["per_device_batch"] for r in rows] == [2, 4]
    for r in rows:
        assert r["real_tokens_per_s"] > 0 and 0 < r["mfu_measured_peak"] < 1
        assert r["peak_memory_mb"] > 0 and all(map(float.__instancecheck__, r["losses"]))
    prec = checks["precision"]
    assert prec["bf16"]["loss_rel_diff"]["loss"] < 2e-2 and prec["bf16"]["grad_cosine"] > 0.98
    assert "skipped" in prec["tf32"] and "skipped" in prec["fp16+scaler"]  # CUDA only
    assert checks["syncs"]["meta_micro_step"].startswith("ok")
    assert checks["ddp"]["replicas_identical"] is True and checks["ddp"]["world"] == 2
    assert checks["finetune"]["steps"] == 4
    assert "check        status" in proc.stdout  # the short table


@pytest.mark.slow  # a fresh interpreter importing torch and transformers (~10 s)
def test_a_gpu_run_without_cuda_is_refused_with_the_fix():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "--dry-run" in proc.stderr and "no CUDA" in proc.stderr


def test_datasheet_peaks_are_matched_by_name():
    assert datasheet_peak("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert datasheet_peak("NVIDIA H100 PCIe", "bf16") == 756e12
    assert datasheet_peak("Tesla T4", "fp16") == 65e12
    assert datasheet_peak("Tesla T4", "bf16") is None  # no native bf16 on a T4
    assert datasheet_peak("Some Future GPU", "bf16") is None
