"""Computed readings, figures, the fill-mask and classification explorers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import make_tiny_bert  # noqa: E402

from distil_utils import figures, readings  # noqa: E402
from distil_utils.analysis import classify_timed, fill_mask_table, fill_masks  # noqa: E402


# ------------------------------------------------------------------------------ readings
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


# ------------------------------------------------------------------------------ figures
def _labelled(fig):
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() or ax.get_ylabel(), f"unlabelled axes: {ax.get_title()}"
    plt.close(fig)


def test_every_figure_has_labelled_axes_and_bars_from_zero():
    cka = np.eye(5)
    assert figures.layer_labels(5) == ["emb", "0", "1", "2", "3"]
    _labelled(figures.cka_figure(cka))
    _labelled(figures.params_figure(["embeddings", "layer 0"], [1000, 200]))
    _labelled(figures.attention_figure(["[CLS]", "a", "[SEP]"], np.full((3, 3), 1 / 3), 0, 1))
    _labelled(figures.init_figure(["a", "b"], [5.0, 6.0], [10.0, 12.0]))
    _labelled(figures.losses_figure(pd.DataFrame({"step": [1, 2], "loss": [3, 2], "ce": [1, 1],
                                                  "mlm": [2, 1], "cos": [.1, .1]})))
    _labelled(figures.ablation_figure(["triple loss", "without L_ce"],
                                      {"Δ acc (points)": [0.0, 0.9]}))
    models = {"teacher": {"sst2": 90.0, "score": 80.0}, "student": {"sst2": 88.0, "score": 77}}
    fig = figures.glue_figure(models, 1)
    assert fig.axes[0].get_ylim()[0] == 0 and "one seed" in fig.axes[0].get_title()
    # the paper's values are drawn as markers beside our bars
    assert any(line.get_label() == "BERT-base (paper)" for line in fig.axes[0].lines)
    _labelled(fig)
    _labelled(figures.downstream_figure({"teacher": {"imdb": 80.0, "squad_f1": 10.0}}))
    fig = figures.headline_figure({"sst2": 97.0, "score": 89.0}, 1.7, {"sst2": 98.5}, 1.63)
    assert all(ax.get_ylim()[0] == 0 for ax in fig.axes)
    _labelled(fig)
    _labelled(figures.retention_figure({"sst2": 97.0}, {"sst2": 98.5}))
    fig = figures.dataset_pass_figure({"teacher": [2.6, 2.7], "student": [1.5, 1.6]}, "stsb")
    assert fig.axes[0].get_ylim()[0] == 0  # a truncated axis would exaggerate the gap
    _labelled(fig)
    grid = [{"model": m, "batch_size": b, "seq_len": s, "latency_ms": float(b * s)}
            for m in ("teacher", "student") for b in (1, 8) for s in (16, 64)]
    fig = figures.grid_figure(grid)
    legend = fig.axes[0].get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > fig.axes[0].bbox.x1 - 1
    _labelled(fig)


# ------------------------------------------------------------------------------ explorers
def test_fill_masks_predicts_every_mask_like_the_pipeline(tokenizer, tmp_path):
    from transformers import pipeline

    model = make_tiny_bert(layers=2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    text = "paris is the [MASK] of [MASK]."
    ours = fill_masks(model, tokenizer, text, k=3)
    theirs = pipeline("fill-mask", model=str(tmp_path))(text, top_k=3)
    assert len(ours) == 2
    for o, t in zip(ours, theirs, strict=True):
        assert [x["token"] for x in o] == [x["token_str"] for x in t]
        assert o[0]["score"] == pytest.approx(t[0]["score"], rel=1e-4)
    table = fill_mask_table({"teacher": model, "student": make_tiny_bert(layers=2, seed=1)},
                            tokenizer, text, k=3)
    assert table.shape == (6, 4) and list(table.index.get_level_values(0).unique()) == [1, 2]
    assert "student: p (%)" in table.columns


def test_classify_timed_reports_label_names_and_latency(tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    from distil_utils.deploy import quantize_int8
    from distil_utils.tasks import label_kwargs

    make_tiny_bert(layers=2).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2,
                                                               **label_kwargs("sst2")).eval()
    pipes = {"fp32": pipeline("text-classification", model=model, tokenizer=tokenizer),
             "int8": pipeline("text-classification", model=quantize_int8(model),
                              tokenizer=tokenizer)}
    out = classify_timed(pipes, "a fine film", repeats=2)
    assert list(out.index) == ["fp32", "int8"]
    assert set(out.label) <= {"positive", "negative"}
    assert (out["latency (ms, median)"] > 0).all()
    assert out["confidence (%)"].between(50, 100).all()
