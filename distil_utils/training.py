"""The training loop: its optimizer step, checkpoints, per-step seeds and precision.

One small loop (`train_loop`) serves both the teacher's masked-LM adaptation and the student's
triple-loss distillation. It is written out rather than built on `transformers.Trainer`
because the step needs a frozen second model, the reference's smoothed dynamic masking and
exact resumption (the data position and per-step random seeds are part of the checkpoint),
which Trainer does not offer for a two-model loss. `TrainStep` is its optimizer step, also
timed by `benchmarks.bench_distill`, so the benchmark measures the step that trains.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .artefacts import (
    distill_settings,
    made_from_digest,
    student_stamp,
    teacher_settings,
    teacher_stamp,
)
from .checkpoint import CheckpointError, discard_finished, load_checkpoint, save_checkpoint
from .config import Config, point_trackio_at_runs, runs_dir, trackers
from .data import batch_stream
from .devices import LossModule, dist_info, resolve_device, set_tf32, to_device
from .devices import make_accelerator as accelerator_at
from .recipe import precision

# Named phases of a step, seen by `torch.profiler` (a no-op without one): the benchmark's
# breakdown of where a distillation step's time goes (`benchmarks.bench_distill`).
PHASE = torch.profiler.record_function


class StepLoss:
    """A training step's loss in two halves, so that the device only ever sees device tensors.

    `prepare(batch, gen)` runs on the host, outside DDP: the masking with the step's seeded
    CPU generator and the row indices the loss reads (`masking.masked_batch`). The batch is
    then copied to the device and `forward(model, batch)` runs inside DDP's forward
    (`devices.LossModule`), where host tensors would mix devices: DDP moves its inputs to
    the GPU first. Calling the object does both halves on the model's device.
    """

    def __init__(self, prepare: Callable[[dict, torch.Generator], dict],
                 forward: Callable[[torch.nn.Module, dict], dict]) -> None:
        self.prepare, self.forward = prepare, forward

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 gen: torch.Generator) -> dict[str, torch.Tensor]:
        dev = next(model.parameters()).device
        return self.forward(model, to_device(self.prepare(batch, gen), dev))


LossFn = StepLoss


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one optimizer step on one process: resuming at any step is exact."""
    return (seed * 1_000_003 + step * 9_176 + rank) % (2**63 - 1)


# ----------------------------------------------------------------- speed and precision
def apply_speed_settings(cfg: Config, *models: torch.nn.Module) -> None:
    """`cfg.num_threads` and `cfg.attn_implementation` (None leaves torch's / the model's)."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.attn_implementation:
        for m in models:
            getattr(m, "module", m).set_attn_implementation(cfg.attn_implementation)


def autocast(cfg: Config, device: torch.device) -> Any:
    """The step's autocast: `recipe.precision` (bf16/fp16 on GPUs by default, else as set)."""
    amp = precision(cfg, device)
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def make_accelerator(cfg: Config, device: torch.device, run: str | None = None) -> Any:
    """The run's `Accelerator` at `recipe.precision` (fp16 gets its loss scaler on a GPU);
    with `run` and trackers in `cfg.report_to`, it logs to them under `runs_dir(cfg)`."""
    names = trackers(cfg)
    if run is None or not names:
        return accelerator_at(precision(cfg, device), device)
    from accelerate.utils import ProjectConfiguration

    point_trackio_at_runs(cfg)
    logs = str(runs_dir(cfg))
    return accelerator_at(precision(cfg, device), device, log_with=list(names),
                          project_config=ProjectConfiguration(project_dir=logs,
                                                              logging_dir=logs))


def tracker_config(cfg: Config, **extra: Any) -> dict[str, Any]:
    """The settings as trackers store them (TensorBoard's hparams: scalars and strings only)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v)
            for k, v in {**cfg.to_dict(), **extra}.items()}


def tracked_values(window: list[dict], seconds: float) -> dict[str, float]:
    """A log step's values for the trackers: each loss term's mean over the steps since the
    last log (as Trainer logs its loss), the step's learning rate and gradient norm, and the
    real (non-pad) tokens per second of those steps over all processes."""
    last = window[-1]
    terms = [k for k in last if k not in ("step", "grad_norm", "lr", "tokens", "seconds")]
    out = {f"train/{k}": sum(r[k] for r in window) / len(window) for k in terms}
    return {**out, "train/learning_rate": last["lr"], "train/grad_norm": last["grad_norm"],
            "train/tokens_per_s": sum(r["tokens"] for r in window) / max(seconds, 1e-9)}


def make_optimizer(groups: list[dict], cfg: Config, lr: float,
                   max_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (0.9, 0.98, eps 1e-6) and its linear warm-up (`cfg.warmup_frac`) then decay."""
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=cfg.weight_decay)
    return opt, get_linear_schedule_with_warmup(opt, int(cfg.warmup_frac * max_steps), max_steps)


