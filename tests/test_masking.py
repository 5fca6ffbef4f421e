"""Dynamic masking: proportions, special tokens, padding and frequency smoothing."""

from __future__ import annotations

import math

import numpy as np
import torch

from distil_utils.masking import mask_tokens, masking_weights, token_counts

V, MASK, PAD, CLS, SEP = 1000, 3, 0, 1, 2


def _batch(n=64, s=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, V, (n, s), generator=g)
    am = torch.ones_like(ids)
    lengths = torch.randint(10, s + 1, (n,), generator=g)
    for i, L in enumerate(lengths):
        ids[i, 0], ids[i, L - 1] = CLS, SEP
        ids[i, L:], am[i, L:] = PAD, 0
    return ids, am


def test_the_count_is_the_references_over_every_real_token():
    """ceil(0.15 × lengths.sum()) as the reference's prepare_batch_mlm, [CLS]/[SEP] counted
    but never chosen; count_special=False counts the maskable tokens only."""
    ids = torch.randint(10, V, (4, 16))
    am = torch.ones_like(ids)
    ids[:, 0], ids[:, 11] = CLS, SEP  # 12 real tokens per row, 10 of them maskable
    ids[:, 12:], am[:, 12:] = PAD, 0
    w = masking_weights(None, [PAD, CLS, SEP, MASK], V)
    _, labels = mask_tokens(ids, am, w, MASK, V, 0.15, torch.Generator().manual_seed(0))
    assert (labels != -100).sum().item() == math.ceil(0.15 * 48) == 8
    _, labels = mask_tokens(ids, am, w, MASK, V, 0.15, torch.Generator().manual_seed(0),
                            count_special=False)
    assert (labels != -100).sum().item() == math.ceil(0.15 * 40) == 6


def test_fifteen_percent_of_real_tokens_with_80_10_10():
    ids, am = _batch(n=400)
    w = masking_weights(None, [PAD, CLS, SEP, MASK], V)
    g = torch.Generator().manual_seed(1)
    # the count over maskable tokens only (count_special=False); the reference's count is
    # pinned above
    masked, labels = mask_tokens(ids, am, w, MASK, V, 0.15, g, count_special=False)
    real = am.bool() & (ids != CLS) & (ids != SEP)
    sel = labels != -100
    assert sel.sum().item() == math.ceil(0.15 * real.sum().item())
    assert not (sel & ~real).any(), "special or padding tokens were chosen"
    assert torch.equal(labels[sel], ids[sel])
    n = sel.sum().item()
    frac_mask = (masked[sel] == MASK).float().mean().item()
    frac_keep = (masked[sel] == ids[sel]).float().mean().item()
    # 3-sigma bounds of a binomial with n ≈ 2500
    assert abs(frac_mask - 0.8) < 3 * math.sqrt(0.8 * 0.2 / n)
    assert abs(frac_keep - 0.1) < 3 * math.sqrt(0.1 * 0.9 / n) + 1 / V
    assert torch.equal(masked[~sel], ids[~sel])


def test_masking_is_dynamic_and_seeded():
    ids, am = _batch()
    w = masking_weights(None, [PAD, CLS, SEP], V)
    a = mask_tokens(ids, am, w, MASK, V, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, am, w, MASK, V, generator=torch.Generator().manual_seed(5))
    c = mask_tokens(ids, am, w, MASK, V, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_smoothing_masks_rare_tokens_more_often():
    # token 10 is frequent, token 11 rare; both appear equally in the batch to be masked
    counts = np.ones(V, dtype=np.int64)
    counts[10], counts[11] = 10_000, 10
    w = masking_weights(counts, [PAD, CLS, SEP], V, smoothing=0.7)
    ids = torch.tensor([[10, 11] * 50] * 40)
    am = torch.ones_like(ids)
    _, labels = mask_tokens(ids, am, w, MASK, V, 0.15, torch.Generator().manual_seed(0))
    sel = labels != -100
    rare, freq = (ids[sel] == 11).sum().item(), (ids[sel] == 10).sum().item()
    assert rare > 5 * freq
    assert torch.isclose(w[11] / w[10], torch.tensor((10 / 10_000) ** -0.7), rtol=1e-4)


def test_token_counts_and_no_candidates():
    counts = token_counts([[1, 2, 2], [2, 5]], 8)
    assert counts.tolist() == [0, 1, 3, 0, 0, 1, 0, 0]
    ids = torch.tensor([[CLS, SEP, PAD]])
    w = masking_weights(None, [PAD, CLS, SEP], V)
    masked, labels = mask_tokens(ids, torch.tensor([[1, 1, 0]]), w, MASK, V)
    assert (labels == -100).all() and torch.equal(masked, ids)
