"""Model cards and label names: every saved model explains itself and names its labels."""

from __future__ import annotations

import json

import pytest
from helpers import make_tiny_bert

from distil_utils.artefacts import save_model
from distil_utils.modelcard import model_metrics, refresh_model_cards
from distil_utils.student import student_from_teacher
from distil_utils.tasks import label_kwargs


def _profile_dir(tmp_path, profile="smoke"):
    out = tmp_path / profile
    out.mkdir()
    (out / "PROFILE.json").write_text(json.dumps({"profile": profile, "teacher": "minilm"}))
    (out / "config").mkdir()
    (out / "config" / "01_teacher.json").write_text(json.dumps(
        {"notebook": "01_teacher", "config": {"corpus": ["imdb", "wikitext"]}}))
    return out


def _result(path, metrics):
    path.write_text(json.dumps({"provenance": {}, "metrics": metrics}))


def test_classifier_pipeline_shows_label_names_and_card(tmp_path, tokenizer):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSequenceClassification, pipeline

    out = _profile_dir(tmp_path)
    teacher_dir = out / "teacher"
    make_tiny_bert(layers=2).save_pretrained(teacher_dir)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir, num_labels=2,
                                                               **label_kwargs("sst2"))
    path = save_model(model, tokenizer, out / "finetuned" / "student_sst2")
    pred = pipeline("text-classification", model=str(path))("a lovely film")[0]
    assert pred["label"] in {"positive", "negative"}
    card = ModelCard.load(path / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "nyu-mll/glue" in card.data.datasets and "stanfordnlp/imdb" in card.data.datasets
    assert "smoke" in card.text and "1: positive" in card.text
    assert "Not measured yet" in card.text


def test_cards_carry_metrics_from_results_files_and_refresh(tmp_path, tokenizer):
    from huggingface_hub import ModelCard

    out = _profile_dir(tmp_path)
    student = student_from_teacher(make_tiny_bert(layers=4))
    save_model(student, tokenizer, out / "student")
    assert "Not measured yet" in (out / "student" / "README.md").read_text()
    assert "distil_teacher_layers" in json.loads((out / "student" / "config.json").read_text())

    _result(out / "glue_student.json", {"columns": {"sst2": 81.234, "rte": 55.0},
                                        "score": 68.117, "per_task": {"sst2": {"accuracy":
                                                                               81.234}}})
    _result(out / "03_distill.json", {"held_out_mlm": [
        {"model": "teacher", "mlm_acc": 30.0},
        {"model": "student, distilled", "mlm_acc": 24.28}], "ablation": []})
    metrics = model_metrics(out / "student", out)
    assert metrics["GLUE macro, 2 tasks (%)"] == pytest.approx(68.12)
    assert metrics["held-out masked-token accuracy (%)"] == pytest.approx(24.28)
    assert model_metrics(out / "finetuned" / "student_sst2", out) == \
        {"sst2 dev accuracy (%)": pytest.approx(81.23)}

    written = refresh_model_cards(out)
    assert out / "student" / "README.md" in written
    card = ModelCard.load(out / "student" / "README.md")
    assert "24.28" in card.text and "68.12" in card.text and "Not measured" not in card.text
    assert "teacher layers [0, 3]" in card.text
    assert card.data.pipeline_tag == "fill-mask"


def test_card_outside_a_results_folder_still_writes(tmp_path, tokenizer):
    path = save_model(make_tiny_bert(layers=2), tokenizer, tmp_path / "anywhere")
    text = (path / "README.md").read_text()
    assert "unknown" in text and "---" in text
