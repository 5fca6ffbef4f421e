"""Processes, devices and precision, through `accelerate`.

One process per device, launched by `torchrun` or `accelerate launch` (one node or many:
their rendezvous sets RANK/WORLD_SIZE/LOCAL_RANK). `accelerate.PartialState` initialises the
process group (NCCL on GPUs, gloo on CPUs) with our timeout, and pins each process to GPU
LOCAL_RANK; an `Accelerator` per training loop wraps the model in DDP with that device,
autocasts (bf16, or fp16 with its GradScaler) and unscales before clipping. The data order,
the per-step seeds and the checkpoints stay ours (`training.train_loop`): accelerate's data
loader and scheduler wrappers are not used, because resuming must be exact.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any

import torch

# A collective waits at most this for the slowest rank: minutes, so a dead rank is noticed
# soon (the corpus is tokenised beforehand, by `distill --prepare-corpus`).
DEFAULT_TIMEOUT_S = 15 * 60


def process_state(timeout_s: int | None = None) -> Any:
    """accelerate's process state; the first call initialises the process group under a
    launcher, with `timeout_s` for every collective (`config.dist_timeout_s`)."""
    from accelerate import PartialState

    if PartialState._shared_state:  # already initialised: the timeout was set then
        return PartialState()
    timeout = datetime.timedelta(seconds=timeout_s or DEFAULT_TIMEOUT_S)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    kwargs = {"timeout": timeout} if launched else {}
    return PartialState(cpu=not torch.cuda.is_available(), **kwargs)


def dist_info(timeout_s: int | None = None) -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or torch.distributed.is_initialized():
        state = process_state(timeout_s)
        return state.process_index, state.num_processes
    return 0, 1


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: this process's device (GPU LOCAL_RANK under a launcher, else cuda or cpu)."""
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return process_state().device  # accelerate has called cuda.set_device(LOCAL_RANK)
    return torch.device("cuda", torch.cuda.current_device())


def capability(device: torch.device | None = None) -> tuple[int, int]:
    """The CUDA compute capability of `device` (the current GPU by default), e.g. (7, 5)."""
    return tuple(torch.cuda.get_device_capability(device))


def native_bf16(device: torch.device | None = None) -> bool:
    """Whether the GPU computes in bf16 natively (compute capability 8.0 on: A100, L4, H100).

    torch's `is_bf16_supported()` also answers yes where bf16 is only emulated (sm70 V100,
    sm75 T4, Colab's free GPU), several times slower than fp16 there; the suite takes bf16
    only where it is native, as `is_bf16_supported(including_emulation=False)` does.
    """
    if torch.version.hip:  # ROCm: every supported AMD GPU has bf16
        return True
    return capability(device)[0] >= 8


def gpu_precision(device: torch.device | None = None) -> str:
    """The mixed precision of a GPU: "bf16" where native, else "fp16" (with loss scaling)."""
    return "bf16" if native_bf16(device) else "fp16"


def set_tf32(enabled: bool, device: torch.device) -> None:
    """TF32 for float32 CUDA matmuls and convolutions on a GPU that has it (8.0 on), for the
    whole process; the one place the suite sets it (fine-tuning too: `Trainer` gets no tf32).

    torch raises "a mix of the legacy and new APIs" when its legacy `allow_tf32` flags and the
    new ones disagree and are read (inductor reads them); this combination keeps every reader
    working and CPU (oneDNN) matmuls in full float32.
    """
    if device.type == "cuda" and enabled and capability(device)[0] >= 8:  # TF32: Ampere on
        torch.set_float32_matmul_precision("high")
        torch.backends.mkldnn.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32"


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The tensors of `batch` copied to `device` (other values kept); to a GPU from pinned
    memory without blocking, so the copy neither waits for nor stalls the queued work."""
    if device.type != "cuda":
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def check_single_process(what: str) -> None:
    """Refuse to run `what` under several processes (torchrun), before any work or write.

    Fine-tuning runs in one process on one device: every rank would save the model into the
    same folder and write the same run record and results file.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise RuntimeError(
            f"{what} runs in one process, but this is one of {world} (WORLD_SIZE={world}, "
            "set by torchrun or accelerate launch): run it without the launcher, e.g. "
            "`python ...` or in the notebook; with several GPUs, pick one with "
            "CUDA_VISIBLE_DEVICES=0. Only distillation runs one process per device.")


def make_accelerator(mixed_precision: str | None, device: torch.device, **trackers: Any) -> Any:
    """An `Accelerator` for one training loop at `mixed_precision` ("bf16", "fp16", None);
    `trackers` are accelerate's own arguments for them (`log_with`, `project_config`).

    accelerate keeps one precision per process (`AcceleratorState`); the suite runs several
    loops in one process (adaptation, distillation, ablations, tests at other precisions),
    so a loop asking for another precision clears that state first. The process group and
    device (`PartialState`) are kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    process_state()
    mp = mixed_precision or "no"
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get(
            "_mixed_precision") != mp:
        AcceleratorState._reset_state()
    if device.type == "cpu" and mp == "fp16":
        mp = "no"  # accelerate has no CPU fp16: the loss's own autocast runs it, unscaled
    return Accelerator(mixed_precision=mp, device_placement=False,
                       step_scheduler_with_optimizer=False, **trackers)


class LossModule(torch.nn.Module):
    """The trained model and its loss as one module, so DDP sees the whole step.

    DDP only all-reduces gradients of computations that went through its own forward; a
    loss that calls `model.module.bert(...)` or the fused head directly would leave every
    replica with its own gradients. Here the forward *is* the loss, so whatever parts of
    the model it uses (rows-only MLM heads, the fused head) are synchronised. The frozen
    teacher stays a closure of `fn`, outside the module: DDP neither broadcasts nor wraps it.
    """

    def __init__(self, model: torch.nn.Module,
                 fn: Callable[[torch.nn.Module, dict], dict]) -> None:
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(self, batch: dict[str, torch.Tensor]) -> dict:
        # `batch` is already on the device (`training.StepLoss.prepare`, `to_device`): DDP
        # with `device_ids` moves its inputs before this runs, and nothing here is on the host
        return self._fn(self.model, batch)
