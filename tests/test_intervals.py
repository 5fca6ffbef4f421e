"""Uncertainty: bootstrap intervals that cover what they should, paired where it matters.

(Timing that runs until Table 3's ratio is as precise as asked: tests/test_speed.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import ROOT

from distil_utils.intervals import (
    halfwidth,
    mean_interval,
    metric_interval,
    paired_ratio,
    retention_interval,
    share_interval,
)
from distil_utils.metrics import glue_metrics, task_score
from distil_utils.summary import collect, downstream_intervals

# The CPU profile's committed results: the per-example scores, dev predictions and timed rounds
# they hold are what their stored intervals were computed from.
COMMITTED = ROOT / "results" / "cpu"


def accuracy(p, y):
    return 100.0 * float(np.mean(p == y))


def test_metric_interval_is_seeded_and_shrinks_with_more_examples():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    p = np.where(rng.random(4000) < 0.85, y, 1 - y)  # 85% accurate
    small = metric_interval(accuracy, p[:400], y[:400], seed=1)
    big = metric_interval(accuracy, p, y, seed=1)
    assert small == metric_interval(accuracy, p[:400], y[:400], seed=1)
    assert small[0] < 85 < small[1] and big[0] < 85 < big[1]
    assert halfwidth(big) < halfwidth(small)
    # the binomial's 95% half-width at n=4000, p=0.85: 1.96 * sqrt(.85 * .15 / 4000) = 1.1 pts
    assert halfwidth(big) == pytest.approx(1.1, abs=0.25)
    with pytest.raises(ValueError, match="as many predictions as labels"):
        metric_interval(accuracy, p[:3], y[:4])


def test_retention_interval_is_paired_and_narrower_than_independent_scores():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 872)
    hard = rng.random(872) < 0.12  # both models miss the hard examples
    teacher = np.where(hard, 1 - y, y)
    student = np.where(hard | (rng.random(872) < 0.03), 1 - y, y)
    lo, hi = retention_interval(accuracy, teacher, student, y, seed=0)
    point = 100 * accuracy(student, y) / accuracy(teacher, y)
    assert lo <= point <= hi <= 100.0
    t_lo, t_hi = metric_interval(accuracy, teacher, y)
    assert hi - lo < (t_hi - t_lo), "pairing must cancel the shared hard examples"


def test_paired_ratio_cancels_drifts_that_hit_both_models():
    rng = np.random.default_rng(3)
    drift = 1 + rng.random(20)  # the machine gets busier and idler between rounds
    teacher, student = 2.0 * drift, 1.0 * drift * (1 + 0.01 * rng.standard_normal(20))
    ci = paired_ratio(teacher, student)
    assert ci["low"] <= ci["median"] <= ci["high"] and ci["rounds"] == 20
    assert ci["median"] == pytest.approx(2.0, rel=0.02) and halfwidth(ci) < 0.05
    one = paired_ratio([2.0], [1.0])
    assert one["median"] == 2.0 and np.isnan(one["low"])


def test_share_interval_resamples_whole_sequences():
    rng = np.random.default_rng(0)
    masked = rng.integers(5, 20, size=200)
    correct = rng.binomial(masked, 0.3)
    low, high = share_interval(correct, masked, seed=3)
    point = 100 * correct.sum() / masked.sum()
    assert low < point < high and high - low < 10
    assert (low, high) == share_interval(correct, masked, seed=3)  # seeded
    # sequences that are all-right or all-wrong (tokens not independent) widen the interval
    lumpy = np.where(rng.random(200) < 0.3, masked, 0)
    lo2, hi2 = share_interval(lumpy, masked, seed=3)
    assert hi2 - lo2 > 1.5 * (high - low)
    # a paired difference: identical models differ by exactly 0
    assert share_interval(correct - correct, masked) == (0.0, 0.0)
    with pytest.raises(ValueError, match="one count per unit"):
        share_interval(correct[:3], masked)


def test_retention_interval_survives_resamples_where_the_teacher_scores_zero():
    def mean(v, _):
        return float(np.mean(v))  # a Python float, as a metric may return

    teacher = np.array([0.0] * 9 + [100.0])  # most resamples: teacher scores 0
    student = np.array([0.0] * 8 + [100.0, 100.0])
    low, high = retention_interval(mean, teacher, student, np.zeros(10), seed=0)
    assert low == low and high == high and low <= high  # finite resamples decide


# --- the committed intervals come back from the committed data ---------------------------------
# (resampling, seeding and percentiles unchanged since they were computed: agreement to 1e-6;
# the MLM and the int8 / ablation difference intervals need per-sequence counts and
# predictions that are not committed)

def _committed(name):
    return json.loads((COMMITTED / name).read_text(encoding="utf-8"))


def _assert_same_rows(table, stored):
    """Every stored row's numbers (NaN where NaN) and labels, recomputed, to 1e-6."""
    rows = table.to_dict("records")
    assert len(rows) == len(stored)
    for ours, theirs in zip(rows, stored, strict=True):
        for key, value in theirs.items():
            if isinstance(value, float) and value != value:
                assert ours.get(key) is None or ours[key] != ours[key], key
            elif isinstance(value, (int, float)):
                assert ours[key] == pytest.approx(value, abs=1e-6), (theirs, key)
            else:
                assert ours[key] == value, key


