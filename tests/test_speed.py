"""Speed, size and deployment: sane, positive, consistent numbers; identical inputs to every
model; int8 and ONNX students that still compute the fp32 student's function."""

from __future__ import annotations

import json
import random
import statistics
import sys

import pytest
import torch
from conftest import make_tiny_bert
from transformers import AutoModelForSequenceClassification

from benchmarks.speed_cli import main
from distil_utils.artefacts import save_model
from distil_utils.config import get_config
from distil_utils.deploy import classification_accuracy, predictions, quantize_int8
from distil_utils.model_inputs import encode_texts, model_size
from distil_utils.speed import latency_grid, time_dataset_pass
from distil_utils.student import student_from_teacher

PAIRS = [("a man is playing a guitar.", "a person plays music."),
         ("the cat sleeps.", "a dog barks loudly at night."),
         ("stocks fell today.", "markets were down.")]
WORDS = ("the film was good bad dull bright story actor plot slow funny sad long short not "
         "very quite a an of music scene end").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 14))) for _ in range(n)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP threads spinning against other
    jobs make tiny forwards 10x slower. These tests check correctness, not speed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tokenizer):
    """A 4-layer BERT teacher and its 2-layer DistilBERT student, saved as masked LMs (like
    `tiny_bert_dir`) and loaded as 2-class classifiers."""
    root = tmp_path_factory.mktemp("bench")
    teacher = make_tiny_bert(layers=4, hidden=64)
    save_model(teacher, tokenizer, root / "teacher")
    save_model(student_from_teacher(teacher), tokenizer, root / "student")
    load = AutoModelForSequenceClassification.from_pretrained
    torch.manual_seed(0)
    return root, {"teacher": load(root / "teacher", num_labels=2).eval(),
                  "student": load(root / "student", num_labels=2).eval()}


class Recorder(torch.nn.Module):
    """Wraps a model and logs every call (its name and the inputs it received)."""

    def __init__(self, model, name, log):
        super().__init__()
        self.model, self.name, self.log = model, name, log

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        self.log.append((self.name, input_ids.clone(), attention_mask.clone()))
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


# ------------------------------------------------------------------------------ size
def test_model_size_is_positive_and_the_student_is_smaller(pair):
    _, models = pair
    t, s = model_size(models["teacher"]), model_size(models["student"])
    assert 0 < s["params_m"] < t["params_m"] and 0 < s["disk_mb"] < t["disk_mb"]
    n = sum(p.numel() for p in models["student"].parameters())  # no tied weights here
    assert s["params_m"] == pytest.approx(n / 1e6)
    assert s["disk_mb"] == pytest.approx(4 * n / 1e6, rel=0.05)  # fp32 safetensors


# ------------------------------------------------------------------------------ timing
def test_dataset_pass_is_interleaved_warmed_up_and_feeds_identical_inputs(pair, tokenizer):
    _, models = pair
    log: list = []
    rec = {k: Recorder(m, k, log) for k, m in models.items()}
    res = time_dataset_pass(rec, tokenizer, PAIRS * 2, include_tokenization=False, repeats=3,
                            warmup=2, progress=False)
    n = len(PAIRS) * 2
    assert len(log) == 2 * (2 + 3 * n)
    # warm-up first (2 batches each), then rounds alternating teacher-first / student-first
    calls = [name for name, _, _ in log]
    rounds = ["teacher"] * n + ["student"] * n
    assert calls == (["teacher"] * 2 + ["student"] * 2 + rounds + rounds[::-1] + rounds)
    assert res["order"] == [["teacher", "student"], ["student", "teacher"],
                            ["teacher", "student"]]
    seen = {k: [(i, m) for name, i, m in log if name == k] for k in rec}
    for (ia, ma), (ib, mb) in zip(seen["teacher"], seen["student"], strict=True):
        assert torch.equal(ia, ib) and torch.equal(ma, mb) and ia.shape[0] == 1
    expected = encode_texts(tokenizer, PAIRS * 2)
    assert all(torch.equal(i, e["input_ids"]) for (i, _), e in
               zip(seen["teacher"][2:2 + n], expected, strict=True))
    assert tokenizer.sep_token_id in seen["teacher"][0][0][0, 1:-1]  # a sentence pair


def test_dataset_pass_times_and_ratios_are_consistent(pair, tokenizer):
    _, models = pair
    res = time_dataset_pass(models, tokenizer, PAIRS, include_tokenization=True, repeats=3,
                            warmup=1, progress=False)
    assert res["tokenization"] and res["examples"] == len(PAIRS) and res["threads"] >= 1
    t, s = res["models"]["teacher"], res["models"]["student"]
    for r in (t, s):
        assert len(r["times"]) == 3 and all(x > 0 for x in r["times"])
        assert r["seconds_median"] == statistics.median(r["times"])
        assert (r["seconds_min"] <= r["seconds_q1"] <= r["seconds_median"] <= r["seconds_q3"]
                <= r["seconds_max"])
    assert t["speedup_vs_first"] == 1.0 and t["time_ratio_vs_first"] == 1.0
    assert s["speedup_vs_first"] == pytest.approx(t["seconds_median"] / s["seconds_median"])
    assert s["time_ratio_vs_first"] == pytest.approx(s["seconds_median"] / t["seconds_median"])


def test_timing_rejects_bad_arguments(pair, tokenizer):
    _, models = pair
    with pytest.raises(ValueError, match="repeats"):
        time_dataset_pass(models, tokenizer, PAIRS, include_tokenization=False, repeats=0,
                          warmup=0, progress=False)
    with pytest.raises(ValueError, match="no models"):
        time_dataset_pass({}, tokenizer, PAIRS, include_tokenization=False, repeats=1,
                          warmup=0, progress=False)


