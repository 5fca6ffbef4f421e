"""Model cards by the Hub's conventions: every saved model explains itself, names its labels,
and carries a model-index of its own results that huggingface_hub parses back."""

from __future__ import annotations

import json

import pytest
from helpers import make_tiny_bert

from distil_utils.artefacts import save_model
from distil_utils.config import get_config
from distil_utils.modelcard import (
    add_results,
    card_facts,
    card_numbers,
    finetune_results,
    mlm_results,
    refresh_model_cards,
)
from distil_utils.student import student_from_teacher
from distil_utils.tasks import label_kwargs


def _cfg(tmp_path, **kw):
    return get_config("smoke", results_dir=str(tmp_path), teacher="minilm",
                      corpus=("imdb", "wikitext"), **kw)


def _glue_result(acc=81.25, interval=(75.0, 87.5), n=64):
    return {"metrics": {"accuracy": acc},
            "dev": {"validation": {"labels": [0] * n, "intervals": {"accuracy": list(interval)}}}}


def test_classifier_card_follows_the_hubs_conventions(tmp_path, tokenizer):
    from huggingface_hub import ModelCard, metadata_load
    from transformers import AutoModelForSequenceClassification, pipeline

    cfg = _cfg(tmp_path)
    teacher_dir = cfg.out / "teacher"
    make_tiny_bert(layers=2).save_pretrained(teacher_dir)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir, num_labels=2,
                                                               **label_kwargs("sst2"))
    card = card_facts(cfg, "sst2", finetune_results("sst2", _glue_result()))
    path = save_model(model, tokenizer, cfg.out / "finetuned" / "student_sst2", card=card)
    pred = pipeline("text-classification", model=str(path))("a lovely film")[0]
    assert pred["label"] in {"positive", "negative"}
    loaded = ModelCard.load(path / "README.md")
    assert loaded.data.library_name == "transformers" and loaded.data.license == "apache-2.0"
    assert loaded.data.pipeline_tag == "text-classification"
    assert loaded.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"nyu-mll/glue", "stanfordnlp/imdb", "Salesforce/wikitext"} <= \
        set(loaded.data.datasets)
    assert "1: positive" in loaded.text and "[75.00, 87.50]" in loaded.text
    [result] = card_numbers(path / "README.md")
    assert result["metric_type"] == "accuracy" and result["metric_value"] == pytest.approx(81.25)
    assert (result["dataset_type"], result["dataset_config"], result["dataset_split"]) == \
        ("nyu-mll/glue", "sst2", "validation")
    assert "SST-2" in result["dataset_name"] and result["metric_name"] == "accuracy (%)"
    assert metadata_load(path / "README.md")["model-index"][0]["name"] == "student_sst2-smoke"
    # a tokenizer config says what the tokenizer is, not how this machine loaded it
    conf = json.loads((path / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only"} & set(conf)


@pytest.mark.parametrize(("task", "result", "ids"), [
    ("stsb", {"metrics": {"pearson": 80.0, "spearmanr": 79.0},
              "dev": {"validation": {"labels": [0.0] * 8,
                                     "intervals": {"pearson": [70, 90], "spearmanr": [69, 89]}}}},
     ["pearsonr", "spearmanr"]),
    ("cola", {"metrics": {"matthews_correlation": 30.0},
              "dev": {"validation": {"labels": [0] * 8,
                                     "intervals": {"matthews_correlation": [20, 40]}}}},
     ["matthews_correlation"]),
    ("mnli", {"metrics": {"accuracy_matched": 70.0, "accuracy_mismatched": 71.0},
              "dev": {"validation_matched": {"intervals": {"accuracy": [68, 72]}},
                      "validation_mismatched": {"intervals": {"accuracy": [69, 73]}}}},
     ["accuracy", "accuracy"]),
    ("imdb", {"accuracy": 80.0, "test_source": "64 examples held out of train",
              "intervals": {"accuracy": [75, 85]}, "n_test": 64}, ["accuracy"]),
    ("squad_d", {"exact_match": 3.0, "f1": 9.4, "split": "dev set split by article",
                 "intervals": {"exact_match": [1, 5], "f1": [7, 12]}}, ["exact_match", "f1"]),
])
def test_results_use_the_hubs_metric_ids(task, result, ids):
    rows = finetune_results(task, result)
    assert [r["metric_type"] for r in rows] == ids
    assert all(r["low"] is not None and r["dataset_split"] for r in rows)
    if task == "mnli":
        assert [r["dataset_split"] for r in rows] == ["validation_matched",
                                                      "validation_mismatched"]
    with pytest.raises(ValueError, match="no card results"):
        finetune_results("not-a-task", result)


def test_student_card_carries_its_own_held_out_accuracy_and_refreshes(tmp_path, tokenizer):
    from huggingface_hub import ModelCard

    cfg = _cfg(tmp_path)
    student = student_from_teacher(make_tiny_bert(layers=4))
    path = save_model(student, tokenizer, cfg.out / "student", card=card_facts(cfg))
    assert "Not measured" in (path / "README.md").read_text()
    assert card_numbers(path / "README.md") == []
    add_results(path, mlm_results(cfg, {"mlm_acc": 24.28, "mlm_acc_low": 22.0,
                                        "mlm_acc_high": 26.5, "n_masked": 900}))
    add_results(path, mlm_results(cfg, {"mlm_acc": 24.5, "mlm_acc_low": 22.1,
                                        "mlm_acc_high": 26.6, "n_masked": 900}))  # replaces
    [result] = card_numbers(path / "README.md")
    assert result["metric_type"] == "accuracy" and result["metric_value"] == pytest.approx(24.5)
    assert result["task_type"] == "fill-mask" and result["dataset_type"] == "stanfordnlp/imdb"
    card = ModelCard.load(path / "README.md")
    assert "[22.10, 26.60]" in card.text and "teacher layers [0, 3]" in card.text
    assert card.data.pipeline_tag == "fill-mask"

    (cfg.out / "glue_student.json").write_text(json.dumps({"provenance": {}, "metrics": {
        "columns": {"sst2": 81.234, "rte": 55.0}, "score": 68.117}}))
    assert path / "README.md" in refresh_model_cards(cfg.out)
    text = (path / "README.md").read_text()
    assert "68.12" in text and "SST-2" in text and "[22.10, 26.60]" in text


def test_card_outside_a_results_folder_still_writes(tmp_path, tokenizer):
    path = save_model(make_tiny_bert(layers=2), tokenizer, tmp_path / "anywhere")
    text = (path / "README.md").read_text()
    assert "unknown" in text and "---" in text
