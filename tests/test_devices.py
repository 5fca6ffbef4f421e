"""Devices: the precision follows the GPU's compute capability (checked with stand-ins), and
TF32 is set in one place, in a way that leaves torch's flag readers working."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from distil_utils import devices, finetune, recipe
from distil_utils.config import get_config


@pytest.mark.parametrize(("cap", "want"), [((7, 0), "fp16"), ((7, 5), "fp16"),
                                           ((8, 0), "bf16"), ((8, 6), "bf16"),
                                           ((9, 0), "bf16")])
def test_precision_follows_what_the_gpu_really_has(monkeypatch, cap, want):
    # a stand-in GPU: torch 2.13's is_bf16_supported() says yes on sm75 (emulated bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
    monkeypatch.setattr(torch.version, "hip", None)
    assert devices.gpu_precision() == want
    assert recipe.precision(get_config("paper"), "cuda") == want
    assert recipe.precision(get_config("paper"), torch.device("cuda", 0)) == want
    assert recipe.precision(get_config("paper", gpu_mixed_precision=False), "cuda") is None
    tf32 = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(finetune, "set_tf32", lambda on, dev: tf32.append((on, dev.type)))
    kw = finetune.device_kwargs(get_config("smoke"))
    assert (kw["bf16"], kw["fp16"]) == (want == "bf16", want == "fp16")
    assert "tf32" not in kw and tf32 == [(True, "cuda")]  # devices.set_tf32, not Trainer's


TF32 = textwrap.dedent("""
    import torch
    from transformers.utils.import_utils import enable_tf32
    from distil_utils import devices

    def read():  # what cuBLAS, cuDNN and inductor read; each raises after a mix of the APIs
        return (torch.backends.cuda.matmul.fp32_precision,
                torch.backends.cudnn.conv.fp32_precision, torch.get_float32_matmul_precision(),
                torch.backends.mkldnn.matmul.fp32_precision)

    torch.cuda.get_device_capability = lambda device=None: (7, 5)  # a T4: no TF32
    devices.set_tf32(True, torch.device("cuda", 0))
    assert read()[2] == "highest"
    torch.cuda.get_device_capability = lambda device=None: (8, 0)  # a stand-in A100
    devices.set_tf32(True, torch.device("cuda", 0))
    assert read() == ("tf32", "tf32", "high", "ieee"), read()  # CPU matmuls stay float32
    enable_tf32.__wrapped__(False)  # Trainer(tf32=False) later in the same kernel
    assert read()[2] == "high"
    print("ok")
""")


@pytest.mark.slow  # a fresh interpreter (~4 s)
def test_tf32_leaves_every_reader_of_the_flags_working():
    # a fresh interpreter: the flags are process-wide
    proc = subprocess.run([sys.executable, "-c", TF32], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
