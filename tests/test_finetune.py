"""Fine-tuning on tiny models and slices: GLUE heads and metrics, IMDb, SQuAD and (D), tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_bert

from distil_utils.artefacts import save_model
from distil_utils.config import get_config
from distil_utils.downstream import (
    QADistillTrainer,
    finetune_imdb,
    finetune_squad,
    qa_kd_loss,
    stratified_holdout,
)
from distil_utils.finetune import finetune_glue, run_glue
from distil_utils.squad import (
    article_split,
    postprocess,
    prepare_eval_features,
    prepare_train_features,
)
from distil_utils.student import student_from_teacher


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer):
    """A 2-layer × 32 BERT masked-LM 'teacher' and its DistilBERT student, saved."""
    root = tmp_path_factory.mktemp("models")
    teacher = make_tiny_bert(layers=2)
    save_model(teacher, tokenizer, root / "teacher")
    save_model(student_from_teacher(teacher), tokenizer, root / "student")
    return root


def _cfg(tmp_path, data_dir, **kw):
    return get_config("smoke", results_dir=str(tmp_path), data_dir=str(data_dir), **kw)


# ------------------------------------------------------------------------------ GLUE
def test_predictions_keep_dataset_order_with_length_grouping(models, tmp_path, data_dir,
                                                            tokenizer):
    """transformers 5.x groups eval batches by length too; our predictions must not move."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    from distil_utils.finetune import make_trainer, predict_in_order, training_args

    cfg = _cfg(tmp_path, data_dir)
    assert cfg.ft_group_by_length
    texts = [" ".join(["word"] * n) + " good" for n in (1, 30, 3, 50, 2, 40, 5, 20) * 20]
    ds = Dataset.from_dict(dict(tokenizer(texts)))
    model = AutoModelForSequenceClassification.from_pretrained(models / "student",
                                                               num_labels=2).eval()
    with torch.no_grad():  # a random tiny head barely tells inputs apart: magnify it
        model.classifier.weight.mul_(1000)
    trainer = make_trainer(model, tokenizer, training_args(cfg, 0, str(tmp_path), 1.0), ds)
    got = predict_in_order(trainer, ds)
    with torch.no_grad():
        want = [model(**tokenizer(t, return_tensors="pt")).logits[0].numpy() for t in texts]
    want = np.stack(want)
    spread = float(np.ptp(want[:, 0]))
    assert spread > 0.01, "inputs too alike to show an order change"
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * spread)


