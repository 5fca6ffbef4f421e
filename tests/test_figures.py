"""Figures: labelled axes, bars from zero, the paper's values beside ours."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from distil_utils import figures  # noqa: E402


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
