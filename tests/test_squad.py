"""SQuAD features: windows whose labels point at the answer, post-processing that recovers the
gold span, and the split by article."""

from __future__ import annotations

import numpy as np
import pytest

from distil_utils.squad import (
    article_split,
    postprocess,
    prepare_eval_features,
    prepare_train_features,
)

SQUAD = [
    {"id": "a", "title": "T1", "question": "who wrote it?",
     "context": "the book was written by jane austen in the year 1811 in england.",
     "answers": {"text": ["jane austen"], "answer_start": [25]}},
    {"id": "b", "title": "T2", "question": "when was it built?",
     "context": ("the tower " + "was built and rebuilt many times over " * 6
                 + "and finally completed in 1889 by the city."),
     "answers": {"text": ["1889"], "answer_start": [0]}},
]


for _row in SQUAD:  # answer_start as the Hub stores it: a character offset into the context
    _row["answers"]["answer_start"] = [_row["context"].index(_row["answers"]["text"][0])]


def _batch(rows):
    return {k: [r[k] for r in rows] for k in rows[0]}


@pytest.fixture(scope="module")
def squad_rows(data_dir):
    from distil_utils.hub import load_split

    return list(load_split("squad", "validation", data_dir).select(range(0, 2000, 50)))


def _squash(text):
    """Lower case, accents and everything but letters and digits removed: what survives
    an uncased WordPiece round trip."""
    import re
    import unicodedata

    text = unicodedata.normalize("NFKD", text.lower())
    return re.sub(r"[\W_]", "", "".join(ch for ch in text if not unicodedata.combining(ch)))


def test_train_features_point_at_the_answer(tokenizer, squad_rows):
    rows = SQUAD + squad_rows
    feats = prepare_train_features(_batch(rows), tokenizer, max_len=64, stride=16)
    # the same windows with their offsets, to know where each answer really is
    enc = tokenizer([r["question"].lstrip() for r in rows], [r["context"] for r in rows],
                    truncation="only_second", max_length=64, stride=16,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    assert enc["input_ids"] == feats["input_ids"] and len(feats["input_ids"]) > 2 * len(rows)
    inside = 0
    for i, (s, e) in enumerate(zip(feats["start_positions"], feats["end_positions"],
                                   strict=True)):
        row = rows[enc["overflow_to_sample_mapping"][i]]
        text, a0 = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        ctx = [k for k, sid in enumerate(enc.sequence_ids(i)) if sid == 1]
        offs = enc["offset_mapping"][i]
        if not (offs[ctx[0]][0] <= a0 and a0 + len(text) <= offs[ctx[-1]][1]):
            assert (s, e) == (0, 0)  # answer not (wholly) in this window: points at [CLS]
            continue
        inside += 1
        assert ctx[0] <= s <= e <= ctx[-1]
        span = row["context"][offs[s][0]:offs[e][1]]
        assert text in span and len(span) < len(text) + 12  # tight around the answer
        decoded = _squash(tokenizer.decode(feats["input_ids"][i][s:e + 1]))
        assert _squash(text) in decoded and len(decoded) <= len(_squash(text)) + 8
        if row["id"] in ("a", "b"):
            assert tokenizer.decode(feats["input_ids"][i][s:e + 1]) == text
    assert inside >= len(rows)  # every answer is inside at least one window


def test_postprocess_recovers_the_gold_span_from_perfect_logits(tokenizer, squad_rows):
    import datasets

    rows = SQUAD + squad_rows
    ex = datasets.Dataset.from_list(rows)
    feats = datasets.Dataset.from_dict(dict(prepare_eval_features(_batch(rows), tokenizer,
                                                                  max_len=64, stride=16)))
    train = prepare_train_features(_batch(rows), tokenizer, max_len=64, stride=16)
    n, width = len(feats), max(len(x) for x in feats["input_ids"]) + 5  # padded like predict
    start, end = np.full((n, width), -10.0), np.full((n, width), -10.0)
    start[:, -5:] = end[:, -5:] = 50.0  # padding beyond a window must never be picked
    for i, (s, e) in enumerate(zip(train["start_positions"], train["end_positions"],
                                   strict=True)):
        if s or e:
            start[i, s], end[i, e] = 10.0, 10.0
    preds = postprocess(ex, feats, start, end)
    assert preds["a"] == "jane austen" and preds["b"] == "1889"
    exact = [preds[r["id"]] == r["answers"]["text"][0] for r in rows]
    assert np.mean(exact) >= 0.95, [(preds[r["id"]], r["answers"]["text"][0]) for r in rows]


def test_article_split_keeps_articles_apart(data_dir):
    from distil_utils.hub import load_split

    dev = load_split("squad", "validation", data_dir).select(range(3000))
    train, held = article_split(dev, 0.3, seed=0)
    assert len(train) + len(held) == 3000 and len(held) > 0 and len(train) > 0
    assert not set(train["title"]) & set(held["title"])
    assert list(held["id"]) == list(article_split(dev, 0.3, seed=0)[1]["id"])
    with pytest.raises(ValueError, match="heldout_frac"):
        article_split(dev, 1.5, 0)
