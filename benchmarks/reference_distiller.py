"""The reference distiller's algorithm: the benchmark's baseline and the tests' oracle.

The algorithm of huggingface/transformers-research-projects, distillation/distiller.py,
re-implemented from its description (not its code) by `reference_loss`, with its batching
(`random_batches`). The paper's modules never import it: they compute the loss with
`losses.triple_loss` (or its chunked form, `fused_head`).

Two users: `benchmarks.bench_distill` times it as the `reference` variant (every speed-up is
reported against it), and tests/test_bench_distill.py checks our losses and gradients against
it; a tool cannot import from tests/, so the one copy lives here.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F

from distil_utils.config import Config
from distil_utils.data import collate
from distil_utils.distill import mlm_prepare
from distil_utils.training import LossFn, StepLoss


def random_batches(seqs: Any, batch_size: int, seed: int, pad_id: int) -> list[dict]:
    """Padded batches in random order, no length grouping (the reference with
    group_by_size off): a seeded shuffle cut into consecutive batches."""
    order = list(range(len(seqs)))
    random.Random(seed).shuffle(order)
    ids = seqs["input_ids"]
    return [collate([ids[i] for i in order[k:k + batch_size]], pad_id)
            for k in range(0, len(order), batch_size)]


def reference_loss(teacher: torch.nn.Module, cfg: Config, weights: torch.Tensor,
                   mask_id: int, vocab_size: int) -> LossFn:
    """The reference distiller's step, written from its description (not its code).

    Student forward at every position with full-vocabulary logits and all hidden states;
    teacher forward the same way under `no_grad`; the logits of the selected tokens (every
    real token, or the masked ones with `ce_on_masked_only`) are `masked_select`ed into
    copies, KL(softmax(t/T) ‖ softmax(s/T)) · T² with "batchmean" over them; masked-LM
    cross-entropy over the full logits (ignore -100); the last hidden states of real tokens
    are `masked_select`ed for the cosine-embedding loss with target 1. Masking is the same
    (`distill.mlm_prepare`) as ours, so both see identical inputs.
    """
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def forward(student: torch.nn.Module, batch: dict) -> dict:
        masked, am, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        s_out = student(input_ids=masked, attention_mask=am, output_hidden_states=True)
        with torch.no_grad():
            t_out = teacher(input_ids=masked, attention_mask=am, output_hidden_states=True)
        s_logits, t_logits = s_out.logits, t_out.logits
        vocab = s_logits.size(-1)
        sel = (labels > -1) if cfg.ce_on_masked_only else am.bool()
        sel = sel.unsqueeze(-1).expand_as(s_logits)
        s_sel = torch.masked_select(s_logits, sel).view(-1, vocab)
        t_sel = torch.masked_select(t_logits, sel).view(-1, vocab)
        t = cfg.temperature
        ce = F.kl_div(F.log_softmax(s_sel / t, -1), F.softmax(t_sel / t, -1),
                      reduction="batchmean") * t**2
        mlm = F.cross_entropy(s_logits.view(-1, vocab), labels.view(-1), ignore_index=-100)
        s_h, t_h = s_out.hidden_states[-1], t_out.hidden_states[-1]
        dim = s_h.size(-1)
        hsel = am.bool().unsqueeze(-1).expand_as(s_h)
        s_h = torch.masked_select(s_h, hsel).view(-1, dim)
        t_h = torch.masked_select(t_h, hsel).view(-1, dim)
        cos = F.cosine_embedding_loss(s_h, t_h, s_h.new_ones(s_h.size(0)))
        loss = cfg.alpha_ce * ce + cfg.alpha_mlm * mlm + cfg.alpha_cos * cos
        return {"loss": loss, "ce": ce, "mlm": mlm, "cos": cos}

    return StepLoss(mlm_prepare(cfg, weights, mask_id, vocab_size), forward)