# --------------------------------------------------------------------- one step
class TrainStep:
    """One optimizer step of `model` under `loss_fn`: the per-step seeds, `cfg.grad_accum`
    micro-batches, the logged losses of the global batch, the finite checks, clipping at
    `cfg.max_grad_norm`, the update and the scheduler step.

    The model and its loss go through `accelerate` (DDP, autocast) as one module
    (`devices.LossModule`); `sched` is stepped by hand, once per optimizer step (accelerate's
    would step once per process). Host synchronisations: none inside a micro-step, one per
    optimizer step, to read the losses and gradient norm for the finite checks before the update.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, acc: Any,
                 opt: torch.optim.Optimizer, sched: Any, cfg: Config, *, rank: int = 0,
                 world: int = 1, desc: str = "train") -> None:
        self.model, self.loss_fn, self.acc, self.sched, self.cfg = model, loss_fn, acc, sched, cfg
        self.rank, self.world, self.desc = rank, world, desc
        self.dev = next(model.parameters()).device
        self.wrapped = acc.prepare_model(LossModule(model, loss_fn.forward),
                                         device_placement=False)
        self.aopt = acc.prepare_optimizer(opt, device_placement=False)
        self.gen = torch.Generator()

    def micro_step(self, batch: dict[str, torch.Tensor], last: bool) -> dict[str, torch.Tensor]:
        """Forward and backward of one micro-batch (gradients summed into `.grad`; DDP
        all-reduces them on the `last` one): its loss terms, detached, on the device."""
        with PHASE("distil.masking"):
            prepared = to_device(self.loss_fn.prepare(batch, self.gen), self.dev)
        ctx = contextlib.nullcontext() if last else self.acc.no_sync(self.wrapped)
        with ctx:
            out = self.wrapped(prepared)
            # the loss is not divided by grad_accum here: see __call__
            with PHASE("distil.backward"):
                self.acc.backward(out["loss"])
        return {k: v.detach() for k, v in out.items()}

    def __call__(self, step: int, batches: Iterator[dict]) -> tuple[dict[str, float], int, float]:
        """Step number `step` (0-based) on the next `cfg.grad_accum` batches of `batches`:
        (mean losses over the global batch, its real tokens, the gradient norm)."""
        cfg, acc, dev = self.cfg, self.acc, self.dev
        torch.manual_seed(step_seed(cfg.seed, step, self.rank))
        self.gen.manual_seed(step_seed(cfg.seed + 1, step, self.rank))
        sums: dict[str, torch.Tensor] = {}
        tokens = 0
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            tokens += int(batch["attention_mask"].sum())  # a host tensor: no device sync
            out = self.micro_step(batch, last=micro == cfg.grad_accum - 1)
            for k, v in out.items():  # summed on the device
                sums[k] = sums.get(k, 0.0) + v.float()
        if cfg.grad_accum > 1:
            # The mean over micro-batches is taken of the accumulated float32 gradients (still
            # loss-scaled under fp16, so an overflow stays inf for the scaler to see), not of
            # each micro-batch's loss: dividing the loss by grad_accum before fp16's backward
            # would push its per-row gradients that much deeper into fp16's subnormal range.
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            torch._foreach_mul_(grads, 1.0 / cfg.grad_accum)
            sums = {k: v / cfg.grad_accum for k, v in sums.items()}
        keys = sorted(sums)
        vec = torch.stack([torch.as_tensor(sums[k], device=dev).float() for k in keys]
                          + [torch.tensor(float(tokens), device=dev)])
        if self.world > 1:  # the logged losses are the global batch's, the same on every
            torch.distributed.all_reduce(vec)  # rank, so a non-finite one stops all together
            vec[:-1] /= self.world
        losses = dict(zip(keys, vec[:-1].tolist(), strict=True))
        tokens = int(vec[-1])
        check_finite(losses, step + 1, self.desc)  # before the step: nothing non-finite saved
        with PHASE("distil.optimizer"):
            grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            if acc.scaler is None:  # the fp16 scaler skips inf steps by design; nothing else may
                check_finite({"grad_norm": float(grad_norm)}, step + 1, self.desc)
            self.aopt.step()
            self.sched.step()
            self.aopt.zero_grad(set_to_none=True)
        return losses, tokens, float(grad_norm)


class NonFiniteLossError(FloatingPointError):
    """A loss term or the gradient norm became NaN or infinite: the run cannot be right."""


def check_finite(values: dict[str, float], step: int, desc: str) -> None:
    """Stop at the first non-finite term, naming the step and the term, before any save."""
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise NonFiniteLossError(
            f"{desc}: {', '.join(f'{k}={values[k]}' for k in bad)} at step {step}; nothing "
            "was saved for this step. Check the teacher's weights and the settings lr, "
            "temperature, alpha_* and distill_autocast (fp16 without loss scaling overflows).")


# ------------------------------------------------------------------------- the loop
def train_loop(model: torch.nn.Module, loss_fn: LossFn, train_seqs: Any, *, cfg: Config,
               max_steps: int, lr: float, ckpt_path: str | Path, fingerprint: dict[str, Any],
               pad_id: int, param_groups: list[dict] | None = None, stop_at: int | None = None,
               on_log: Callable[[dict], None] | None = None, desc: str = "train",
               fp16_scaling: bool = False) -> list[dict]:
    """Train `model` for `max_steps` optimizer steps, resuming from `ckpt_path` if present.

    Every `cfg.checkpoint_every` steps the model, optimizer, scheduler, scaler, RNG state, data
    position and history are saved atomically. `stop_at` ends early after checkpointing (the
    schedule still spans `max_steps`). Precision is `recipe.precision` (`fp16_scaling` is
    unused: fp16 always gets a loss scaler on a GPU). With `cfg.report_to` trackers, every
    `cfg.log_every` steps go to `runs_dir(cfg) / ckpt_path.stem` (`tracked_values`).
    Returns one record per optimizer step.
    """
    if max_steps is None:
        raise ValueError("max_steps is None: it is derived from epochs and the corpus size by "
                         "prepare_corpus (recipe.resolve); call that first")
    rank, world = dist_info(cfg.dist_timeout_s)
    dev = resolve_device(cfg.device)
    model.to(dev)
    set_tf32(cfg.tf32, dev)
    ckpt_path = Path(ckpt_path)
    acc = make_accelerator(cfg, dev, run=ckpt_path.stem)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt, sched = make_optimizer(groups, cfg, lr, max_steps)
    step, position, history = 0, 0, []
    fingerprint = {**fingerprint, "max_steps": max_steps, "world": world}
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, fingerprint)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if state.get("scaler") and acc.scaler is not None:
                acc.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"checkpoint {ckpt_path} does not fit this model ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]}). Delete it to start this run afresh, or "
                "resume with the settings that wrote it.") from err
        torch.set_rng_state(state["torch_rng"])
        step, position, history = state["step"], state["position"], state["history"]
    end = max_steps if stop_at is None else min(stop_at, max_steps)
    if step >= end:
        return history
    model.train()
    train_step = TrainStep(model, loss_fn, acc, opt, sched, cfg, rank=rank, world=world,
                           desc=desc)
    stream = (b for _, b in batch_stream(train_seqs, cfg.batch_size, cfg.seed, pad_id,
                                         start=position, rank=rank, world=world))
    tracked = bool(trackers(cfg))
    if tracked:  # the main process only (accelerate)
        acc.init_trackers(ckpt_path.stem, config=tracker_config(
            cfg, run_max_steps=max_steps, run_lr=lr, world=world, desc=desc))
    bar = tqdm(total=end, initial=step, desc=desc, disable=rank != 0)
    t0 = time.perf_counter()
    window, window_t0 = [], 0.0  # the steps since the last log, and when they began
    try:
        while step < end:
            sums, tokens, grad_norm = train_step(step, stream)
            position += cfg.grad_accum * world
            step += 1
            record = {"step": step, **sums, "grad_norm": grad_norm,
                      "lr": sched.get_last_lr()[0], "tokens": tokens,
                      "seconds": time.perf_counter() - t0}
            history.append(record)
            window.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss']:.3f}")
            if step % cfg.log_every == 0 or step == end:
                if on_log:
                    on_log(record)
                if tracked:
                    acc.log(tracked_values(window, record["seconds"] - window_t0), step=step)
                window, window_t0 = [], record["seconds"]
            if rank == 0 and (step % cfg.checkpoint_every == 0 or step == end):
                save_checkpoint(ckpt_path, {
                    "fingerprint": fingerprint, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": acc.scaler.state_dict() if acc.scaler is not None else {},
                    "torch_rng": torch.get_rng_state(),
                    "step": step, "position": position, "history": history,
                })
    finally:
        # not acc.end_training(): it also destroys the process group, which the caller's
        # barriers and a following loop still use
        for tracker in acc.trackers:
            tracker.finish()
    bar.close()
    model.eval()
    return history


# ------------------------------------------------------------- a run's identity
def run_fingerprint(cfg: Config, kind: str, **extra: Any) -> dict[str, Any]:
    """Every setting that changes the run (`artefacts`), so resuming under another is refused,
    and the digest of the code, libraries and data its model's stamp records (`made_from`): a
    resume under other code would mix two methods in one model."""
    # the stamps name the recipe's inputs; a resumed run must also match what was derived
    # from them (the accumulation for this number of processes)
    if kind == "adapt":
        return {"kind": kind, **teacher_settings(cfg), "grad_accum": cfg.grad_accum,
                "made_from": made_from_digest(teacher_stamp(cfg)), **extra}
    init = extra.pop("init", "skip")
    return {"kind": kind, **distill_settings(cfg, init), "grad_accum": cfg.grad_accum,
            "made_from": made_from_digest(student_stamp(cfg, init)), **extra}


def checkpoint_for(path: Path, fingerprint: dict[str, Any]) -> Path:
    """`path`, after discarding a *finished* checkpoint of other settings found there.

    A finished run's checkpoint is only a shortcut (its model was saved): when the settings
    change it is removed so the new run can start. An unfinished one is left to `train_loop`,
    which refuses it and names the settings that differ: that work may still be wanted.
    """
    if dist_info()[0] == 0 and discard_finished(path, fingerprint):
        print(f"[checkpoint] {path.name}: a finished run with other settings; starting anew",
              flush=True)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    return path
