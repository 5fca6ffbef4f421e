"""An optional, clearly named implementation of `losses.triple_loss`: the fused MLM head.

`fused_triple_loss` computes exactly the value of `losses.triple_loss` (and its gradient) for
a BERT teacher and a DistilBERT student, but chunk by chunk: the (tokens x vocabulary) logits
of the two MLM heads are never materialised, only `chunk_rows` rows of them at a time.

Why: on a CPU the full-vocabulary logits dominate the step (16 x 512 tokens x 30,522 words
is 1 GB per model in float32), and plain autograd keeps the student's logits, softmax and
gradient alive at once. Here each chunk's logits, terms and gradient are computed together
and dropped, and only the rows the loss reads are projected.

`make_distill_loss` takes it only with `cfg.distill_fused_head` and when `can_fuse` holds
(BERT teacher, DistilBERT student, on the CPU: on a GPU the plain heads fit and the per-chunk
host synchronisations would stall the device). The terms are those of `losses`
(`distillation_ce`, `mlm_ce`, `ce_rows`, `cosine_loss`), not restated here.
"""

from __future__ import annotations

from typing import Any

import torch

from .losses import ce_rows, check_settings, cosine_loss
from .training import PHASE


class _FusedHeadLoss(torch.autograd.Function):
    """alpha_ce·L_ce + alpha_mlm·L_mlm straight from the two MLM heads' inputs.

    Same numbers as `losses.distillation_ce` and `losses.mlm_ce` on the full logits, with the
    (rows × vocab) logits only `chunk` rows at a time; the gradient is computed in forward
    (backward only scales it). Returns (weighted sum, L_ce, L_mlm); the terms are for logging.

    Logit matmuls run in `mm_dtype`, softmaxes and the gradient in float32; under fp16 the
    gradient's matmuls stay float32 (its O(1/rows) entries would flush to zero in fp16).
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
        # (dim x vocab) copies, made once: the logits' GEMM reads them contiguously, ~25% faster
        # on a CPU than through the transposed view, for 2 x 47 MB per step (BERT's vocabulary)
        ws_t, wt_t = ws_mm.t().contiguous(), wt_mm.t().contiguous()
        bs_mm, bt_mm = bs.to(mm_dtype), bt.to(mm_dtype)
        g_dtype = torch.float32 if mm_dtype == torch.float16 else mm_dtype
        ws_g = ws_mm if g_dtype == mm_dtype else ws.to(g_dtype)
        for start in range(0, zs.size(0), chunk):
            rows = slice(start, start + chunk)
            zs_c = zs[rows].to(mm_dtype)
            ce_c = ce_rows[rows]
            lab = labels[rows]
            sel = lab != -100
            # mlm_ce reads the masked rows at T = 1: copied out before the division by T
            s = torch.addmm(bs_mm, zs_c, ws_t).float()
            s_mlm = s[sel] if bool(sel.any()) else None
            grad = None
            if bool(ce_c.any()):  # distillation_ce's KL, summed over this chunk's rows
                t = torch.addmm(bt_mm, zt[rows].to(mm_dtype), wt_t).float()
                log_t = torch.log_softmax(t.div_(temperature), -1)
                del t
                log_s = torch.log_softmax(s.div_(temperature), -1)
                del s
                p_t = log_t.exp()
                # KL(p_t ‖ p_s) per row = Σ p_t (log p_t - log p_s): one reduction, no copy
                kl = torch.linalg.vecdot(p_t, log_t.sub_(log_s))
                del log_t
                ce_sum += kl[ce_c].sum()
                grad = log_s.exp_().sub_(p_t).mul_(ce_c.unsqueeze(1) * c_ce)  # c (p_s - p_t)
                del log_s, p_t
            else:
                del s
            if s_mlm is not None:  # mlm_ce's cross-entropy, summed over this chunk's rows
                log_p = torch.log_softmax(s_mlm, -1)
                gold = lab[sel].unsqueeze(1)
                mlm_sum -= log_p.gather(1, gold).sum()
                g_mlm = log_p.exp_().scatter_add_(1, gold, torch.full_like(gold, -1,
                                                                           dtype=log_p.dtype))
                if grad is None:
                    grad = torch.zeros(zs_c.size(0), ws.size(0), dtype=torch.float32,
                                       device=zs.device)
                grad[sel] += g_mlm * c_mlm
            if grad is None:
                continue
            if gzs is not None:
                gzs[rows] = (grad.to(g_dtype) @ ws_g).to(gzs.dtype)
            if gws is not None and g_dtype == torch.float32:  # in place: no (vocab x dim)
                gws.addmm_(grad.t(), zs[rows].float())  # temporary and pass per chunk
            elif gws is not None:
                gws += (grad.t().to(g_dtype) @ zs[rows].to(g_dtype)).float()
            if gbs is not None:
                gbs += grad.sum(0)
        # the means of distillation_ce ("batchmean", times T²) and mlm_ce over all rows
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


def can_fuse(teacher: torch.nn.Module, student: torch.nn.Module) -> bool:
    """Whether the fused head applies: the suite's own classes (it reaches into their MLM
    heads), on the CPU (its per-chunk host synchronisations would stall a GPU, where the
    plain heads are fast and fit). Under DDP the student arrives unwrapped inside
    `devices.LossModule`, whose forward DDP synchronises."""
    from transformers import BertForMaskedLM, DistilBertForMaskedLM

    on_cpu = next(student.parameters()).device.type == "cpu"
    return (on_cpu and isinstance(teacher, BertForMaskedLM)
            and isinstance(student, DistilBertForMaskedLM))


def fused_triple_loss(teacher: Any, student: Any, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor, labels: torch.Tensor, *,
                      temperature: float = 2.0, alpha_ce: float = 5.0, alpha_mlm: float = 2.0,
                      alpha_cos: float = 1.0, ce_on_masked_only: bool = False,
                      chunk_rows: int = 256) -> dict[str, torch.Tensor]:
    """`losses.triple_loss` of a BERT teacher and a DistilBERT student on `input_ids`
    (already masked; `labels` -100 where not), without full-vocabulary logits.

    The encoders run as in the models' own forward; the MLM heads are applied to the rows
    the loss uses only (the `ce_rows`, and the masked ones), and their vocabulary logits
    go straight into `_FusedHeadLoss`, `chunk_rows` rows at a time. Same keywords and
    returned terms as `losses.triple_loss`.
    """
    check_settings(temperature, {"alpha_ce": alpha_ce, "alpha_mlm": alpha_mlm,
                                 "alpha_cos": alpha_cos})
    am = attention_mask
    with PHASE("distil.teacher_forward"), torch.inference_mode():
        t_hidden = teacher.bert(input_ids=input_ids, attention_mask=am).last_hidden_state
    t_hidden = t_hidden.clone()  # inference tensors cannot be saved for backward
    with PHASE("distil.student_forward"):
        s_hidden = student.distilbert(input_ids=input_ids, attention_mask=am).last_hidden_state
    dec = teacher.cls.predictions.decoder
    if dec.weight.size(0) != student.vocab_projector.weight.size(0):
        raise ValueError(f"student vocabulary {student.vocab_projector.weight.size(0)} and "
                         f"teacher vocabulary {dec.weight.size(0)} differ: do the two models "
                         "share a vocabulary?")
    with PHASE("distil.vocab_head"):
        is_masked = labels != -100
        select = ce_rows(labels, am, ce_on_masked_only)
        rows = (select | is_masked).reshape(-1).nonzero(as_tuple=True)[0]
        dim = s_hidden.size(-1)
        # the student's and the teacher's MLM heads up to their decoders, on those rows only
        zs = student.vocab_transform(s_hidden.reshape(-1, dim).index_select(0, rows))
        zs = student.vocab_layer_norm(student.activation(zs))
        with torch.no_grad():
            zt = teacher.cls.predictions.transform(t_hidden.reshape(-1, dim).index_select(0, rows))
        bt = dec.bias if dec.bias is not None else dec.weight.new_zeros(dec.weight.size(0))
        mm_dtype = torch.get_autocast_dtype(zs.device.type) if torch.is_autocast_enabled(
            zs.device.type) else zs.dtype
        with torch.autocast(zs.device.type, enabled=False):  # precision is chosen inside
            head, ce, mlm = _FusedHeadLoss.apply(
                zs, student.vocab_projector.weight, student.vocab_projector.bias, zt, dec.weight,
                bt, select.reshape(-1)[rows], labels.reshape(-1)[rows], temperature,
                alpha_ce, alpha_mlm, chunk_rows, mm_dtype)
    with PHASE("distil.cosine"):
        cos = cosine_loss(s_hidden, t_hidden, am)
    return {"loss": head + alpha_cos * cos, "ce": ce, "mlm": mlm, "cos": cos}
