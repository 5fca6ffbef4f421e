"""Distillation pre-training: the training loop, its checkpoints, and the command line.

One small loop (`train_loop`) serves both the teacher's masked-LM adaptation and the student's
triple-loss distillation. It is written out rather than built on `transformers.Trainer`
because the step needs a frozen second model, the reference's smoothed dynamic masking and
exact resumption (the data position and per-step random seeds are part of the checkpoint),
which Trainer does not offer for a two-model loss.

Multi-device runs use DDP through `accelerate` under `torchrun` (`devices.py`):

    torchrun --nproc_per_node 2 -m distil_utils.distill --profile cpu
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config, get_config
from .data import batch_stream
from .losses import cosine_loss, triple_loss
from .masking import mask_tokens, masking_weights
from .results_io import ResultsLockedError, lock_results, write_result

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor], torch.Generator], dict]


# ----------------------------------------------------------------------------- devices
def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: this process's device (its own GPU under torchrun, else cuda or cpu)."""
    from .devices import resolve_device as resolve

    return resolve(name)


def dist_info(timeout_s: int | None = None) -> tuple[int, int]:
    """(rank, world size); initialises the process group (via accelerate) under torchrun."""
    from .devices import dist_info as info

    return info(timeout_s)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one optimizer step on one process: resuming at any step is exact."""
    return (seed * 1_000_003 + step * 9_176 + rank) % (2**63 - 1)


# ------------------------------------------------------------------------- the loop
def train_loop(model: torch.nn.Module, loss_fn: LossFn, train_seqs: Any, *, cfg: Config,
               max_steps: int, lr: float, ckpt_path: str | Path, fingerprint: dict[str, Any],
               pad_id: int, param_groups: list[dict] | None = None, stop_at: int | None = None,
               on_log: Callable[[dict], None] | None = None, desc: str = "train",
               fp16_scaling: bool = False) -> list[dict]:
    """Train `model` for `max_steps` optimizer steps, resuming from `ckpt_path` if present.

    AdamW (0.9, 0.98, eps 1e-6), linear warm-up over `cfg.warmup_frac` then linear decay,
    `cfg.grad_accum` micro-batches per step on each process, grad-norm clipping at
    `cfg.max_grad_norm`. Every `cfg.checkpoint_every` steps the model, optimizer,
    scheduler, loss scaler, RNG state, data position and loss history are saved atomically.
    `stop_at` ends the run early after checkpointing (a scheduled interruption; the schedule
    still spans `max_steps`). The model goes to `cfg.device` (under torchrun: this process's
    GPU) and, with several processes, into DDP through `accelerate` together with its loss
    (`devices.LossModule`); precision is `recipe.precision` (`fp16_scaling` is kept for
    callers: fp16 always gets accelerate's loss scaler on a GPU). Returns the loss history,
    one record per optimizer step.
    """
    from transformers import get_linear_schedule_with_warmup

    from .devices import LossModule, make_accelerator, set_tf32
    from .recipe import precision

    if max_steps is None:
        raise ValueError("max_steps is None: it is derived from epochs and the corpus size by "
                         "prepare_corpus (recipe.resolve); call that first")
    rank, world = dist_info(cfg.dist_timeout_s)
    dev = resolve_device(cfg.device)
    model.to(dev)
    set_tf32(cfg.tf32, dev)
    acc = make_accelerator(precision(cfg, dev), dev)
    ckpt_path = Path(ckpt_path)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_frac * max_steps), max_steps)
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
    # DDP (device_ids = this GPU) and autocast through accelerate; our scheduler is stepped
    # by hand, once per optimizer step (accelerate's would step once per process).
    wrapped = acc.prepare_model(LossModule(model, loss_fn), device_placement=False)
    aopt = acc.prepare_optimizer(opt, device_placement=False)
    stream = batch_stream(train_seqs, cfg.batch_size, cfg.seed, pad_id, start=position,
                          rank=rank, world=world)
    gen = torch.Generator()
    bar = tqdm(total=end, initial=step, desc=desc, disable=rank != 0)
    t0 = time.perf_counter()
    while step < end:
        torch.manual_seed(step_seed(cfg.seed, step, rank))
        gen.manual_seed(step_seed(cfg.seed + 1, step, rank))
        sums: dict[str, torch.Tensor] = {}
        tokens = 0
        for micro in range(cfg.grad_accum):
            _, batch = next(stream)
            tokens += int(batch["attention_mask"].sum())
            last = micro == cfg.grad_accum - 1
            ctx = contextlib.nullcontext() if last else acc.no_sync(wrapped)
            with ctx:
                out = wrapped(batch, gen)
                acc.backward(out["loss"] / cfg.grad_accum)
            for k, v in out.items():  # summed on the device: one host sync per step
                sums[k] = sums.get(k, 0.0) + v.detach().float() / cfg.grad_accum
        position += cfg.grad_accum * world
        keys = sorted(sums)
        vec = torch.stack([torch.as_tensor(sums[k], device=dev).float() for k in keys]
                          + [torch.tensor(float(tokens), device=dev)])
        if world > 1:  # the logged losses are the global batch's, the same on every rank,
            torch.distributed.all_reduce(vec)  # so a non-finite one stops all ranks together
            vec[:-1] /= world
        sums = dict(zip(keys, vec[:-1].tolist(), strict=True))
        tokens = int(vec[-1])
        check_finite(sums, step + 1, desc)  # before the step: nothing non-finite is saved
        grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        if acc.scaler is None:  # the fp16 scaler skips inf steps by design; nothing else may
            check_finite({"grad_norm": float(grad_norm)}, step + 1, desc)
        aopt.step()
        sched.step()
        aopt.zero_grad(set_to_none=True)
        step += 1
        record = {"step": step, **sums, "grad_norm": float(grad_norm),
                  "lr": sched.get_last_lr()[0], "tokens": tokens,
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss']:.3f}")
        if on_log and (step % cfg.log_every == 0 or step == end):
            on_log(record)
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == end):
            save_checkpoint(ckpt_path, {
                "fingerprint": fingerprint, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": acc.scaler.state_dict() if acc.scaler is not None else {},
                "torch_rng": torch.get_rng_state(),
                "step": step, "position": position, "history": history,
            })
    bar.close()
    model.eval()
    return history


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


# ------------------------------------------------------------------------ the losses
def apply_speed_settings(cfg: Config, *models: torch.nn.Module) -> None:
    """`cfg.num_threads` and `cfg.attn_implementation` (None leaves torch's / the model's)."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.attn_implementation:
        for m in models:
            getattr(m, "module", m).set_attn_implementation(cfg.attn_implementation)


def _autocast(cfg: Config, device: torch.device) -> Any:
    """The step's autocast: `recipe.precision` (bf16/fp16 on GPUs by default, else as set)."""
    from .recipe import precision

    amp = precision(cfg, device)
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


class _FusedHeadLoss(torch.autograd.Function):
    """alpha_ce·L_ce + alpha_mlm·L_mlm straight from the two MLM heads' inputs.

    Same numbers as `losses.distillation_ce` and `losses.mlm_ce` on the full logits, but the
    (rows × vocab) logits only ever exist `chunk` rows at a time: each chunk's student and
    teacher logits, both terms and their gradient are computed together, and the gradient
    is pushed through the student's decoder at once (backward only scales it). Returns
    (weighted sum, L_ce, L_mlm); the two terms are for logging (not differentiable).

    Under autocast the logits' matmuls run in `mm_dtype`, softmaxes and the gradient in
    float32; the gradient's own matmuls stay in float32 under fp16 (cast to fp16, most of
    its entries, O(1/rows), would flush to zero before any loss scaler sees them) and the
    weight gradient is accumulated in float32 whatever the precision.
    """

    @staticmethod
    def forward(ctx: Any, zs: torch.Tensor, ws: torch.Tensor, bs: torch.Tensor,
                zt: torch.Tensor, wt: torch.Tensor, bt: torch.Tensor, ce_rows: torch.Tensor,
                labels: torch.Tensor, temperature: float, alpha_ce: float, alpha_mlm: float,
                chunk: int, mm_dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        n_ce, n_mlm = int(ce_rows.sum()), int((labels != -100).sum())
        c_ce = alpha_ce * temperature / max(n_ce, 1)  # d(alpha T² mean KL)/ds = c (p_s - p_t)
        c_mlm = alpha_mlm / max(n_mlm, 1)
        need = ctx.needs_input_grad
        gzs = torch.zeros_like(zs) if need[0] else None
        gws = torch.zeros_like(ws, dtype=torch.float32) if need[1] else None
        gbs = torch.zeros(ws.size(0), dtype=torch.float32, device=ws.device) if need[2] else None
        ce_sum = torch.zeros((), dtype=torch.float32, device=zs.device)
        mlm_sum = torch.zeros((), dtype=torch.float32, device=zs.device)
        ws_mm, wt_mm = ws.to(mm_dtype), wt.to(mm_dtype)
        bs_mm, bt_mm = bs.to(mm_dtype), bt.to(mm_dtype)
        g_dtype = torch.float32 if mm_dtype == torch.float16 else mm_dtype
        ws_g = ws_mm if g_dtype == mm_dtype else ws.to(g_dtype)
        for start in range(0, zs.size(0), chunk):
            rows = slice(start, start + chunk)
            zs_c = zs[rows].to(mm_dtype)
            s = torch.addmm(bs_mm, zs_c, ws_mm.t()).float()
            ce_c = ce_rows[rows]
            grad = None
            if bool(ce_c.any()):
                t = torch.addmm(bt_mm, zt[rows].to(mm_dtype), wt_mm.t()).float()
                log_s = torch.log_softmax(s / temperature, -1)
                log_t = torch.log_softmax(t / temperature, -1)
                del t
                kl = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(-1)
                ce_sum += kl[ce_c].sum()
                grad = log_s.exp_().sub_(log_t.exp_()).mul_(ce_c.unsqueeze(1) * c_ce)
                del log_s, log_t
            lab = labels[rows]
            sel = lab != -100
            if bool(sel.any()):
                log_p = torch.log_softmax(s[sel], -1)
                gold = lab[sel].unsqueeze(1)
                mlm_sum -= log_p.gather(1, gold).sum()
                g_mlm = log_p.exp_().scatter_add_(1, gold, torch.full_like(gold, -1,
                                                                           dtype=log_p.dtype))
                grad = torch.zeros_like(s) if grad is None else grad
                grad[sel] += g_mlm * c_mlm
            del s
            if grad is None:
                continue
            if gzs is not None:
                gzs[rows] = (grad.to(g_dtype) @ ws_g).to(gzs.dtype)
            if gws is not None:
                gws += (grad.t().to(g_dtype) @ zs[rows].to(g_dtype)).float()
            if gbs is not None:
                gbs += grad.sum(0)
        ce = ce_sum * temperature**2 / max(n_ce, 1)
        mlm = mlm_sum / max(n_mlm, 1)
        ctx.grads = (gzs, gws, gbs)
        ctx.dtypes = (zs.dtype, ws.dtype, bs.dtype)
        ctx.mark_non_differentiable(ce, mlm)
        return alpha_ce * ce + alpha_mlm * mlm, ce, mlm

    @staticmethod
    def backward(ctx: Any, g_loss: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        grads, ctx.grads = ctx.grads, None
        out = [None if g is None else (g * g_loss).to(dt)
               for g, dt in zip(grads, ctx.dtypes, strict=True)]
        return (*out, None, None, None, None, None, None, None, None, None, None)


def _fused_parts_ok(teacher: torch.nn.Module, student: torch.nn.Module) -> bool:
    """The fused head needs the suite's own classes, and runs on CPUs only: it is a CPU
    design (per-chunk host synchronisations); on a GPU the plain head under autocast is fast
    and its (tokens x vocab) logits fit. Under DDP the student arrives unwrapped inside
    `devices.LossModule`, whose forward DDP synchronises."""
    from transformers import BertForMaskedLM, DistilBertForMaskedLM

    on_cpu = next(student.parameters()).device.type == "cpu"
    return (on_cpu and isinstance(teacher, BertForMaskedLM)
            and isinstance(student, DistilBertForMaskedLM))


def fused_triple_loss(teacher: Any, student: Any, masked: torch.Tensor, am: torch.Tensor,
                      labels: torch.Tensor, cfg: Config) -> dict[str, torch.Tensor]:
    """`triple_loss` of a BERT teacher and a DistilBERT student without full-vocab logits.

    The encoders run as in the models' own forward; the MLM heads are applied to the rows
    the loss uses only (the real tokens, or the masked ones with `ce_on_masked_only`), and
    their vocabulary logits go straight into `_FusedHeadLoss`.
    """
    with torch.inference_mode():
        t_hidden = teacher.bert(input_ids=masked, attention_mask=am).last_hidden_state
    t_hidden = t_hidden.clone()
    s_hidden = student.distilbert(input_ids=masked, attention_mask=am).last_hidden_state
    dec = teacher.cls.predictions.decoder
    if dec.weight.size(0) != student.vocab_projector.weight.size(0):
        raise ValueError(f"student vocabulary {student.vocab_projector.weight.size(0)} and "
                         f"teacher vocabulary {dec.weight.size(0)} differ: do the two models "
                         "share a vocabulary?")
    is_masked = labels != -100
    select = is_masked if cfg.ce_on_masked_only else am.bool()
    rows = (select | is_masked).reshape(-1).nonzero(as_tuple=True)[0]
    dim = s_hidden.size(-1)
    zs = student.vocab_transform(s_hidden.reshape(-1, dim).index_select(0, rows))
    zs = student.vocab_layer_norm(student.activation(zs))
    with torch.no_grad():
        zt = teacher.cls.predictions.transform(t_hidden.reshape(-1, dim).index_select(0, rows))
    bt = dec.bias if dec.bias is not None else dec.weight.new_zeros(dec.weight.size(0))
    mm_dtype = torch.get_autocast_dtype(zs.device.type) if torch.is_autocast_enabled(
        zs.device.type) else zs.dtype
    with torch.autocast(zs.device.type, enabled=False):
        head, ce, mlm = _FusedHeadLoss.apply(
            zs, student.vocab_projector.weight, student.vocab_projector.bias, zt, dec.weight,
            bt, select.reshape(-1)[rows], labels.reshape(-1)[rows], cfg.temperature,
            cfg.alpha_ce, cfg.alpha_mlm, cfg.distill_chunk_rows, mm_dtype)
    cos = cosine_loss(s_hidden, t_hidden, am)
    return {"loss": head + cfg.alpha_cos * cos, "ce": ce, "mlm": mlm, "cos": cos}


def make_distill_loss(teacher: torch.nn.Module, cfg: Config, weights: torch.Tensor,
                      mask_id: int, vocab_size: int) -> LossFn:
    """The paper's step: mask, run the frozen teacher, run the student, triple loss.

    The speed settings of `cfg` (`distill_fused_head`, `distill_autocast`,
    `distill_compile`) change how, not what, the step computes.
    """
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    compiled: set[int] = set()

    def loss_fn(student: torch.nn.Module, batch: dict, gen: torch.Generator) -> dict:
        dev = next(teacher.parameters()).device
        if cfg.distill_compile and dev.type == "cuda" and id(student) not in compiled:
            for m in (teacher, getattr(student, "module", student)):
                getattr(m, "bert", getattr(m, "distilbert", m)).compile()
            compiled.add(id(student))
        ids, am = batch["input_ids"], batch["attention_mask"]
        masked, labels = mask_tokens(ids, am, weights, mask_id, vocab_size, cfg.mlm_prob, gen,
                                     count_special=cfg.mlm_count_special)
        masked, labels, am = masked.to(dev), labels.to(dev), am.to(dev)
        with _autocast(cfg, dev):
            if cfg.distill_fused_head and _fused_parts_ok(teacher, student):
                return fused_triple_loss(teacher, student, masked, am, labels, cfg)
            with torch.inference_mode():
                t_out = teacher(input_ids=masked, attention_mask=am, output_hidden_states=True)
            # Inference tensors cannot be saved for backward: the (small) hidden states are
            # copied out; the logits are only read through an index_select that copies the
            # rows the loss uses.
            t_hidden = t_out.hidden_states[-1].clone()
            s_out = student(input_ids=masked, attention_mask=am, output_hidden_states=True)
            return triple_loss(s_out.logits, t_out.logits, s_out.hidden_states[-1], t_hidden,
                               labels, am, temperature=cfg.temperature, alpha_ce=cfg.alpha_ce,
                               alpha_mlm=cfg.alpha_mlm, alpha_cos=cfg.alpha_cos,
                               ce_on_masked_only=cfg.ce_on_masked_only)

    return loss_fn


def make_mlm_loss(cfg: Config, weights: torch.Tensor, mask_id: int, vocab_size: int) -> LossFn:
    """Masked-LM loss of a `BertForMaskedLM`, with vocabulary logits only where masked.

    `BertForMaskedLM.forward` projects every position onto the 30,522-word vocabulary; the
    loss only needs the ~15% masked ones, so the head is applied to those rows alone.
    """

    def loss_fn(model: torch.nn.Module, batch: dict, gen: torch.Generator) -> dict:
        # `model` is the bare model: train_loop calls this inside DDP's forward
        # (devices.LossModule), so the rows-only head below is still all-reduced
        dev = next(model.parameters()).device
        ids, am = batch["input_ids"], batch["attention_mask"]
        masked, labels = mask_tokens(ids, am, weights, mask_id, vocab_size, cfg.mlm_prob, gen,
                                     count_special=cfg.mlm_count_special)
        hidden = model.bert(input_ids=masked.to(dev), attention_mask=am.to(dev)).last_hidden_state
        sel = labels.to(dev) != -100
        logits = model.cls(hidden[sel])
        return {"loss": F.cross_entropy(logits.float(), labels.to(dev)[sel])}

    return loss_fn


# ------------------------------------------------------------------------ evaluation
@torch.inference_mode()
def evaluate_mlm(model: torch.nn.Module, seqs: Any, tokenizer: Any, *, batch_size: int = 16,
                 n_batches: int | None = None, seed: int = 0, mlm_prob: float = 0.15) -> dict:
    """Held-out masked-token loss and top-1 accuracy with a fixed, uniform masking.

    The same seed masks the same positions for every model, so teacher, student and
    ablations are compared on identical inputs.
    """
    model.eval()
    dev = next(model.parameters()).device
    weights = masking_weights(None, tokenizer.all_special_ids, len(tokenizer))
    gen = torch.Generator().manual_seed(seed)
    loss_sum, correct, total = 0.0, 0, 0
    for i, (_, batch) in enumerate(batch_stream(seqs, batch_size, seed, tokenizer.pad_token_id)):
        if (n_batches is not None and i >= n_batches) or i * batch_size >= len(seqs):
            break
        masked, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], weights,
                                     tokenizer.mask_token_id, len(tokenizer), mlm_prob, gen)
        logits = model(input_ids=masked.to(dev),
                       attention_mask=batch["attention_mask"].to(dev)).logits
        sel = labels.to(dev) != -100
        picked, gold = logits[sel].float(), labels.to(dev)[sel]
        loss_sum += float(F.cross_entropy(picked, gold, reduction="sum"))
        correct += int((picked.argmax(-1) == gold).sum())
        total += int(sel.sum())
    return {"mlm_loss": loss_sum / max(total, 1), "mlm_acc": 100.0 * correct / max(total, 1),
            "n_masked": total}


# ------------------------------------------------------------------- the pipeline
def corpus_weights(seqs: Any, tokenizer: Any, smoothing: float | None) -> torch.Tensor:
    """The reference's masking weights from the corpus token counts (uniform if None);
    the counts are one bincount over the Arrow values, cached beside the corpus cache."""
    from .data import token_counts_of

    counts = None
    if smoothing is not None:
        counts = token_counts_of(seqs, len(tokenizer))
    return masking_weights(counts, tokenizer.all_special_ids, len(tokenizer), smoothing)


def prepare_corpus(cfg: Config, tokenizer: Any) -> tuple[Any, Any]:
    """Tokenised (train, held-out) sequences for the profile's corpus, and the recipe.

    Tokenised once per corpus settings and cached on disk (`data.prepare_sequences`):
    rank 0 builds a missing cache while the other ranks wait (`dist_timeout_s`), then every
    rank memory-maps it. The recipe's derived settings are filled in on `cfg`
    (`recipe.resolve`: grad_accum from the number of processes, max_steps from epochs).
    """
    from .data import prepare_sequences
    from .devices import main_process_first
    from .recipe import resolve

    _, world = dist_info(cfg.dist_timeout_s)
    with main_process_first(cfg.dist_timeout_s):
        train, held = prepare_sequences(cfg, tokenizer)
    resolve(cfg, len(train), world)
    return train, held


def prepare_tokenizer(cfg: Config) -> Any:
    """The profile's tokenizer, checked against the teacher's vocabulary later."""
    from .hub import load_tokenizer

    if cfg.tokenizer is None and cfg.teacher == "tiny":
        raise ValueError("teacher='tiny' needs an explicit tokenizer (e.g. 'minilm')")
    return load_tokenizer(cfg.tokenizer or cfg.teacher)


def check_vocab(model: torch.nn.Module, tokenizer: Any, what: str = "teacher") -> None:
    """A tokenizer whose ids mean other tokens to the model gives silently wrong numbers.

    The sizes must agree, and so must the tokens: against the vocabulary digest a suite
    model records in its config (`save_model`), else against the tokenizer saved beside the
    model's weights. A model with neither (built in memory) is checked by size alone.
    """
    from .artefacts import vocab_digest

    n = model.config.vocab_size
    if len(tokenizer) != n:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the {what} embeds "
                         f"{n}: use the {what}'s own tokenizer (tokenizer=None) or a matching one")
    expected = getattr(model.config, "distil_vocab_sha256", None)
    if expected is None:
        own = _saved_tokenizer(getattr(model.config, "_name_or_path", "") or "")
        if own is not None:  # kept, so later checks of this model do not load it again
            expected = model.config.distil_vocab_sha256 = vocab_digest(own)
    if expected is not None and expected != vocab_digest(tokenizer):
        raise ValueError(f"the tokenizer has the {what}'s vocabulary size ({n}) but other tokens "
                         f"in it (or in another order) than the {what} was trained with: use the "
                         f"{what}'s own tokenizer (tokenizer=None) or the same vocabulary file")