def test_glue_classification_and_regression_save_loadable_models(models, tmp_path, data_dir):
    from transformers import AutoModelForSequenceClassification

    cfg = _cfg(tmp_path, data_dir, ft_max_train=32, ft_max_eval=32)
    m = finetune_glue(str(models / "student"), "sst2", cfg, 0, output_dir=tmp_path / "sst2")
    assert set(m) == {"accuracy"} and 0 <= m["accuracy"] <= 100
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "sst2")
    assert again.config.num_labels == 2 and type(again).__name__.startswith("DistilBert")
    torch.manual_seed(123)  # the global RNG state must not matter: the seed decides
    finetune_glue(str(models / "student"), "sst2", cfg, 0, output_dir=tmp_path / "sst2-again")
    same = AutoModelForSequenceClassification.from_pretrained(tmp_path / "sst2-again")
    for (k, a), b in zip(again.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    s = finetune_glue(str(models / "teacher"), "stsb", cfg, 0, output_dir=tmp_path / "stsb")
    assert set(s) == {"pearson", "spearmanr"}
    reg = AutoModelForSequenceClassification.from_pretrained(tmp_path / "stsb")
    assert reg.config.num_labels == 1 and reg.config.problem_type == "regression"


def test_missing_train_split_and_unknown_task_are_clear_errors(models, tmp_path, data_dir):
    cfg = _cfg(tmp_path, data_dir)
    with pytest.raises(FileNotFoundError, match=r"glue/qnli.*no split 'train'.*DISTIL_DATA_DIR"):
        finetune_glue(str(models / "student"), "qnli", cfg, 0)
    with pytest.raises(ValueError, match="unknown GLUE task 'sst-2'"):
        finetune_glue(str(models / "student"), "sst-2", cfg, 0)


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
    m = res["per_task"]["mnli"]
    assert res["columns"]["mnli"] == pytest.approx((m["accuracy_matched"]
                                                    + m["accuracy_mismatched"]) / 2)
    assert res["score"] == pytest.approx(np.mean(list(res["columns"].values())))
    saved = json.loads((cfg.out / "glue_student.json").read_text())
    prov = saved["provenance"]
    assert prov["profile"] == "smoke" and prov["seeds"] == [1, 2, 3]
    assert prov["tasks"] == ["qqp", "mnli", "rte"] and prov["model"] == str(models / "student")
    assert saved["metrics"]["score"] == pytest.approx(res["score"])
    assert (cfg.out / "finetuned" / "student_qqp" / "config.json").exists()


# ------------------------------------------------------------------------------ IMDb
def test_stratified_holdout_keeps_label_shares():
    import datasets

    ds = datasets.Dataset.from_dict({"text": [str(i) for i in range(100)],
                                     "label": [int(i < 80) for i in range(100)]})
    rest, held = stratified_holdout(ds, 20, seed=0)
    assert sum(held["label"]) == 16 and len(rest) == 80
    assert not set(rest["text"]) & set(held["text"])
    assert list(held["text"]) == list(stratified_holdout(ds, 20, seed=0)[1]["text"])
    with pytest.raises(ValueError, match="imdb_heldout"):
        stratified_holdout(ds, 100, 0)


def test_imdb_holds_out_part_of_train_offline(models, tmp_path, data_dir):
    cfg = _cfg(tmp_path, data_dir, imdb_heldout=40, ft_max_train=24, ft_max_eval=40)
    m = finetune_imdb(str(models / "student"), cfg, 0)
    assert m["n_test"] == 40 and m["n_train"] == 24 and "held out of train" in m["test_source"]
    assert 0 <= m["accuracy"] <= 100
    correct = m["per_example"]["accuracy"]  # one 0 / 100 per test review, for the intervals
    assert len(correct) == 40 and set(correct) <= {0.0, 100.0}
    assert sum(correct) / 40 == pytest.approx(m["accuracy"])
    low, high = m["intervals"]["accuracy"]
    assert low <= m["accuracy"] <= high
    # a record written before per-example scores were kept is not taken as done
    from distil_utils import ft_runs

    stamp, rid, done = ft_runs.lookup(cfg, str(models / "student"), "imdb", 0,
                                      needs=("per_example",))
    assert done == m
    record = ft_runs._record_path(cfg, rid)
    data = json.loads(record.read_text())
    del data["metrics"]["per_example"]
    record.write_text(json.dumps(data))
    assert ft_runs.lookup(cfg, str(models / "student"), "imdb", 0, needs=("per_example",))[2] \
        is None


# ----------------------------------------------------------------------------- SQuAD
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


def test_kd_term_is_zero_for_identical_logits_and_ignores_padding():
    x = torch.randn(4, 20)
    t = torch.randn(4, 20)
    p_t, p_s = torch.softmax(t / 2, -1), torch.softmax(x / 2, -1)
    by_hand = 4 * (p_t * (p_t.log() - p_s.log())).sum(-1).mean()  # T² KL(teacher ‖ student)
    assert qa_kd_loss(x, t, 2.0).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert qa_kd_loss(x, x.clone(), 2.0).abs().item() < 1e-6
    assert qa_kd_loss(x, torch.randn(4, 20), 2.0).item() > 0
    mask = torch.ones(4, 20, dtype=torch.long)
    mask[:, 15:] = 0
    y = torch.randn(4, 20)
    y2 = y.clone()
    y2[:, 15:] = 100.0  # only padding differs
    assert qa_kd_loss(x, y, 2.0, mask).item() == pytest.approx(
        qa_kd_loss(x, y2, 2.0, mask).item())
    assert qa_kd_loss(x[:, :15], y[:, :15], 2.0).item() == pytest.approx(
        qa_kd_loss(x, y, 2.0, mask).item(), rel=1e-5)


def test_distill_trainer_loss_with_itself_as_teacher_is_the_scaled_task_loss(tmp_path,
                                                                             tokenizer):
    from transformers import BertConfig, BertForQuestionAnswering, TrainingArguments

    torch.manual_seed(0)
    qa = BertForQuestionAnswering(BertConfig(hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64,
                                             hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0)).eval()
    enc = tokenizer(["who?", "when was it?"], ["jane austen wrote it", "in 1889"],
                    padding=True, return_tensors="pt")
    batch = {**enc, "start_positions": torch.tensor([5, 6]), "end_positions": torch.tensor([6, 6])}
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])

    def trainer(teacher):
        return QADistillTrainer(model=qa, args=args, teacher=teacher, alpha=0.3, temperature=2.0)

    same = trainer(qa)
    loss = same.compute_loss(qa, dict(batch))
    assert same.last_kd == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.7 * qa(**batch).loss.item(), rel=1e-5)
    loss.backward()  # the teacher's inference-mode logits do not break the backward pass
    other = BertForQuestionAnswering(qa.config)
    assert trainer(other).compute_loss(qa, dict(batch)).item() > loss.item()


def test_squad_plain_and_distilled(models, tmp_path, data_dir):
    from transformers import AutoModelForQuestionAnswering

    cfg = _cfg(tmp_path, data_dir, squad_max_train=16, squad_max_eval=16, squad_max_seq_len=96,
               squad_doc_stride=32)
    plain = finetune_squad(str(models / "teacher"), cfg, 0, output_dir=tmp_path / "tqa")
    assert 0 <= plain["exact_match"] <= plain["f1"] <= 100 and not plain["distilled"]
    assert plain["n_eval"] == 16 and "split by article" in plain["split"]
    for k in ("exact_match", "f1"):  # the per-question scores average to the metric
        assert len(plain["per_example"][k]) == 16
        assert sum(plain["per_example"][k]) / 16 == pytest.approx(plain[k])
        assert plain["intervals"][k][0] <= plain[k] <= plain["intervals"][k][1]
    assert AutoModelForQuestionAnswering.from_pretrained(tmp_path / "tqa")
    d = finetune_squad(str(models / "student"), cfg, 0, teacher_qa_path=str(tmp_path / "tqa"))
    assert d["distilled"] and 0 <= d["f1"] <= 100
    with pytest.raises(ValueError, match="not a SQuAD-fine-tuned model"):
        finetune_squad(str(models / "student"), cfg, 0, teacher_qa_path=str(models / "teacher"))
