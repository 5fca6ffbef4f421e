"""Teacher-inspection measurements: parameter breakdown, CKA, attention maps, fill-mask."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_bert

from distil_utils.analysis import (
    attention_map,
    cka_matrix,
    fill_mask,
    linear_cka,
    param_breakdown,
)
from distil_utils.student import count_parameters, student_from_teacher


def test_param_breakdown_sums_to_the_unique_parameter_count():
    teacher = make_tiny_bert(layers=3)
    rows = param_breakdown(teacher)
    names = [r["component"] for r in rows]
    assert names[0] == "embeddings" and "layer 2" in names and "MLM head" in names
    assert sum(r["params"] for r in rows) == count_parameters(teacher)
    student = student_from_teacher(teacher)
    assert sum(r["params"] for r in param_breakdown(student)) == count_parameters(student)


def test_linear_cka_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0, abs=1e-6)  # rotation and scale
    assert linear_cka(x, torch.randn(500, 16, generator=g)) < 0.2
    m = cka_matrix([x, x @ q, torch.randn(500, 16, generator=g)])
    assert torch.allclose(m, m.T) and torch.allclose(m.diagonal(), torch.ones(3, dtype=m.dtype))


def test_attention_map_rows_are_distributions_and_bad_index_is_clear(tokenizer):
    model = make_tiny_bert(layers=2)
    tokens, att = attention_map(model, tokenizer, "a small test", layer=1, head=1)
    assert att.shape == (len(tokens), len(tokens)) and tokens[0] == "[CLS]"
    assert torch.allclose(att.sum(-1), torch.ones(len(tokens)), atol=1e-5)
    assert model.config._attn_implementation != "eager"  # restored
    with pytest.raises(ValueError, match="out of range"):
        attention_map(model, tokenizer, "x", layer=2, head=0)


def test_fill_mask_matches_the_pipeline(tokenizer, tmp_path):
    from transformers import pipeline

    model = make_tiny_bert(layers=2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    ours = fill_mask(model, tokenizer, "paris is the [MASK] of france.", k=3)
    theirs = pipeline("fill-mask", model=str(tmp_path))("paris is the [MASK] of france.", top_k=3)
    assert [o["token"] for o in ours] == [t["token_str"] for t in theirs]
    assert ours[0]["score"] == pytest.approx(theirs[0]["score"], rel=1e-4)
    with pytest.raises(ValueError, match="MASK"):
        fill_mask(model, tokenizer, "no mask here")
