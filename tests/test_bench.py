"""Speed and size measurements: sane, positive, ordered numbers; the same inputs to every model."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import make_tiny_bert
from transformers import AutoModelForSequenceClassification

from distil_utils.bench import latency_grid, main, model_size, time_dataset_pass
from distil_utils.deploy import classification_accuracy, quantize_int8
from distil_utils.student import save_model, student_from_teacher

TEXTS = [("a man is playing a guitar.", "a person plays music."),
         ("the cat sleeps.", "a dog barks loudly at night."),
         ("stocks fell today.", "markets were down.")] * 3


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("bench")
    teacher = make_tiny_bert(layers=4, hidden=64)
    save_model(teacher, tokenizer, root / "teacher")
    save_model(student_from_teacher(teacher), tokenizer, root / "student")
    load = AutoModelForSequenceClassification.from_pretrained
    return root, {"teacher": load(root / "teacher", num_labels=2).eval(),
                  "student": load(root / "student", num_labels=2).eval()}


def test_sizes_are_positive_and_the_student_is_smaller(pair):
    _, models = pair
    t, s = model_size(models["teacher"]), model_size(models["student"])
    assert 0 < s["params_m"] < t["params_m"] and 0 < s["disk_mb"] < t["disk_mb"]


class Recorder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []
        self.forward_sig = model.forward

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        self.seen.append(input_ids.clone())
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


def test_timed_pass_is_interleaved_positive_and_feeds_identical_inputs(pair, tokenizer):
    _, models = pair
    rec = {k: Recorder(m) for k, m in models.items()}
    res = time_dataset_pass(rec, tokenizer, TEXTS, repeats=3, warmup=2, progress=False)
    for name in rec:
        r = res["models"][name]
        assert len(r["times"]) == 3 and all(t > 0 for t in r["times"])
        assert r["min"] <= r["median"] <= r["max"]
    assert res["models"]["teacher"]["speedup_vs_first"] == 1.0
    ratio = res["models"]["teacher"]["median"] / res["models"]["student"]["median"]
    assert res["models"]["student"]["speedup_vs_first"] == pytest.approx(ratio)
    a, b = rec["teacher"].seen, rec["student"].seen
    assert len(a) == len(b) == 2 + 3 * len(TEXTS)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(x.shape[0] == 1 for x in a)  # batch size 1


def test_tokenisation_included_costs_time(pair, tokenizer):
    _, models = pair
    res = time_dataset_pass({"s": models["student"]}, tokenizer, TEXTS * 4, repeats=3,
                            include_tokenization=True, progress=False)
    assert res["tokenization"] and res["models"]["s"]["median"] > 0


def test_latency_grid_covers_every_cell(pair):
    _, models = pair
    rows = latency_grid(models, [1, 4], [8, 32], repeats=2)
    assert len(rows) == 2 * 2 * 2
    for r in rows:
        assert r["latency_ms"] > 0
        assert r["throughput"] == pytest.approx(r["batch_size"] / (r["latency_ms"] / 1000))


def test_int8_student_agrees_with_fp32(pair, tokenizer):
    _, models = pair
    student = models["student"]
    q = quantize_int8(student)
    texts = [t for t, _ in TEXTS]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        a = student(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        b = q(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert torch.allclose(a, b, atol=0.1)
    assert any("quantized" in type(m).__module__ for m in q.modules())
    assert not any("quantized" in type(m).__module__ for m in student.modules())
    acc = classification_accuracy(q, tokenizer, texts, a.argmax(-1).tolist())
    assert acc >= 66.0


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime not installed (pip install -e .[deploy])")
def test_onnx_export_matches_torch(pair, tokenizer, tmp_path):
    from distil_utils.deploy import OnnxClassifier, export_onnx

    _, models = pair
    path = export_onnx(models["student"], tmp_path / "s.onnx")
    onnx = OnnxClassifier(path)
    enc = tokenizer(["one sentence", "and a longer second sentence here"], return_tensors="pt",
                    padding=True)
    with torch.inference_mode():
        ref = models["student"](input_ids=enc["input_ids"],
                                attention_mask=enc["attention_mask"]).logits
    out = onnx(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert torch.allclose(ref, out, atol=1e-4)


def test_cli_end_to_end(pair, tmp_path, data_dir, capsys, monkeypatch):
    root, _ = pair
    monkeypatch.setenv("DISTIL_DATA_DIR", data_dir)
    main(["--teacher", str(root / "teacher"), "--student", str(root / "student"),
          "--max-examples", "8", "--repeats", "2", "--no-grid", "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "faster" in out and "BERT-base (paper)" in out and "written:" in out
    assert (tmp_path / "smoke" / "bench.json").exists()
