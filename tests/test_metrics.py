"""Metrics against scikit-learn / SciPy and hand-worked SQuAD cases; offline evaluate modules."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from distil_utils.metrics import (
    glue_macro_score,
    glue_metrics,
    load_metric,
    normalize_answer,
    squad_metrics,
    task_score,
)

rng = np.random.default_rng(0)
P, R = rng.integers(0, 2, 200), rng.integers(0, 2, 200)


def test_glue_classification_metrics_match_sklearn():
    assert glue_metrics("cola", P, R) == {"matthews_correlation":
                                          pytest.approx(100 * matthews_corrcoef(R, P))}
    m = glue_metrics("mrpc", P, R)
    assert m["f1"] == pytest.approx(100 * f1_score(R, P))
    assert m["accuracy"] == pytest.approx(100 * accuracy_score(R, P))
    assert glue_metrics("qqp", P, R) == m
    for task in ("sst2", "qnli", "rte", "wnli", "mnli", "mnli_mismatched"):
        assert glue_metrics(task, P, R) == {"accuracy": pytest.approx(100 * accuracy_score(R, P))}
    three = rng.integers(0, 3, 50)
    assert glue_metrics("mnli", three, three)["accuracy"] == 100.0


def test_stsb_is_pearson_and_spearman():
    x, y = rng.normal(size=100), rng.normal(size=100)
    m = glue_metrics("stsb", x, y)
    assert m["pearson"] == pytest.approx(100 * pearsonr(x, y)[0])
    assert m["spearmanr"] == pytest.approx(100 * spearmanr(x, y)[0])


def test_bad_glue_input_is_refused():
    with pytest.raises(ValueError, match="unknown GLUE task 'sst-2'"):
        glue_metrics("sst-2", P, R)
    with pytest.raises(ValueError, match="equal length"):
        glue_metrics("sst2", P[:3], R[:4])
    with pytest.raises(ValueError, match="no predictions"):
        glue_metrics("sst2", [], [])


def test_task_and_macro_scores():
    assert task_score("mrpc", {"f1": 90.0, "accuracy": 80.0}) == 85.0
    assert task_score("mnli", {"accuracy_matched": 60.0, "accuracy_mismatched": 64.0}) == 62.0
    per_task = {"sst2": {"accuracy": 90.0}, "stsb": {"pearson": 80.0, "spearmanr": 70.0},
                "mnli_matched": {"accuracy": 60.0}, "mnli_mismatched": {"accuracy": 62.0}}
    assert glue_macro_score(per_task) == pytest.approx((90 + 75 + 61) / 3)
    # MNLI as one entry with both accuracies (finetune_glue's shape) counts once, the same
    combined = {"sst2": {"accuracy": 90.0}, "stsb": {"pearson": 80.0, "spearmanr": 70.0},
                "mnli": {"accuracy_matched": 60.0, "accuracy_mismatched": 62.0}}
    assert glue_macro_score(combined) == pytest.approx((90 + 75 + 61) / 3)
    with pytest.raises(ValueError, match="none of its metrics"):
        task_score("cola", {"accuracy": 50.0})
    with pytest.raises(ValueError, match="no task results"):
        glue_macro_score({})
    # the paper's DistilBERT row: its macro-score is the mean of the nine task columns
    row = [51.3, 82.2, 87.5, 89.2, 88.5, 59.9, 91.3, 86.9, 56.3]
    assert np.mean(row) == pytest.approx(77.0, abs=0.05)


@pytest.mark.parametrize("text, norm", [
    ("The Cat", "cat"), ("  an  apple, a pie!", "apple pie"), ("Theater", "theater"),
    ("U.S.A.", "usa"), ("the the", ""), ("A\tb\nc", "b c"), ("anthem", "anthem"),
    ("don't stop", "dont stop"), ("a-b", "ab"), ("“Quoted”", "“quoted”"),  # ASCII punct only
    ("THE END.", "end"), ("  ", ""), ("an(the)a", "anthea"),  # punctuation goes before articles
])
def test_normalisation_corner_cases(text, norm):
    assert normalize_answer(text) == norm


def test_squad_hand_worked():
    refs = [
        {"id": "1", "answers": {"text": ["Denver Broncos", "The Denver Broncos"],
                                "answer_start": [0, 0]}},
        {"id": "2", "answers": {"text": ["Santa Clara, California"], "answer_start": [0]}},
        {"id": "3", "answers": {"text": ["gold"], "answer_start": [0]}},
        {"id": "4", "answers": {"text": ["1990"], "answer_start": [0]}},
    ]
    preds = {"1": "the denver broncos.", "2": "Santa Clara", "3": "", "4": "in 1990"}
    m = squad_metrics(preds, refs)
    # EM: 1, 0, 0, 0. F1: 1; P=2/2 R=2/3 -> 0.8; 0; P=1/2 R=1 -> 2/3
    assert m["exact_match"] == pytest.approx(25.0)
    assert m["f1"] == pytest.approx(100 * (1 + 0.8 + 0 + 2 / 3) / 4)
    with pytest.warns(UserWarning, match="no prediction"):
        partial = squad_metrics({"1": "Denver Broncos"}, refs)
    assert partial["exact_match"] == pytest.approx(25.0)


def test_max_over_gold_answers():
    refs = [{"id": "q", "answers": {"text": ["a red car", "car"], "answer_start": [0, 6]}}]
    assert squad_metrics({"q": "red car"}, refs)["exact_match"] == 100.0
    # F1 against "car" is 2/3 (P=1/2, R=1), against "a red car" 1/2 (P=1/2, R=1/2): the max
    assert squad_metrics({"q": "car park"}, refs)["f1"] == pytest.approx(100 * 2 / 3)


def test_official_script_quirks():
    # a gold answer that normalises to nothing: EM counts the empty match, F1 does not
    refs = [{"id": "q", "answers": {"text": ["The"], "answer_start": [0]}}]
    assert squad_metrics({"q": "a"}, refs) == {"exact_match": 100.0, "f1": 0.0}
    # repeated tokens count as a multiset; predictions for unknown ids are ignored
    refs = [{"id": "q", "answers": {"text": ["new york new york"], "answer_start": [0]}}]
    m = squad_metrics({"q": "new york", "other": "x"}, refs)
    assert m == {"exact_match": 0.0, "f1": pytest.approx(100 * 2 * 1 * 0.5 / 1.5)}
    with pytest.raises(ValueError, match="no SQuAD references"):
        squad_metrics({"q": "x"}, [])


def test_evaluate_loads_the_local_modules_offline():
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE  # set by conftest before any import
    glue = load_metric("glue", "mrpc")
    assert glue.compute(predictions=list(P), references=list(R)) == glue_metrics("mrpc", P, R)
    stsb = load_metric("glue", "stsb")
    x, y = rng.normal(size=20), rng.normal(size=20)
    assert stsb.compute(predictions=x, references=y)["pearson"] == pytest.approx(
        glue_metrics("stsb", x, y)["pearson"])
    squad = load_metric("squad")
    refs = [{"id": "a", "answers": {"text": ["cat", "the cat"], "answer_start": [4, 0]}},
            {"id": "b", "answers": {"text": ["1889"], "answer_start": [0]}}]
    preds = [{"id": "a", "prediction_text": "The cat"}, {"id": "b", "prediction_text": "in 1889"}]
    out = squad.compute(predictions=preds, references=refs)
    assert out == squad_metrics({p["id"]: p["prediction_text"] for p in preds}, refs)
    assert out["exact_match"] == 50.0
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("bleu")
    with pytest.raises(ValueError, match="needs a task"):
        load_metric("glue")
    with pytest.raises(ValueError, match="unknown GLUE task 'sst-2'"):
        load_metric("glue", "sst-2")


def test_accuracy_is_the_glue_accuracy_in_percent():
    from distil_utils.metrics import accuracy

    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 50.0
    assert accuracy(P, R) == glue_metrics("sst2", P, R)["accuracy"]
    assert accuracy(P, R) == pytest.approx(100 * accuracy_score(R, P))
