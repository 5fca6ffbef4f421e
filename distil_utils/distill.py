"""Distillation pre-training: the training loop, its checkpoints, and the command line.

One small loop (`train_loop`) serves both the teacher's masked-LM adaptation and the student's
triple-loss distillation. It is written out rather than built on `transformers.Trainer`
because the step needs a frozen second model, the reference's smoothed dynamic masking and
exact resumption (the data position and per-step random seeds are part of the checkpoint),
which Trainer does not offer for a two-model loss.

Multi-device runs use torch's own DDP under `torchrun`:

    torchrun --nproc_per_node 2 -m distil_utils.distill --profile cpu
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config, get_config
from .data import batch_stream, load_corpus, tokenize_corpus
from .io import write_result
from .losses import cosine_loss, triple_loss
from .masking import mask_tokens, masking_weights, token_counts

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor], torch.Generator], dict]


# ----------------------------------------------------------------------------- devices
def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def dist_info() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


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
    `cfg.grad_accum` micro-batches per step, grad-norm clipping at `cfg.max_grad_norm`.
    Every `cfg.checkpoint_every` steps the model, optimizer, scheduler, RNG state, data
    position and loss history are saved atomically. `stop_at` ends the run early after
    checkpointing (a scheduled interruption; the schedule still spans `max_steps`).
    `fp16_scaling` scales the loss for float16 autocast (`torch.amp.GradScaler`).
    Returns the loss history, one record per optimizer step.
    """
    from transformers import get_linear_schedule_with_warmup

    rank, world = dist_info()
    ckpt_path = Path(ckpt_path)
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_frac * max_steps), max_steps)
    dev_type = next(model.parameters()).device.type
    scaler = torch.amp.GradScaler(dev_type, enabled=fp16_scaling)
    step, position, history = 0, 0, []
    fingerprint = {**fingerprint, "max_steps": max_steps, "world": world}
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, fingerprint)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
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
    stream = batch_stream(train_seqs, cfg.batch_size, cfg.seed, pad_id, start=position,
                          rank=rank, world=world)
    gen = torch.Generator()
    bar = tqdm(total=end, initial=step, desc=desc, disable=rank != 0)
    t0 = time.perf_counter()
    while step < end:
        torch.manual_seed(step_seed(cfg.seed, step, rank))
        gen.manual_seed(step_seed(cfg.seed + 1, step, rank))
        sums: dict[str, float] = {}
        tokens = 0
        for micro in range(cfg.grad_accum):
            _, batch = next(stream)
            tokens += int(batch["attention_mask"].sum())
            sync = micro == cfg.grad_accum - 1 or world == 1
            ctx = wrapped.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                out = loss_fn(wrapped, batch, gen)
                scaler.scale(out["loss"] / cfg.grad_accum).backward()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
        position += cfg.grad_accum * world
        check_finite(sums, step + 1, desc)  # before the step: nothing non-finite is saved
        scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        if not fp16_scaling:  # the fp16 scaler skips inf steps by design; nothing else may
            check_finite({"grad_norm": float(grad_norm)}, step + 1, desc)
        scaler.step(opt)
        scaler.update()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        record = {"step": step, **sums, "grad_norm": float(grad_norm),
                  "lr": sched.get_last_lr()[0], "tokens": tokens * world,
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
                "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state(),
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
    if cfg.distill_autocast is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.distill_autocast == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


class _FusedHeadLoss(torch.autograd.Function):
    """alpha_ce·L_ce + alpha_mlm·L_mlm straight from the two MLM heads' inputs.

    Same numbers as `losses.distillation_ce` and `losses.mlm_ce` on the full logits, but the
    (rows × vocab) logits only ever exist `chunk` rows at a time: each chunk's student and
    teacher logits, both terms and their gradient are computed together, and the gradient
    is pushed through the student's decoder at once (backward only scales it). Returns
    (weighted sum, L_ce, L_mlm); the two terms are for logging (not differentiable).
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
                gzs[rows] = (grad.to(mm_dtype) @ ws_mm).to(gzs.dtype)
            if gws is not None:
                gws += (grad.t().to(mm_dtype) @ zs_c).float()
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
    """The fused head needs the suite's own classes (and no DDP wrapper around the student)."""
    from transformers import BertForMaskedLM, DistilBertForMaskedLM

    return isinstance(teacher, BertForMaskedLM) and isinstance(student, DistilBertForMaskedLM)


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
        masked, labels = mask_tokens(ids, am, weights, mask_id, vocab_size, cfg.mlm_prob, gen)
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
        core = model.module if hasattr(model, "module") else model
        dev = next(core.parameters()).device
        ids, am = batch["input_ids"], batch["attention_mask"]
        masked, labels = mask_tokens(ids, am, weights, mask_id, vocab_size, cfg.mlm_prob, gen)
        hidden = core.bert(input_ids=masked.to(dev), attention_mask=am.to(dev)).last_hidden_state
        sel = labels.to(dev) != -100
        logits = core.cls(hidden[sel])
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
    """The reference's masking weights from the corpus token counts (uniform if None)."""
    counts = None
    if smoothing is not None:
        counts = np.zeros(len(tokenizer), dtype=np.int64)
        for chunk in seqs.iter(batch_size=10_000):
            counts += token_counts(chunk["input_ids"], len(tokenizer))
    return masking_weights(counts, tokenizer.all_special_ids, len(tokenizer), smoothing)


def prepare_corpus(cfg: Config, tokenizer: Any) -> tuple[Any, Any]:
    """Tokenised (train, held-out) sequences for the profile's corpus (cached by datasets)."""
    rank, world = dist_info()
    if world > 1 and rank != 0:
        torch.distributed.barrier()  # rank 0 tokenises and fills the cache first
    train_docs, held_docs = load_corpus(cfg)
    procs = None if len(train_docs) < 20_000 else min(4, os.cpu_count() or 1)
    train = tokenize_corpus(train_docs, tokenizer, cfg.max_seq_len, cfg.min_seq_len, procs)
    held = tokenize_corpus(held_docs, tokenizer, cfg.max_seq_len, cfg.min_seq_len)
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    return train, held


def prepare_tokenizer(cfg: Config) -> Any:
    """The profile's tokenizer, checked against the teacher's vocabulary later."""
    from .hub import load_tokenizer

    if cfg.tokenizer is None and cfg.teacher == "tiny":
        raise ValueError("teacher='tiny' needs an explicit tokenizer (e.g. 'minilm')")
    return load_tokenizer(cfg.tokenizer or cfg.teacher)


def check_vocab(model: torch.nn.Module, tokenizer: Any, what: str = "teacher") -> None:
    """A tokenizer whose ids the model cannot embed gives silently wrong numbers: refuse it."""
    n = model.config.vocab_size
    if len(tokenizer) != n:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the {what} embeds "
                         f"{n}: use the {what}'s own tokenizer (tokenizer=None) or a matching one")


