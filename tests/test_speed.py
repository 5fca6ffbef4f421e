"""Speed: sane, positive, consistent timings; identical inputs to every model, interleaved and
warmed up; timing that runs until Table 3's ratio is as precise as asked."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from helpers import PAIRS

from distil_utils.config import get_config
from distil_utils.model_inputs import encode_texts
from distil_utils.speed import latency_grid, time_dataset_pass

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(torch.nn.Module):
    """Wraps a model and logs every call (its name and the inputs it received)."""

    def __init__(self, model, name, log):
        super().__init__()
        self.model, self.name, self.log = model, name, log

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        self.log.append((self.name, input_ids.clone(), attention_mask.clone()))
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


def test_dataset_pass_is_interleaved_warmed_up_and_feeds_identical_inputs(classifier_pair,
                                                                          tokenizer):
    _, models = classifier_pair
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


def test_dataset_pass_times_and_ratios_are_consistent(classifier_pair, tokenizer):
    _, models = classifier_pair
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


def test_timing_rejects_bad_arguments(classifier_pair, tokenizer):
    _, models = classifier_pair
    with pytest.raises(ValueError, match="repeats"):
        time_dataset_pass(models, tokenizer, PAIRS, include_tokenization=False, repeats=0,
                          warmup=0, progress=False)
    with pytest.raises(ValueError, match="no models"):
        time_dataset_pass({}, tokenizer, PAIRS, include_tokenization=False, repeats=1,
                          warmup=0, progress=False)


def test_latency_grid_covers_every_cell(classifier_pair):
    _, models = classifier_pair
    rows = latency_grid(models, [1, 3], [8, 24], repeats=2, progress=False)
    cells = {(r["model"], r["batch_size"], r["seq_len"]) for r in rows}
    assert cells == {(m, b, n) for m in models for b in (1, 3) for n in (8, 24)}
    assert len(rows) == len(cells)
    for r in rows:
        assert r["latency_ms"] > 0 and r["latency_ms_min"] <= r["latency_ms"]
        assert r["throughput"] == pytest.approx(r["batch_size"] / (r["latency_ms"] / 1000))
    with pytest.raises(ValueError, match="positions"):
        latency_grid(models, [1], [256], repeats=1, progress=False)  # the models take 128


@pytest.mark.slow  # two models of BERT-base's shapes (~5 s)
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


@pytest.mark.slow  # up to 200 bootstrapped rounds (~100 s)
def test_timing_adds_rounds_until_the_ratio_interval_is_narrow(monkeypatch, tokenizer):
    import distil_utils.speed as bench

    rng = np.random.default_rng(4)
    noise = {"t": lambda: 2.0 * (1 + 0.25 * rng.random()),
             "s": lambda: 1.0 * (1 + 0.25 * rng.random())}
    monkeypatch.setattr(bench, "_one_pass", lambda model, *a, **k: noise[model]())
    models = {"t": "t", "s": "s"}
    fixed = bench.time_dataset_pass(models, tokenizer, ["a b", "c d"], include_tokenization=False,
                                    repeats=3, warmup=0, progress=False)
    assert fixed["rounds"] == 3
    lo, hi = fixed["models"]["s"]["paired_speedup_interval"]
    wide = (hi - lo) / 2
    assert wide > 0.05
    tight = bench.time_dataset_pass(models, tokenizer, ["a b", "c d"],
                                    include_tokenization=False, repeats=3, warmup=0,
                                    progress=False, target_halfwidth=0.05, max_repeats=200)
    lo, hi = tight["models"]["s"]["paired_speedup_interval"]
    assert 3 < tight["rounds"] < 200 and (hi - lo) / 2 <= 0.05
    capped = bench.time_dataset_pass(models, tokenizer, ["a b"], include_tokenization=False,
                                     repeats=3, warmup=0, progress=False,
                                     target_halfwidth=0.001, max_repeats=6)
    assert capped["rounds"] == 6  # never more than asked, even when still wide
