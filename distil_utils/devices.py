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

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

DEFAULT_TIMEOUT_S = 6 * 3600


def process_state(timeout_s: int | None = None) -> Any:
    """accelerate's process state; the first call initialises the process group under a
    launcher, with `timeout_s` (NCCL's default, 10 minutes, is shorter than rank 0's
    tokenisation of the paper's corpus while the others wait)."""
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


def set_tf32(enabled: bool, device: torch.device) -> None:
    """TF32 matmuls and convolutions for what runs in float32 on a GPU that has them."""
    if device.type == "cuda" and enabled:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@contextlib.contextmanager
def main_process_first(timeout_s: int | None = None) -> Iterator[None]:
    """Rank 0 runs the block first (it fills the corpus cache), then the others."""
    rank, world = dist_info(timeout_s)
    if world == 1:
        yield
        return
    with process_state().main_process_first():
        yield


def make_accelerator(mixed_precision: str | None, device: torch.device) -> Any:
    """An `Accelerator` for one training loop at `mixed_precision` ("bf16", "fp16", None).

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
                       step_scheduler_with_optimizer=False)


class LossModule(torch.nn.Module):
    """The trained model and its loss as one module, so DDP sees the whole step.

    DDP only all-reduces gradients of computations that went through its own forward; a
    loss that calls `model.module.bert(...)` or the fused head directly would leave every
    replica with its own gradients. Here the forward *is* the loss, so whatever parts of
    the model it uses (rows-only MLM heads, the fused head) are synchronised. The frozen
    teacher stays a closure of `fn`, outside the module: DDP neither broadcasts nor wraps it.
    """

    def __init__(self, model: torch.nn.Module, fn: Callable[..., dict]) -> None:
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(self, batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict:
        return self._fn(self.model, batch, gen)