def prepare_teacher(cfg: Config, tokenizer: Any, train_seqs: Any = None,
                    held_seqs: Any = None) -> tuple[torch.nn.Module, str, dict]:
    """The profile's masked-LM teacher, its path, and its adaptation report.

    A teacher without an MLM head (a sentence encoder such as MiniLM) or the smoke profile's
    tiny random teacher is given a head and trained on the corpus with masked-LM for
    `cfg.adapt_steps` steps — cached under `results/<profile>/teacher` and resumable.
    """
    from .student import load_teacher, save_model, tiny_teacher

    cached = cfg.out / "teacher"
    if (cached / "config.json").exists():
        teacher = load_teacher(cached)
        check_vocab(teacher, tokenizer)
        report_path = cfg.out / "teacher_adaptation.json"
        report = {}
        if report_path.exists():
            import json

            report = json.loads(report_path.read_text())["metrics"]
        return teacher, str(cached), report
    if cfg.teacher == "tiny":
        teacher = tiny_teacher(len(tokenizer), cfg.tiny_layers, cfg.tiny_hidden, cfg.tiny_heads,
                               cfg.tiny_intermediate, seed=cfg.seed)
    else:
        teacher = load_teacher(cfg.teacher, allow_new_head=cfg.adapt_steps > 0)
    check_vocab(teacher, tokenizer)
    if cfg.adapt_steps <= 0:
        return teacher.eval(), cfg.teacher, {}
    if train_seqs is None:
        train_seqs, held_seqs = prepare_corpus(cfg, tokenizer)
    report = adapt_teacher(teacher, cfg, tokenizer, train_seqs, held_seqs)
    if dist_info()[0] == 0:
        save_model(teacher, tokenizer, cached)
        write_result(cfg.out / "teacher_adaptation.json", report, cfg, teacher=cfg.teacher)
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
    history = train_loop(
        teacher, loss_fn, train_seqs, cfg=cfg, max_steps=cfg.adapt_steps, lr=cfg.adapt_lr,
        ckpt_path=cfg.out / "checkpoints" / "teacher_adapt.pt",
        fingerprint=_fingerprint(cfg, "adapt", adapt_mlm_smoothing=cfg.adapt_mlm_smoothing),
        pad_id=tokenizer.pad_token_id,
        param_groups=[{"params": body, "lr": cfg.adapt_lr},
                      {"params": head, "lr": cfg.adapt_head_lr}], desc="adapt teacher")
    after = evaluate_mlm(teacher, held_seqs, tokenizer, n_batches=cfg.eval_batches,
                         seed=cfg.seed)
    return {"before": before, "after": after, "steps": cfg.adapt_steps,
            "mlm_smoothing": cfg.adapt_mlm_smoothing,
            "final_loss": history[-1]["loss"] if history else None}


