"""The paper's triple loss: distillation KL + masked-LM + cosine on the last hidden states.

Written as one function over tensors (not a Trainer subclass) so it can be tested term by term
against a direct computation and reused by the pre-training loop and its ablations. This is
the definition of the loss: `fused_head.fused_triple_loss` computes the same value without
the full-vocabulary logits, from the helpers here (`check_settings`, `ce_rows`,
`cosine_loss`), and is tested against `triple_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_settings(temperature: float, weights: dict[str, float]) -> None:
    """Refuse a temperature <= 0 or a negative weight, naming the setting."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); the paper uses 2.0")
    for name, w in weights.items():
        if w < 0:
            raise ValueError(f"{name} must be >= 0 (got {w}); use 0 to switch the term off")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is true; 0 (not NaN) when nothing is selected."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def ce_rows(labels: torch.Tensor, attention_mask: torch.Tensor,
            ce_on_masked_only: bool) -> torch.Tensor:
    """The tokens the distillation term averages over: every real token, or the masked ones."""
    return (labels != -100) if ce_on_masked_only else attention_mask.bool()


def row_index(select: torch.Tensor) -> torch.Tensor:
    """Flat indices of the true entries of `select`. `nonzero` waits for the device: the
    training step takes these indices from `masking.masked_batch`, computed on the host."""
    return select.reshape(-1).nonzero(as_tuple=True)[0]


def distillation_ce(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    rows: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the tokens at flat indices `rows`.

    Only those rows are gathered before the softmax: the reference `masked_select`s
    full-vocabulary tensors into copies and then computes the same thing.
    """
    if rows.numel() == 0:  # a shape, known on the host: no device synchronisation
        return student_logits.sum() * 0.0
    vocab = student_logits.size(-1)
    s = student_logits.reshape(-1, vocab).index_select(0, rows).float() / temperature
    t = teacher_logits.reshape(-1, vocab).index_select(0, rows).float() / temperature
    kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean",
                  log_target=True)
    return kl * temperature**2


def mlm_ce(student_logits: torch.Tensor, labels: torch.Tensor,
           rows: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on the masked positions (`rows`, else where labels != -100); 0 if none."""
    flat = labels.reshape(-1)
    rows = row_index(flat != -100) if rows is None else rows
    if rows.numel() == 0:
        return student_logits.sum() * 0.0
    logits = student_logits.reshape(-1, student_logits.size(-1)).index_select(0, rows).float()
    return F.cross_entropy(logits, flat.index_select(0, rows))


def cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
    """1 − cos(student, teacher) of the last hidden states, averaged over real tokens."""
    cos = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)
    return _masked_mean(1.0 - cos, attention_mask.bool())


def triple_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                labels: torch.Tensor, attention_mask: torch.Tensor, *,
                temperature: float = 2.0, alpha_ce: float = 5.0, alpha_mlm: float = 2.0,
                alpha_cos: float = 1.0, ce_on_masked_only: bool = False,
                ce_index: torch.Tensor | None = None,
                mlm_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The weighted sum of the three terms, and each term, as tensors.

    Shapes: logits (batch, seq, vocab), hidden (batch, seq, dim), labels and attention_mask
    (batch, seq). The teacher tensors are detached: no gradient ever reaches the teacher.
    `ce_index` / `mlm_index` are the flat rows of the distillation and masked-LM terms
    (`masking.masked_batch` computes them on the host); without them they are derived from
    `labels`, `attention_mask` and `ce_on_masked_only`.
    """
    check_settings(temperature,
                   {"alpha_ce": alpha_ce, "alpha_mlm": alpha_mlm, "alpha_cos": alpha_cos})
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: do the two models share a "
                         "vocabulary?")
    teacher_logits, teacher_hidden = teacher_logits.detach(), teacher_hidden.detach()
    if ce_index is None:
        ce_index = row_index(ce_rows(labels, attention_mask, ce_on_masked_only))
    ce = distillation_ce(student_logits, teacher_logits, ce_index, temperature)
    mlm = mlm_ce(student_logits, labels, mlm_index)
    cos = cosine_loss(student_hidden, teacher_hidden, attention_mask)
    loss = alpha_ce * ce + alpha_mlm * mlm + alpha_cos * cos
    return {"loss": loss, "ce": ce, "mlm": mlm, "cos": cos}