def _saved_tokenizer(path: str) -> Any:
    """The tokenizer saved in a model folder, or None when the folder has none."""
    folder = Path(path)
    if not folder.is_dir() or not any((folder / f).is_file()
                                      for f in ("tokenizer.json", "vocab.txt")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        return None


def prepare_teacher(cfg: Config, tokenizer: Any, train_seqs: Any = None,
                    held_seqs: Any = None) -> tuple[torch.nn.Module, str, dict]:
    """The profile's masked-LM teacher, its path, and its adaptation report.

    A teacher without an MLM head (a sentence encoder such as MiniLM) or the smoke profile's
    tiny random teacher is given a head and trained on the corpus with masked-LM for
    `cfg.adapt_steps` steps — saved under `results/<profile>/teacher` with its stamp (the
    settings it was made from, and the adaptation report) and resumable. The saved teacher is
    reused only while its stamp matches the profile's settings; otherwise it is made again.
    A tiny teacher is saved even unadapted, so later notebooks load it by path.
    """
    from .artefacts import read_stamp, stale_reason, teacher_stamp
    from .student import load_teacher, save_model, tiny_teacher

    cached = cfg.out / "teacher"
    stamp = teacher_stamp(cfg)
    report_path = cfg.out / "teacher_adaptation.json"
    saved = cfg.adapt_steps > 0 or cfg.teacher == "tiny"
    rank = dist_info()[0]
    if saved:
        reason = stale_reason(cached, stamp)
        if reason is None:
            teacher = load_teacher(cached)
            check_vocab(teacher, tokenizer)
            report = read_stamp(cached).get("report") or {}
            if rank == 0 and report and not report_path.exists():
                # the report travels inside the teacher's folder: a kill between the two
                # writes loses nothing
                write_result(report_path, report, cfg, teacher=cfg.teacher, model=str(cached))
            return teacher, str(cached), report
        if (cached / "config.json").exists() and rank == 0:
            print(f"[teacher] {reason}: making it again", flush=True)
    if cfg.teacher == "tiny":
        teacher = tiny_teacher(len(tokenizer), cfg.tiny_layers, cfg.tiny_hidden, cfg.tiny_heads,
                               cfg.tiny_intermediate, seed=cfg.seed)
    else:
        teacher = load_teacher(cfg.teacher, allow_new_head=cfg.adapt_steps > 0)
    check_vocab(teacher, tokenizer)
    if not saved:
        return teacher.eval(), cfg.teacher, {}
    report = {}
    if cfg.adapt_steps > 0:
        if train_seqs is None:
            train_seqs, held_seqs = prepare_corpus(cfg, tokenizer)
        report = adapt_teacher(teacher, cfg, tokenizer, train_seqs, held_seqs)
    if rank == 0:
        save_model(teacher, tokenizer, cached, stamp, report=report)
        if report:
            write_result(report_path, report, cfg, teacher=cfg.teacher, model=str(cached))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # every rank returns the path once the folder exists
    return teacher.eval(), str(cached), report


def adapt_teacher(teacher: torch.nn.Module, cfg: Config, tokenizer: Any, train_seqs: Any,
                  held_seqs: Any) -> dict:
    """Train a teacher's MLM head (lr adapt_head_lr) and encoder (adapt_lr) with masked-LM."""
    before = evaluate_mlm(teacher, held_seqs, tokenizer, n_batches=cfg.eval_batches,
                          seed=cfg.seed)
    head = [p for n, p in teacher.named_parameters() if n.startswith("cls.")]
    head_ids = {id(p) for p in head}
    body = [p for p in teacher.parameters() if id(p) not in head_ids]
    weights = corpus_weights(train_seqs, tokenizer, cfg.adapt_mlm_smoothing)
    loss_fn = make_mlm_loss(cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    fp = _fingerprint(cfg, "adapt")
    history = train_loop(
        teacher, loss_fn, train_seqs, cfg=cfg, max_steps=cfg.adapt_steps, lr=cfg.adapt_lr,
        ckpt_path=_checkpoint(cfg.out / "checkpoints" / "teacher_adapt.pt", fp),
        fingerprint=fp,
        pad_id=tokenizer.pad_token_id,
        param_groups=[{"params": body, "lr": cfg.adapt_lr},
                      {"params": head, "lr": cfg.adapt_head_lr}], desc="adapt teacher")
    after = evaluate_mlm(teacher, held_seqs, tokenizer, n_batches=cfg.eval_batches,
                         seed=cfg.seed)
    return {"before": before, "after": after, "steps": cfg.adapt_steps,
            "mlm_smoothing": cfg.adapt_mlm_smoothing,
            "final_loss": history[-1]["loss"] if history else None}


def _fingerprint(cfg: Config, kind: str, **extra: Any) -> dict[str, Any]:
    """Every setting that changes the run (`artefacts`), so resuming under another is refused."""
    from .artefacts import distill_settings, teacher_settings

    # the stamps name the recipe's inputs; a resumed run must also match what was derived
    # from them (the accumulation for this number of processes)
    if kind == "adapt":
        return {"kind": kind, **teacher_settings(cfg), "grad_accum": cfg.grad_accum, **extra}
    return {"kind": kind, **distill_settings(cfg, extra.pop("init", "skip")),
            "grad_accum": cfg.grad_accum, **extra}


def _checkpoint(path: Path, fingerprint: dict[str, Any]) -> Path:
    """`path`, after discarding a *finished* checkpoint of other settings found there.

    A finished run's checkpoint is only a shortcut (its model was saved): when the settings
    change it is removed so the new run can start. An unfinished one is left to `train_loop`,
    which refuses it and names the settings that differ: that work may still be wanted.
    """
    from .checkpoint import discard_finished

    if dist_info()[0] == 0 and discard_finished(path, fingerprint):
        print(f"[checkpoint] {path.name}: a finished run with other settings; starting anew",
              flush=True)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    return path


def run_distillation(cfg: Config, teacher: torch.nn.Module, tokenizer: Any, train_seqs: Any,
                     *, name: str = "student", layers: Any = None, init: str = "skip",
                     stop_at: int | None = None,
                     on_log: Callable[[dict], None] | None = None) -> tuple[torch.nn.Module, list]:
    """Distil `teacher` into a layer-skipped (or random) student; save it under `name`.

    The student is saved with `save_pretrained` to `results/<profile>/<name>`, stamped with
    the settings and teacher it was made from, and its loss history to `<name>_history.json`;
    an interrupted run resumes from its checkpoint, and a student already distilled under
    exactly these settings is loaded instead of trained again.
    """
    from .artefacts import is_current, student_stamp
    from .results_io import read_result
    from .student import random_student, save_model, student_from_teacher

    if cfg.max_steps is None:
        raise ValueError("max_steps is None: with `epochs` it is derived from the corpus size "
                         "by prepare_corpus(cfg, tokenizer); call that first, or set max_steps")
    if cfg.max_steps < 1:
        raise ValueError(f"max_steps is {cfg.max_steps}: distillation would train nothing and "
                         "save nothing. Give it steps (e.g. -p max_steps 200); the undistilled "
                         "student is the ablation row 'no distillation'")
    check_vocab(teacher, tokenizer)
    if layers is not None:
        cfg = dataclasses.replace(cfg, student_layers=tuple(int(i) for i in layers))
    stamp = student_stamp(cfg, init)
    out_dir, history_path = cfg.out / name, cfg.out / f"{name}_history.json"
    dev = resolve_device(cfg.device)
    if stop_at is None and is_current(out_dir, stamp) and history_path.is_file():
        from transformers import DistilBertForMaskedLM

        history = read_result(history_path)["metrics"]["history"]
        return DistilBertForMaskedLM.from_pretrained(out_dir).to(dev).eval(), history
    student = student_from_teacher(teacher, cfg.student_layers)
    if init == "random":
        student = random_student(teacher, student.config.n_layers, seed=cfg.seed)
    elif init != "skip":
        raise ValueError(f"init must be 'skip' or 'random', got {init!r}")
    rank, _ = dist_info()
    teacher.to(dev)
    student.to(dev)
    apply_speed_settings(cfg, teacher, student)
    weights = corpus_weights(train_seqs, tokenizer, cfg.mlm_smoothing)
    loss_fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    fp = _fingerprint(cfg, "distill", init=init,
                      layers=list(student.config.to_dict().get("distil_teacher_layers", [])))
    fp["teacher_sha256"] = stamp["inputs"]["teacher"]
    history = train_loop(student, loss_fn, train_seqs, cfg=cfg, max_steps=cfg.max_steps,
                         lr=cfg.lr, ckpt_path=_checkpoint(cfg.out / "checkpoints" / f"{name}.pt",
                                                          fp),
                         fingerprint=fp, pad_id=tokenizer.pad_token_id, stop_at=stop_at,
                         on_log=on_log, desc=f"distil {name}",
                         fp16_scaling=cfg.distill_autocast == "fp16")
    finished = bool(history) and history[-1]["step"] >= cfg.max_steps
    if rank == 0 and finished:
        save_model(student, tokenizer, out_dir, stamp)
        write_result(history_path, {"history": history}, cfg, name=name, init=init,
                     layers=fp["layers"], model=str(out_dir))
    return student, history


# ------------------------------------------------------------------------ command line
def config_from_cli(profile: str, pairs: list[list[str]] | None, **fixed: Any) -> Config:
    """The profile's config with `-p key value` pairs applied; `-p key None` sets None.

    `fixed` are the command's own options, where None means "the profile's value".
    """
    over = parse_overrides(pairs)
    return get_config(profile, explicit_none=tuple(k for k, v in over.items() if v is None),
                      **fixed, **over)


def parse_overrides(pairs: list[list[str]] | None) -> dict[str, Any]:
    """`-p key value` pairs; values are Python literals when they parse as one."""
    out: dict[str, Any] = {}
    for key, value in pairs or []:
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Distil a BERT teacher into a DistilBERT student.")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                    help="override a profile setting, e.g. -p max_steps 200")
    ap.add_argument("--name", default="student", help="output directory name under results/")
    ap.add_argument("--init", default="skip", choices=["skip", "random"])
    ap.add_argument("--stop-at", type=int, default=None, help="stop after this step (resumable)")
    ap.add_argument("--plan", action="store_true", help="print the run's plan (processes, "
                    "batches, steps, precision) as one JSON object and exit, training nothing")
    ap.add_argument("--world-size", type=int, default=None,
                    help="with --plan: plan for this many processes (default: this machine)")
    args = ap.parse_args(argv)
    if args.plan:
        import json

        from .recipe import plan

        print(json.dumps(plan(config_from_cli(args.profile, args.param), args.world_size)))
        return
    try:  # every bad setting or output path is named here, before any work
        cfg = config_from_cli(args.profile, args.param)
        if cfg.max_steps is not None and cfg.max_steps < 1:  # None: from epochs (recipe)
            raise ValueError(f"max_steps is {cfg.max_steps}: this command would train nothing "
                             "and save nothing; give it steps, e.g. -p max_steps 200")
        if int(os.environ.get("RANK", "0")) == 0:  # rank 0 writes; the other ranks only read
            lock_results(cfg.out, f"distill --profile {args.profile} --name {args.name}")
    except (ValueError, ResultsLockedError, NotADirectoryError) as err:
        ap.exit(2, f"error: {err}\n")
    torch.manual_seed(cfg.seed)
    tokenizer = prepare_tokenizer(cfg)
    train, held = prepare_corpus(cfg, tokenizer)
    teacher, teacher_path, _ = prepare_teacher(cfg, tokenizer, train, held)
    student, history = run_distillation(cfg, teacher, tokenizer, train, name=args.name,
                                        init=args.init, stop_at=args.stop_at)
    rank, _ = dist_info()
    if rank == 0 and history:
        last = history[-1]
        print(f"step {last['step']}: loss {last['loss']:.4f} (ce {last['ce']:.4f}, "
              f"mlm {last['mlm']:.4f}, cos {last['cos']:.4f}) -> {cfg.out / args.name}")
        # the notebooks' held-out measure (same masking seed), so a command-line variant of
        # the distillation is comparable with the committed ablation table
        mlm = evaluate_mlm(student, held, tokenizer, n_batches=cfg.eval_batches, seed=cfg.seed)
        print(f"held-out masked-token accuracy {mlm['mlm_acc']:.2f}% "
              f"(loss {mlm['mlm_loss']:.4f}, {mlm['n_masked']} tokens)")
        write_result(cfg.out / f"{args.name}_run.json",
                     {"teacher": teacher_path, "steps": last["step"], "init": args.init, **mlm},
                     cfg)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
