"""Computed readings: the notebooks' prose follows the numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distil_utils import readings


def test_readings_follow_the_numbers():
    good = {"teacher": {"sst2": 90.0, "rte": 60.0, "score": 75.0},
            "student": {"sst2": 89.0, "rte": 57.0, "score": 73.0}}
    text = readings.glue_reading(good, {}, 1)
    assert "97.3%" in text and "one seed" in text and "2-task" in text
    pr = readings.paper_retention(["sst2", "rte"])["score"]
    assert pr == pytest.approx(100 * (91.3 + 59.9) / (92.7 + 69.3))
    assert "4.0 points above the paper" in text
    bad = {"teacher": {"sst2": 90.0, "score": 90.0}, "student": {"sst2": 60.0, "score": 60.0}}
    assert "points below the paper" in readings.glue_reading(bad, {"qnli": "no data"}, 3)
    assert "Skipped (no data): qnli" in readings.glue_reading(bad, {"qnli": "no data"}, 3)


def test_init_reading_says_when_the_paper_choice_is_not_best():
    text = readings.init_reading({"every other layer (paper)": 10.5, "first half": 13.1,
                                  "random": 0.1})
    assert "Not before training" in text and "13.1% vs 10.5%" in text and "**Why.**" in text
    agree = readings.init_reading({"every other layer (paper)": 15.0, "first half": 13.1})
    assert "Agrees" in agree and "**Why.**" not in agree


def test_ablation_and_downstream_readings():
    deltas = {"triple loss": 0.0, "without L_cos": 0.46, "without L_mlm": -4.3,
              "without L_ce": 0.9, "triple loss, random init": -20.0}
    text = readings.ablation_reading(deltas, "held-out accuracy")
    assert "2 of 4 rows move in the paper's direction" in text
    plumbing = readings.downstream_reading({"teacher": {"imdb": 79.0, "squad_f1": 9.8},
                                            "student": {"imdb": 68.7, "squad_f1": 9.7}})
    assert "Not a result" in plumbing and "9.8" in plumbing
    real = readings.downstream_reading({"teacher": {"imdb": 93.0, "squad_f1": 88.0},
                                        "student": {"imdb": 92.0, "squad_f1": 85.0}})
    assert "Not a result" not in real


def test_speed_and_closing_readings():
    assert "As fast as the paper" in readings.speed_reading(1.9, 60, 2, 300)
    assert "Slower than the paper's 1.63×" in readings.speed_reading(1.3, 60, 2, 300)
    targets = [{"target": "a", "result": "met", "measured": 97.0, "bound": ">= 95"},
               {"target": "b", "result": "MISSED", "measured": 89.2, "bound": ">= 90"},
               {"target": "c", "result": "not run", "measured": None, "bound": ">= 1"}]
    text = readings.closing_reading(targets, "tiny")
    assert "**1 met**" in text and "MISSED: b (measured 89.20" in text
    assert "tiny BERT" in text


def test_tidy_rounds_numbers_mixed_with_none_and_glue_frame_compares_like_with_like():
    df = pd.DataFrame({"model": ["a", "b"], "x": [1.23456, None]}).astype({"x": object})
    out = readings.tidy(df, 2, {"x": "x (%)"})
    assert out["x (%)"].iloc[0] == 1.23 and list(out.columns) == ["model", "x (%)"]
    from distil_utils.summary import glue_table

    models = {"teacher": {"sst2": 90.0, "rte": 60.0, "score": 75.0},
              "student": {"sst2": 88.0, "rte": 58.0, "score": 73.0}}
    frame = readings.glue_frame(glue_table({"04_glue": {"models": models}}), ["sst2", "rte"])
    bert = frame.loc["BERT-base (paper)"]
    assert bert["macro, 2 tasks (%)"] == pytest.approx(round((92.7 + 69.3) / 2, 1))
    assert bert["macro, 9 tasks (paper, %)"] == 79.5
    assert np.isnan(frame.loc["teacher", "macro, 9 tasks (paper, %)"])
    assert "SST-2 (%)" in frame.columns


def test_tables_show_human_column_names_not_the_files_keys():
    df = pd.DataFrame([{"model": "student", "mlm_acc": 22.8, "mlm_acc_low": 21.6,
                        "mlm_acc_high": 24.0, "n_sequences": 320,
                        "delta_low vs teacher": 0.71}]).set_index("model")
    out = readings.tidy(df, 1, {"mlm_acc": "accuracy (%)"})
    assert list(out.columns) == ["accuracy (%)", "accuracy 95% low", "accuracy 95% high",
                                 "held-out sequences", "Δ 95% low vs teacher"]
    grid = pd.DataFrame([{"batch_size": 1, "seq_len": 8, "x": 1.0}]).set_index(
        ["batch_size", "seq_len"])
    assert list(readings.tidy(grid).index.names) == ["batch size", "sequence length (tokens)"]
    assert not any("_" in str(c) for c in out.columns)


def test_the_ablation_reading_names_the_undistilled_row_with_its_interval():
    from distil_utils.config import NO_DISTILLATION

    deltas = {"triple loss": 0.0, "without L_ce": 0.11, NO_DISTILLATION: 0.23}
    intervals = {"without L_ce": (-0.57, 0.80), NO_DISTILLATION: (-0.57, 1.03)}
    text = readings.ablation_reading(deltas, "SST-2 dev accuracy", intervals)
    assert "without L_ce +0.11 [-0.57, +0.80], within noise" in text
    assert f"{NO_DISTILLATION} +0.23 [-0.57, +1.03], within noise" in text
    assert "not resolvably ahead of the undistilled one" in text
    resolvable = readings.ablation_reading({NO_DISTILLATION: -12.98}, "accuracy",
                                           {NO_DISTILLATION: (-14.24, -11.78)})
    assert "distillation helps, resolvably" in resolvable
    assert "Beyond" not in readings.ablation_reading({"without L_ce": 1.0}, "x")


def test_tiny_profiles_are_labelled_plumbing_and_real_teachers_are_not():
    assert "Plumbing, not a result" in readings.tiny_note("tiny")
    assert readings.tiny_note("sentence-transformers/all-MiniLM-L6-v2") == ""
    targets = [{"target": "t", "result": "met"}]
    assert "Plumbing" in readings.closing_reading(targets, "tiny")
    assert "Plumbing" not in readings.closing_reading(targets, "bert-base-uncased")