def test_latency_grid_covers_every_cell(pair):
    _, models = pair
    rows = latency_grid(models, [1, 3], [8, 24], repeats=2, progress=False)
    cells = {(r["model"], r["batch_size"], r["seq_len"]) for r in rows}
    assert cells == {(m, b, n) for m in models for b in (1, 3) for n in (8, 24)}
    assert len(rows) == len(cells)
    for r in rows:
        assert r["latency_ms"] > 0 and r["latency_ms_min"] <= r["latency_ms"]
        assert r["throughput"] == pytest.approx(r["batch_size"] / (r["latency_ms"] / 1000))
    with pytest.raises(ValueError, match="positions"):
        latency_grid(models, [1], [256], repeats=1, progress=False)  # the models take 128


# ------------------------------------------------------------------------------ deploy
def test_int8_student_agrees_with_fp32_and_is_smaller(pair, tokenizer):
    _, models = pair
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


def test_classification_accuracy_scores_against_labels(pair, tokenizer):
    _, models = pair
    texts = sentences(12, seed=1)
    own = predictions(models["student"], tokenizer, {"sentence": texts}).tolist()
    data = {"sentence": texts, "label": own}
    assert classification_accuracy(models["student"], tokenizer, data, batch_size=5) == 100.0
    flipped = {"sentence": texts, "label": [1 - x for x in own]}
    assert classification_accuracy(models["student"], tokenizer, flipped, batch_size=5) == 0.0
    with pytest.raises(ValueError, match="regression"):
        classification_accuracy(models["student"], tokenizer,
                                {"sentence": texts, "label": [0.5] * 12}, batch_size=5)


def test_onnx_export_matches_torch(pair, tokenizer, tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install -e .[deploy]")
    from distil_utils.onnx_deploy import OnnxClassifier, export_onnx

    _, models = pair
    teacher = models["teacher"]  # BERT: token_type_ids are an input too
    onnx = OnnxClassifier(export_onnx(teacher, tokenizer, tmp_path / "t.onnx"))
    assert set(onnx.input_names) == {"input_ids", "attention_mask", "token_type_ids"}
    for batch in (PAIRS[:1], PAIRS):  # batch 1, and 3 padded pairs of another length
        enc = tokenizer([a for a, _ in batch], [b for _, b in batch], return_tensors="pt",
                        padding=True)
        with torch.inference_mode():
            ref = teacher(**enc).logits
        assert torch.allclose(onnx(**enc).logits, ref, atol=1e-4)
    assert onnx.predict(PAIRS).shape == (3, 2)  # with the tokenizer saved beside the file


def test_onnx_without_onnxruntime_names_the_fix(pair, tokenizer, tmp_path, monkeypatch):
    from distil_utils.onnx_deploy import export_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[deploy\]"):
        export_onnx(pair[1]["student"], tokenizer, tmp_path / "s.onnx")


def test_deploy_report_end_to_end(pair, tokenizer, tmp_path, data_dir):
    from distil_utils.deploy import deploy_report

    root, models = pair
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


# ------------------------------------------------------------------------------ CLI
def test_cli_end_to_end(pair, tmp_path, data_dir, capsys, monkeypatch):
    root, _ = pair
    monkeypatch.setenv("DISTIL_DATA_DIR", data_dir)
    torch.set_num_threads(2)  # the run asks for 1 and must give the 2 back
    try:
        res = main(["--teacher", str(root / "teacher"), "--student", str(root / "student"),
                    "--task", "stsb", "--max-examples", "6", "--repeats", "2", "--threads",
                    "1", "--results-dir", str(tmp_path)])
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)
    out = capsys.readouterr().out
    assert "BERT-base (paper)" in out and "DistilBERT (paper)" in out and "written:" in out
    assert "fresh" in out  # masked-LM checkpoints: the timing head is new, and we say so
    saved = json.loads((tmp_path / "smoke" / "speed.json").read_text())["metrics"]
    assert threads_after == 2  # --threads applies to the run only
    assert saved["threads"] == 1 and saved["examples"] == 6 and saved["task"] == "stsb"
    assert saved["ratios"]["params"] < 1 and saved["ratios"]["speedup"] > 0
    assert len(saved["grid"]) == 2 * 2 * 2  # 2 models × smoke's 2 batch sizes × 2 lengths
    assert len(saved["grid_ratios"]) == 4
    for suffix in ("png", "svg"):
        assert (tmp_path / "smoke" / "figures" / f"speed_latency_grid.{suffix}").stat().st_size
    assert res["models"]["student"]["layers"] == 2 and res["models"]["teacher"]["layers"] == 4


def test_paper_shapes_time_bert_base_against_distilbert_base(tokenizer, data_dir):
    from distil_utils.speed import paper_shapes

    cfg = get_config("smoke", data_dir=data_dir, bench_shape_examples=3, bench_repeats=2)
    res = paper_shapes(cfg, tokenizer, "stsb")
    names = ["BERT-base shape", "DistilBERT-base shape"]
    assert list(res["seconds"]) == names and res["examples"] == 3
    assert res["params_m"][names[0]] == pytest.approx(109.5, abs=1.0)  # 12 x 768, with a head
    assert res["params_m"][names[1]] == pytest.approx(67.0, abs=1.0)  # 6 x 768
    assert res["speedup"] > 1.0 and res["rounds"] == 2
    assert res["paper"]["rows"]["BERT-base (paper)"]["seconds"] == 668  # beside the paper's
