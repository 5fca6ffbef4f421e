"""Dynamic masking for masked-LM distillation, as the reference distiller does it.

`DataCollatorForLanguageModeling` draws an independent Bernoulli per token and knows no
frequency smoothing; the paper's reference code instead masks exactly 15% of a batch's tokens,
sampled with probability ∝ count(token)^-0.7 so that rare tokens are masked more. That sampler
is small and is written here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch


def token_counts(sequences: Iterable[list[int]], vocab_size: int) -> np.ndarray:
    """How often each token id occurs in the corpus (for the smoothed masking weights)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for ids in sequences:
        counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    return counts


def masking_weights(counts: np.ndarray | None, special_ids: Iterable[int], vocab_size: int,
                    smoothing: float | None = 0.7) -> torch.Tensor:
    """Per-token sampling weight: count^-smoothing (uniform if None); 0 for special tokens."""
    if counts is None or smoothing is None:
        w = np.ones(vocab_size, dtype=np.float64)
    else:
        w = np.maximum(np.asarray(counts, dtype=np.float64), 1.0) ** -float(smoothing)
    w[list(special_ids)] = 0.0
    return torch.tensor(w, dtype=torch.float32)


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, weights: torch.Tensor,
                mask_token_id: int, vocab_size: int, mlm_prob: float = 0.15,
                generator: torch.Generator | None = None,
                count_special: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (masked input ids, labels) with -100 wherever nothing is predicted.

    ceil(mlm_prob × real tokens) positions are drawn without replacement with probability ∝
    `weights[token]` (special and padding tokens have weight 0, so they are never chosen);
    of those, 80% become [MASK], 10% a random token, 10% stay unchanged. "Real tokens" counts
    [CLS] and [SEP] as the reference does (`ceil(0.15 × lengths.sum())` in its
    `prepare_batch_mlm`), although they are never chosen; `count_special=False` counts the
    maskable tokens only.
    """
    flat = input_ids.reshape(-1)
    real = attention_mask.reshape(-1).to(weights.dtype)
    w = weights[flat] * real
    candidates = int((w > 0).sum())
    basis = int(real.sum()) if count_special else candidates
    n_target = min(candidates, math.ceil(mlm_prob * basis))
    labels = torch.full_like(flat, -100)
    masked = flat.clone()
    if n_target == 0:
        return masked.view_as(input_ids), labels.view_as(input_ids)
    chosen = torch.multinomial(w, n_target, replacement=False, generator=generator)
    labels[chosen] = flat[chosen]
    action = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), n_target, replacement=True,
                               generator=generator)
    random_ids = torch.randint(vocab_size, (n_target,), generator=generator, dtype=flat.dtype)
    new = torch.where(action == 0, torch.full_like(random_ids, mask_token_id),
                      torch.where(action == 1, random_ids, flat[chosen]))
    masked[chosen] = new
    return masked.view_as(input_ids), labels.view_as(input_ids)


def masked_batch(batch: dict[str, torch.Tensor], weights: torch.Tensor, mask_token_id: int,
                 vocab_size: int, generator: torch.Generator, *, mlm_prob: float = 0.15,
                 count_special: bool = True,
                 ce_on_masked_only: bool = False) -> dict[str, torch.Tensor]:
    """One micro-batch made ready for a masked-LM step, on the host.

    The masking (`mask_tokens`, with the step's CPU generator) and the row indices the losses
    read (`mlm_index`: masked positions; `ce_index`: the distillation term's rows) are computed
    here, before the batch goes to the device: under DDP the forward's inputs are already on
    the GPU, and a `nonzero` there would wait for the device at every micro-batch. "padded"
    (a Python bool) says whether any position is padding (`encoder_mask`).
    """
    ids, am = batch["input_ids"], batch["attention_mask"]
    masked, labels = mask_tokens(ids, am, weights, mask_token_id, vocab_size, mlm_prob,
                                 generator, count_special=count_special)
    mlm_index = (labels.reshape(-1) != -100).nonzero(as_tuple=True)[0]
    ce_index = mlm_index if ce_on_masked_only else am.reshape(-1).nonzero(as_tuple=True)[0]
    return {"input_ids": masked, "attention_mask": am, "labels": labels,
            "mlm_index": mlm_index, "ce_index": ce_index, "padded": bool((am == 0).any())}


def encoder_mask(batch: dict) -> torch.Tensor | None:
    """The attention mask to give the encoders: None for a batch without padding.

    transformers' SDPA mask builder asks `padding_mask.all()` at every forward (to drop an
    all-ones mask), a device synchronisation on a GPU; the host knows the answer
    (`masked_batch`'s "padded"), and None is what the builder would have made of the mask.
    Length-grouped batches of full 512-token sequences, the paper's, have no padding.
    """
    return batch["attention_mask"] if batch["padded"] else None
