"""The paper's recipe as settings, whatever the hardware, and the plan of a run.

The paper trains with ~4,000 sequences per optimizer step for 3 epochs. How many processes
run, and how many sequences fit one device, differ from machine to machine; the recipe does
not. So a profile states `global_batch` and `epochs`, and the rest is derived here:

* grad_accum = round(global_batch / (batch_size × processes)), at least 1;
* max_steps = ceil(epochs × micro-batches per epoch / (grad_accum × processes)), once the
  corpus is tokenised (`prepare_corpus` calls `resolve`);
* the precision: float32 on CPUs unless `distill_autocast` says otherwise; on CUDA bf16
  autocast where the GPU has it, else fp16 with loss scaling (`gpu_mixed_precision`).

`plan` prints all of it before a long run (`python -m distil_utils.distill --plan`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from .config import Config
from .data import batches_per_epoch, corpus_cache_dir, corpus_info
from .devices import gpu_precision


def grad_accum(cfg: Config, world: int) -> int:
    """Micro-batches per optimizer step on each process."""
    if cfg.global_batch is None:
        return cfg.grad_accum
    return max(1, round(cfg.global_batch / (cfg.batch_size * world)))


def total_steps(cfg: Config, n_sequences: int, world: int) -> int:
    """Optimizer steps of `epochs` passes over `n_sequences` (as `data.batch_stream` cuts
    them: whole length-grouped micro-batches, a multiple of `world` per epoch)."""
    per_epoch = batches_per_epoch(n_sequences, cfg.batch_size)
    usable = per_epoch - per_epoch % world
    return max(1, math.ceil(cfg.epochs * usable / (grad_accum(cfg, world) * world)))


def resolve(cfg: Config, n_sequences: int, world: int) -> Config:
    """Fill in the derived settings on `cfg` itself (grad_accum; max_steps from epochs).

    In place, because every later step of the run (fingerprint, schedule, the student's
    stamp) reads them from this config; idempotent for a given corpus and world size.
    """
    cfg.grad_accum = grad_accum(cfg, world)
    if cfg.epochs is not None and cfg.max_steps is None:
        cfg.max_steps = total_steps(cfg, n_sequences, world)
    cfg.extra = {**cfg.extra, "derived": {"world_size": world, "grad_accum": cfg.grad_accum,
                                          "max_steps": cfg.max_steps,
                                          "train_sequences": n_sequences}}
    return cfg


def precision(cfg: Config, device: torch.device | str) -> str | None:
    """"bf16", "fp16" or None (float32) for a run on `device`: on a GPU, bf16 only where it
    is native (`devices.gpu_precision`: a T4 or V100 gets fp16 with loss scaling)."""
    kind = device if isinstance(device, str) else device.type
    if cfg.distill_autocast is not None:
        return cfg.distill_autocast
    if kind == "cuda" and cfg.gpu_mixed_precision:
        dev = device if not isinstance(device, str) and device.index is not None else None
        return gpu_precision(dev)
    return None


def _planned_device(cfg: Config) -> str:
    if cfg.device != "auto":
        return cfg.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def plan(cfg: Config, world_size: int | None = None) -> dict[str, Any]:
    """What a run of `cfg` would do on `world_size` processes, without running anything.

    `world_size` defaults to $WORLD_SIZE (under torchrun), else the visible GPUs, else 1.
    `total_steps` is None until the corpus has been tokenised (its size is not known yet).
    """
    device = _planned_device(cfg)
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "0")) or (
            torch.cuda.device_count() if device.startswith("cuda") else 0) or 1
    accum = grad_accum(cfg, world_size)
    info = corpus_info(cfg)
    n_seq = info["train_sequences"] if info else None
    if cfg.epochs is None or cfg.max_steps is not None:
        steps = cfg.max_steps
    else:
        steps = total_steps(cfg, n_seq, world_size) if n_seq is not None else None
    prec = precision(cfg, device.split(":")[0])
    return {"profile": cfg.profile, "world_size": world_size,
            "per_device_batch": cfg.batch_size, "grad_accum": accum,
            "global_batch": cfg.batch_size * accum * world_size, "epochs": cfg.epochs,
            "total_steps": steps, "precision": prec or "fp32",
            "tf32": bool(cfg.tf32 and device.startswith("cuda") and prec is None),
            "device": device, "max_seq_len": cfg.max_seq_len, "lr": cfg.lr,
            "warmup_steps": None if steps is None else int(cfg.warmup_frac * steps),
            "student_layers": list(cfg.student_layers) if cfg.student_layers else
            "half the teacher's, first and last kept: (0, 2, 4, 7, 9, 11) of 12",
            "train_sequences": n_seq, "corpus_cache": str(corpus_cache_dir(cfg))}
