"""Teacher-inspection measurements (parameter breakdown, CKA, attention maps, fill-mask) and
the fill-mask and classification explorers."""

from __future__ import annotations

import pytest
import torch
from helpers import make_tiny_bert

from distil_utils.analysis import (
    attention_map,
    cka_matrix,
    classify_timed,
    fill_mask,
    fill_mask_table,
    fill_masks,
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


def test_fill_masks_predicts_every_mask_like_the_pipeline(tokenizer, tmp_path):
    from transformers import pipeline

    model = make_tiny_bert(layers=2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    text = "paris is the [MASK] of [MASK]."
    ours = fill_masks(model, tokenizer, text, k=3)
    theirs = pipeline("fill-mask", model=str(tmp_path))(text, top_k=3)
    assert len(ours) == 2
    for o, t in zip(ours, theirs, strict=True):
        assert [x["token"] for x in o] == [x["token_str"] for x in t]
        assert o[0]["score"] == pytest.approx(t[0]["score"], rel=1e-4)
    table = fill_mask_table({"teacher": model, "student": make_tiny_bert(layers=2, seed=1)},
                            tokenizer, text, k=3)
    assert table.shape == (6, 4) and list(table.index.get_level_values(0).unique()) == [1, 2]
    assert "student: p (%)" in table.columns


def test_classify_timed_reports_label_names_and_latency(tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    from distil_utils.deploy import quantize_int8
    from distil_utils.tasks import label_kwargs

    make_tiny_bert(layers=2).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2,
                                                               **label_kwargs("sst2")).eval()
    pipes = {"fp32": pipeline("text-classification", model=model, tokenizer=tokenizer),
             "int8": pipeline("text-classification", model=quantize_int8(model),
                              tokenizer=tokenizer)}
    out = classify_timed(pipes, "a fine film", repeats=2)
    assert list(out.index) == ["fp32", "int8"]
    assert set(out.label) <= {"positive", "negative"}
    assert (out["latency (ms, median)"] > 0).all()
    assert out["confidence (%)"].between(50, 100).all()
