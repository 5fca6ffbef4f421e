"""setup_env picks the CUDA build of torch where nvidia-smi lists a GPU, the CPU one otherwise.

`nvidia-smi` is a real executable on PATH here (a shell script printing what the NVIDIA tool
prints for one GPU, or failing as it does without a driver); nothing is installed.
"""

from __future__ import annotations

import os
import stat
import sys

import pytest

from distil_utils.tools import setup_env


def _fake_smi(tmp_path, body: str):
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CUDA wheels: Linux only")
def test_gpu_found_means_the_cuda_build(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _fake_smi(tmp_path, 'echo "NVIDIA H100 80GB HBM3, 550.54.15"')
                       + os.pathsep + os.environ["PATH"])
    assert setup_env.detect_gpus() == ["NVIDIA H100 80GB HBM3, 550.54.15"]
    build, why = setup_env.choose_torch("auto")
    assert build == "cuda" and "H100" in why
    assert setup_env.choose_torch("cpu")[0] == "cpu"  # forced


def test_no_gpu_or_no_driver_means_the_cpu_build(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _fake_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9"))
    assert setup_env.detect_gpus() == []
    assert setup_env.choose_torch("auto")[0] == "cpu"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert setup_env.detect_gpus() == [] and setup_env.choose_torch("auto")[0] == "cpu"
    assert setup_env.choose_torch("cuda")[0] == "cuda"
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        setup_env.choose_torch("rocm")