def test_committed_downstream_intervals_come_back_from_the_per_example_scores():
    # summary.json's table (seed 0): each score's interval and the paired retention intervals
    stored = _committed("summary.json")["metrics"]["downstream intervals"]
    assert any(r["retention 95% low"] == r["retention 95% low"] for r in stored)
    _assert_same_rows(downstream_intervals(collect(COMMITTED)), stored)
    # and each run's own intervals in 05_downstream.json, seeded with the run's seed
    down = _committed("05_downstream.json")
    checked = 0
    for task in ("imdb", "squad"):
        for run in down["metrics"][task].values():
            for metric, interval in run["intervals"].items():
                ours = mean_interval(run["per_example"][metric], seed=down["provenance"]["seed"])
                assert ours == pytest.approx(interval, abs=1e-6), (task, metric)
                checked += 1
    assert checked == 8


def test_committed_speedup_intervals_come_back_from_the_timed_rounds():
    speed, deploy = _committed("speed.json")["metrics"], _committed("deploy.json")["metrics"]
    passes = [*speed["passes"].values(), speed["paper_shapes"]["timing"], deploy["timing"]]
    for timing in passes:
        models = timing["models"]
        for name, row in models.items():
            ci = paired_ratio(models[timing["reference"]]["times"], row["times"])
            assert [ci["low"], ci["high"]] == pytest.approx(row["paired_speedup_interval"],
                                                            abs=1e-6), name
            assert ci["median"] == pytest.approx(row["paired_speedup_median"], abs=1e-6)
    t = deploy["timing"]["models"]
    onnx = paired_ratio(t["teacher ONNX fp32"]["times"], t["student ONNX fp32"]["times"])
    assert onnx == pytest.approx(deploy["onnx_fp32_speedup"], abs=1e-6)


def _glue_dev(model, task):
    return _committed(f"glue_{model}.json")["metrics"]["dev"][task][0]["validation"]


@pytest.mark.parametrize("task", ["sst2", "rte"])  # accuracy: fast; the others agree to 1e-13 too
def test_committed_glue_intervals_of_the_accuracy_tasks_come_back(task):
    seed = _committed("glue_student.json")["provenance"]["seed"]
    teacher, student = _glue_dev("teacher", task), _glue_dev("student", task)
    for dev in (teacher, student):  # each dev record's own interval, seeded with the run's seed
        ours = metric_interval(lambda p, y: glue_metrics(task, p, y)["accuracy"],
                               dev["predictions"], dev["labels"], seed=seed)
        assert ours == pytest.approx(dev["intervals"]["accuracy"], abs=1e-6)
    row = next(r for r in _committed("summary.json")["metrics"]["glue intervals"]
               if r["task"] == task)

    def score(p, y):
        return task_score(task, glue_metrics(task, p, y))

    y = teacher["labels"]
    assert metric_interval(score, student["predictions"], y) == pytest.approx(
        (row["student 95% low"], row["student 95% high"]), abs=1e-6)
    assert retention_interval(score, teacher["predictions"], student["predictions"], y) == \
        pytest.approx((row["retention 95% low"], row["retention 95% high"]), abs=1e-6)