def _fingerprint(cfg: Config, kind: str, **extra: Any) -> dict[str, Any]:
    keys = ("teacher", "tokenizer", "corpus", "corpus_max_docs", "max_seq_len", "min_seq_len",
            "batch_size", "grad_accum", "seed", "mlm_prob", "mlm_smoothing")
    fp = {k: getattr(cfg, k) for k in keys}
    fp = {k: list(v) if isinstance(v, tuple) else v for k, v in fp.items()}
    if kind == "distill":
        for k in ("lr", "warmup_frac", "temperature", "alpha_ce", "alpha_mlm", "alpha_cos",
                  "ce_on_masked_only", "max_grad_norm", "weight_decay"):
            fp[k] = getattr(cfg, k)
    return {"kind": kind, **fp, **extra}


def run_distillation(cfg: Config, teacher: torch.nn.Module, tokenizer: Any, train_seqs: Any,
                     *, name: str = "student", layers: Any = None, init: str = "skip",
                     stop_at: int | None = None,
                     on_log: Callable[[dict], None] | None = None) -> tuple[torch.nn.Module, list]:
    """Distil `teacher` into a layer-skipped (or random) student; save it under `name`.

    The student is saved with `save_pretrained` to `results/<profile>/<name>` and its loss
    history to `<name>_history.json`; an interrupted run resumes from its checkpoint.
    """
    from .student import random_student, save_model, student_from_teacher

    check_vocab(teacher, tokenizer)
    layers = cfg.student_layers if layers is None else layers
    student = student_from_teacher(teacher, layers)
    if init == "random":
        student = random_student(teacher, student.config.n_layers, seed=cfg.seed)
    elif init != "skip":
        raise ValueError(f"init must be 'skip' or 'random', got {init!r}")
    rank, _ = dist_info()
    dev = resolve_device(cfg.device)
    teacher.to(dev)
    student.to(dev)
    apply_speed_settings(cfg, teacher, student)
    weights = corpus_weights(train_seqs, tokenizer, cfg.mlm_smoothing)
    loss_fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    fp = _fingerprint(cfg, "distill", init=init,
                      layers=list(student.config.to_dict().get("distil_teacher_layers", [])))
    history = train_loop(student, loss_fn, train_seqs, cfg=cfg, max_steps=cfg.max_steps,
                         lr=cfg.lr, ckpt_path=cfg.out / "checkpoints" / f"{name}.pt",
                         fingerprint=fp, pad_id=tokenizer.pad_token_id, stop_at=stop_at,
                         on_log=on_log, desc=f"distil {name}",
                         fp16_scaling=cfg.distill_autocast == "fp16")
    finished = bool(history) and history[-1]["step"] >= cfg.max_steps
    if rank == 0 and finished:
        save_model(student, tokenizer, cfg.out / name)
        write_result(cfg.out / f"{name}_history.json", {"history": history}, cfg,
                     name=name, init=init, layers=fp["layers"])
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
    args = ap.parse_args(argv)
    cfg = config_from_cli(args.profile, args.param)
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
