"""Deployment: int8 students that still compute the fp32 student's function, accuracy against
labels, and the deployment report end to end."""

from __future__ import annotations

import json
import random

import pytest
import torch

from distil_utils.artefacts import save_model
from distil_utils.config import get_config
from distil_utils.deploy import classification_accuracy, predictions, quantize_int8
from distil_utils.model_inputs import model_size

pytestmark = pytest.mark.usefixtures("one_thread")


# the words of short film-review-like sentences for the classifiers (not a corpus)
REVIEW_WORDS = ("the film was good bad dull bright story actor plot slow funny sad long short not "
         "very quite a an of music scene end").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(REVIEW_WORDS, k=rng.randint(3, 14))) for _ in range(n)]


def test_int8_student_agrees_with_fp32_and_is_smaller(classifier_pair, tokenizer):
    _, models = classifier_pair
    student = models["student"]
    q = quantize_int8(student)
    assert any("quantized" in type(m).__module__ for m in q.modules())
    assert not any("quantized" in type(m).__module__ for m in student.modules())
    texts = sentences(48)
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        a = student(**enc_for(enc)).logits
        b = q(**enc_for(enc)).logits
    assert (a - b).norm() / a.norm() < 0.1
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.9
    assert model_size(q)["disk_mb"] < model_size(student)["disk_mb"]
    assert model_size(q)["params_m"] == pytest.approx(model_size(student)["params_m"])


def enc_for(enc):
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_classification_accuracy_scores_against_labels(classifier_pair, tokenizer):
    _, models = classifier_pair
    texts = sentences(12, seed=1)
    own = predictions(models["student"], tokenizer, {"sentence": texts}).tolist()
    data = {"sentence": texts, "label": own}
    assert classification_accuracy(models["student"], tokenizer, data, batch_size=5) == 100.0
    flipped = {"sentence": texts, "label": [1 - x for x in own]}
    assert classification_accuracy(models["student"], tokenizer, flipped, batch_size=5) == 0.0
    with pytest.raises(ValueError, match="regression"):
        classification_accuracy(models["student"], tokenizer,
                                {"sentence": texts, "label": [0.5] * 12}, batch_size=5)


@pytest.mark.slow  # every variant timed and scored (~20 s)
def test_deploy_report_end_to_end(classifier_pair, tokenizer, tmp_path, data_dir):
    from distil_utils.deploy import deploy_report

    root, models = classifier_pair
    for name, m in models.items():
        save_model(m, tokenizer, root / f"{name}_cls")
    cfg = get_config("smoke", data_dir=data_dir, results_dir=str(tmp_path), ft_max_eval=16,
                     bench_max_examples=5, bench_repeats=2)
    rep = deploy_report(root / "student_cls", root / "teacher_cls", cfg, "sst2", verbose=False)
    rows = rep["models"]
    assert list(rows)[:3] == ["teacher fp32", "student fp32", "student int8 (torch)"]
    assert rows["teacher fp32"]["speedup_vs_teacher"] == 1.0
    assert rows["student fp32"]["agreement_with_student_fp32"] == 100.0
    for r in rows.values():
        assert 0 <= r["accuracy"] <= 100 and r["seconds"] > 0 and r["disk_mb"] > 0
        lo, hi = r["speedup_interval"]  # per-round ratios paired with the teacher's rounds
        assert lo <= r["speedup_paired"] <= hi
    assert rows["teacher fp32"]["speedup_interval"] == [1.0, 1.0]
    if rep["onnx_error"] is None:
        assert rows["student ONNX fp32"]["agreement_with_student_fp32"] == 100.0
        # the int8 graph is pre-processed and quantised per channel; both models also run
        # under ONNX Runtime fp32, for the speed-up with less Python per call
        assert "teacher ONNX fp32" in rows and rep["onnx_fp32_speedup"]["median"] > 0
        lo, hi = rows["student ONNX int8"]["accuracy_drop_interval"]
        assert lo <= rows["student ONNX int8"]["accuracy_drop"] <= hi
    assert rows["student fp32"]["accuracy_drop"] == 0.0
    saved = json.loads((tmp_path / "smoke" / "deploy.json").read_text())
    assert saved["metrics"]["models"].keys() == rows.keys()
    with pytest.raises(TypeError, match="task name"):  # the old (…, cfg, tokenizer) order
        deploy_report(root / "student_cls", root / "teacher_cls", cfg, tokenizer)
