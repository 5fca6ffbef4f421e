"""Fine-tuning on tiny models and slices: GLUE heads and metrics, IMDb, SQuAD and (D)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_bert

from distil_utils.config import get_config
from distil_utils.finetune import (
    finetune_glue,
    finetune_imdb,
    finetune_squad,
    qa_kd_loss,
    run_glue,
)
from distil_utils.squad import (
    article_split,
    postprocess,
    prepare_eval_features,
    prepare_train_features,
)
from distil_utils.student import save_model, student_from_teacher


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("models")
    teacher = make_tiny_bert(layers=2)
    save_model(teacher, tokenizer, root / "teacher")
    save_model(student_from_teacher(teacher), tokenizer, root / "student")
    return root


def _cfg(tmp_path, data_dir, **kw):
    return get_config("smoke", results_dir=str(tmp_path), data_dir=str(data_dir), **kw)


def test_glue_classification_and_regression_save_loadable_models(models, tmp_path, data_dir):
    from transformers import AutoModelForSequenceClassification

    cfg = _cfg(tmp_path, data_dir, ft_max_train=32, ft_max_eval=32)
    m = finetune_glue(str(models / "student"), "sst2", cfg, 0, output_dir=tmp_path / "sst2")
    assert set(m) == {"accuracy"} and 0 <= m["accuracy"] <= 100
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "sst2")
    assert again.config.num_labels == 2 and type(again).__name__.startswith("DistilBert")
    s = finetune_glue(str(models / "teacher"), "stsb", cfg, 0)
    assert set(s) == {"pearson", "spearmanr"}


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_run_glue_on_fixture_qqp_and_mnli_with_median_and_skips(models, tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "data"
    qqp = [{"question1": f"what is {i}?", "question2": f"what is {i % 3}?",
            "label": int(rng.integers(2)), "idx": i} for i in range(24)]
    _write(d / "glue/qqp/train.jsonl", qqp)
    _write(d / "glue/qqp/validation.jsonl", qqp[:12])
    mnli = [{"premise": f"a man {i}", "hypothesis": f"a person {i % 4}",
             "label": int(rng.integers(3)), "idx": i} for i in range(24)]
    for split in ("train", "validation_matched", "validation_mismatched"):
        _write(d / f"glue/mnli/{split}.jsonl", mnli)
    cfg = _cfg(tmp_path, d, glue_tasks=("qqp", "mnli", "rte"), ft_seeds=(1, 2, 3))
    res = run_glue(str(models / "student"), cfg, "student")
    assert set(res["per_task"]) == {"qqp", "mnli"} and "rte" in res["skipped"]
    assert "no split 'train'" in res["skipped"]["rte"]
    assert set(res["per_task"]["mnli"]) == {"accuracy_matched", "accuracy_mismatched"}
    f1s = sorted(r["f1"] for r in res["runs"]["qqp"])
    assert res["per_task"]["qqp"]["f1"] == f1s[1]  # the median of three seeds
    saved = json.loads((cfg.out / "glue_student.json").read_text())
    assert saved["provenance"]["profile"] == "smoke" and saved["metrics"]["score"] is not None
    assert (cfg.out / "finetuned" / "student_qqp" / "config.json").exists()


def test_unknown_task_is_a_clear_error(models, tmp_path, data_dir):
    with pytest.raises(ValueError, match="unknown GLUE task 'sst-2'"):
        finetune_glue(str(models / "student"), "sst-2", _cfg(tmp_path, data_dir), 0)


def test_imdb_holds_out_part_of_train_offline(models, tmp_path, data_dir):
    cfg = _cfg(tmp_path, data_dir, imdb_heldout=40, ft_max_train=24, ft_max_eval=40)
    m = finetune_imdb(str(models / "student"), cfg, 0)
    assert m["n_test"] == 40 and "held out of train" in m["test_source"]


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


def test_train_features_point_at_the_answer(tokenizer):
    feats = prepare_train_features(_batch(SQUAD), tokenizer, max_len=32, stride=8)
    assert len(feats["input_ids"]) > 2  # the long context is split into windows
    found = 0
    for ids, s, e in zip(feats["input_ids"], feats["start_positions"], feats["end_positions"],
                         strict=True):
        if s == e == 0:
            continue
        found += 1
        assert tokenizer.decode(ids[s:e + 1]) in ("jane austen", "1889")
    assert found >= 2


def test_postprocess_recovers_the_gold_span_from_perfect_logits(tokenizer):
    import datasets

    ex = datasets.Dataset.from_list(SQUAD)
    feats = datasets.Dataset.from_dict(dict(prepare_eval_features(_batch(SQUAD), tokenizer,
                                                                  max_len=32, stride=8)))
    train = prepare_train_features(_batch(SQUAD), tokenizer, max_len=32, stride=8)
    n, width = len(feats), max(len(x) for x in feats["input_ids"])
    start, end = np.full((n, width), -10.0), np.full((n, width), -10.0)
    for i, (s, e) in enumerate(zip(train["start_positions"], train["end_positions"],
                                   strict=True)):
        if s or e:
            start[i, s], end[i, e] = 10.0, 10.0
    preds = postprocess(ex, feats, start, end)
    assert preds == {"a": "jane austen", "b": "1889"}


def test_article_split_keeps_articles_apart(data_dir):
    from distil_utils.hub import load_split

    dev = load_split("squad", "validation", data_dir).select(range(3000))
    train, held = article_split(dev, 0.3, seed=0)
    assert len(train) + len(held) == 3000
    assert not set(train["title"]) & set(held["title"])
    with pytest.raises(ValueError, match="heldout_frac"):
        article_split(dev, 1.5, 0)


def test_kd_term_is_zero_for_identical_logits_and_positive_otherwise():
    x = torch.randn(4, 20)
    assert qa_kd_loss(x, x.clone(), 2.0).abs().item() < 1e-6
    assert qa_kd_loss(x, torch.randn(4, 20), 2.0).item() > 0


def test_squad_plain_and_distilled(models, tmp_path, data_dir):
    from transformers import AutoModelForQuestionAnswering

    cfg = _cfg(tmp_path, data_dir, squad_max_train=16, squad_max_eval=16, squad_max_seq_len=96,
               squad_doc_stride=32)
    plain = finetune_squad(str(models / "teacher"), cfg, 0, output_dir=tmp_path / "tqa")
    assert 0 <= plain["exact_match"] <= plain["f1"] <= 100 and not plain["distilled"]
    assert AutoModelForQuestionAnswering.from_pretrained(tmp_path / "tqa")
    d = finetune_squad(str(models / "student"), cfg, 0, teacher_qa_path=str(tmp_path / "tqa"))
    assert d["distilled"] and 0 <= d["f1"] <= 100
