"""Held-out masked-LM evaluation: how teacher, student and ablation rows are compared.

Every model sees the same held-out sequences with the same masked positions (a fixed seed,
uniform over real tokens), so two models' accuracies are paired per sequence and their
difference has a far narrower interval than either accuracy alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data import batch_stream
from .intervals import share_interval
from .masking import mask_tokens, masking_weights


@torch.inference_mode()
def mlm_counts(model: torch.nn.Module, seqs: Any, tokenizer: Any, *, batch_size: int = 16,
               n_batches: int | None = None, seed: int = 0, mlm_prob: float = 0.15
               ) -> dict[str, np.ndarray]:
    """Per held-out sequence: summed masked-token loss, correct top-1 and masked count.

    A fixed, uniform masking: the same seed masks the same positions for every model, so
    teacher, student and ablations are compared on identical inputs (and paired per sequence).
    """
    model.eval()
    dev = next(model.parameters()).device
    weights = masking_weights(None, tokenizer.all_special_ids, len(tokenizer))
    gen = torch.Generator().manual_seed(seed)
    loss, correct, masked_n = [], [], []
    for i, (_, batch) in enumerate(batch_stream(seqs, batch_size, seed, tokenizer.pad_token_id)):
        if (n_batches is not None and i >= n_batches) or i * batch_size >= len(seqs):
            break
        masked, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], weights,
                                     tokenizer.mask_token_id, len(tokenizer), mlm_prob, gen)
        logits = model(input_ids=masked.to(dev),
                       attention_mask=batch["attention_mask"].to(dev)).logits
        labels = labels.to(dev)
        sel = labels != -100
        rows = sel.nonzero()[:, 0]  # the sequence of each masked position
        picked, gold = logits[sel].float(), labels[sel]
        per_seq = torch.zeros(len(labels), 3, dtype=torch.float64, device=dev)
        per_seq.index_add_(0, rows, torch.stack([
            F.cross_entropy(picked, gold, reduction="none").double(),
            (picked.argmax(-1) == gold).double(), torch.ones_like(gold, dtype=torch.float64)], 1))
        loss.append(per_seq[:, 0].cpu())
        correct.append(per_seq[:, 1].cpu())
        masked_n.append(per_seq[:, 2].cpu())
    if not loss:
        raise ValueError("no held-out sequences to evaluate: check heldout_docs / eval_batches")
    return {"loss": torch.cat(loss).numpy(), "correct": torch.cat(correct).numpy(),
            "masked": torch.cat(masked_n).numpy()}


def summarise_mlm(counts: dict[str, np.ndarray], seed: int = 0) -> dict[str, float]:
    """Held-out loss and accuracy (%) from `mlm_counts`, the accuracy with its 95% interval
    over resampled sequences (`intervals.share_interval`)."""
    total = max(int(counts["masked"].sum()), 1)
    low, high = share_interval(counts["correct"], counts["masked"], seed=seed)
    return {"mlm_loss": float(counts["loss"].sum()) / total,
            "mlm_acc": 100.0 * int(counts["correct"].sum()) / total,
            "mlm_acc_low": low, "mlm_acc_high": high, "n_masked": int(counts["masked"].sum()),
            "n_sequences": len(counts["masked"])}


def evaluate_mlm(model: torch.nn.Module, seqs: Any, tokenizer: Any, *, batch_size: int = 16,
                 n_batches: int | None = None, seed: int = 0, mlm_prob: float = 0.15) -> dict:
    """Held-out masked-token loss and top-1 accuracy (with its 95% interval), fixed masking."""
    return summarise_mlm(mlm_counts(model, seqs, tokenizer, batch_size=batch_size,
                                    n_batches=n_batches, seed=seed, mlm_prob=mlm_prob), seed)


def paired_difference(counts: dict[str, np.ndarray], base: dict[str, np.ndarray],
                      seed: int = 0) -> dict[str, Any]:
    """Accuracy of `counts` minus that of `base` (points, same masked positions), its paired
    95% interval over resampled sequences and whether the interval excludes 0."""
    if not np.array_equal(counts["masked"], base["masked"]):
        raise ValueError("the two evaluations masked different positions: pass both models "
                         "the same held-out sequences, batch size and seed")
    low, high = share_interval(counts["correct"] - base["correct"], base["masked"], seed=seed)
    delta = 100.0 * (counts["correct"].sum() - base["correct"].sum()) / base["masked"].sum()
    return {"delta": float(delta), "delta_low": low, "delta_high": high,
            "resolvable": bool(not low <= 0 <= high)}
