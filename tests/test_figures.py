"""Figures: labelled axes, bars from zero, the paper's values beside ours."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

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


def _bars_with_error(ax):
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer) and c.errorbar is not None
            and any(len(seg) for seg in c.errorbar.lines[2][0].get_segments())]


def test_numbers_with_intervals_are_drawn_with_their_error_bars():
    models = {"teacher": {"sst2": 90.0, "cola": 30.0, "score": 60.0},
              "student": {"sst2": 88.0, "cola": 15.0, "score": 51.5}}
    bars = {"teacher": {"sst2": (88.0, 92.0), "cola": (24.0, 36.0)},
            "student": {"sst2": (86.0, 90.0)}}
    fig = figures.glue_figure(models, 1, intervals=bars)
    assert len(_bars_with_error(fig.axes[0])) == 2 and "95% intervals" in fig.axes[0].get_title()
    plt.close(fig)
    assert _bars_with_error(figures.glue_figure(models, 1).axes[0]) == []  # none given: none drawn
    fig = figures.retention_figure({"sst2": 97.8, "cola": 50.0, "score": 85.8},
                                   {"sst2": 98.5}, intervals={"sst2": (95.0, 100.5)})
    (bar,) = _bars_with_error(fig.axes[0])
    segments = bar.errorbar.lines[2][0].get_segments()
    drawn = [(seg[0][1], seg[1][1]) for seg in segments if len(seg) and np.isfinite(seg).all()]
    assert drawn == [(95.0, 100.5)]  # the interval itself, not a symmetric guess
    plt.close(fig)
    fig = figures.headline_figure({"sst2": 97.0, "score": 89.0}, 2.07, {"sst2": 98.5}, 1.63,
                                  intervals={"score": (87.5, 93.3)}, speedup_interval=(1.99, 2.08))
    assert all(len(_bars_with_error(ax)) == 1 for ax in fig.axes)
    plt.close(fig)
    fig = figures.ablation_figure(["triple loss", "without L_ce"], {"Δ acc": [0.0, 1.48]},
                                  intervals={"Δ acc": [None, (1.02, 1.93)]})
    assert len(_bars_with_error(fig.axes[0])) == 1
    assert fig.axes[0].get_xlim()[1] >= 1.93  # the interval fits on the axis
    plt.close(fig)
    fig = figures.init_figure(["teacher", "random"], [5.0, 9.0], [30.0, 1.0],
                              acc_intervals=[(28.0, 32.0), (0.5, 1.6)])
    assert _bars_with_error(fig.axes[0]) == [] and len(_bars_with_error(fig.axes[1])) == 1
    plt.close(fig)


def test_every_figure_lays_itself_out_and_the_retention_legend_covers_no_label():
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    grid = [{"model": m, "batch_size": b, "seq_len": s, "latency_ms": float(b * s)}
            for m in ("teacher", "student") for b in (1, 8) for s in (16, 64)]
    made = [figures.params_figure(["embeddings", "layer 0"], [1000, 200]),
            figures.cka_figure(np.eye(3)),
            figures.init_figure(["layer-skipped (0, 2, 4)", "random init"], [5.0, 6.0],
                                [10.0, 12.0]),
            figures.ablation_figure(["triple loss"], {"Δ": [0.0]}),
            figures.glue_figure({"teacher": {"sst2": 90.0}}, 1),
            figures.retention_figure({"cola": 52.8, "sst2": 96.2, "score": 90.3}, {"sst2": 98.5}),
            figures.headline_figure({"sst2": 97.0}, 2.0, {"sst2": 98.5}, 1.63),
            figures.grid_figure(grid), figures.latency_grid_figure(grid)]
    for fig in made:
        assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine), fig.axes[0].get_title()
    fig = made[5]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    for text in fig.axes[0].texts + fig.axes[0].get_xticklabels():
        assert not legend.overlaps(text.get_window_extent(renderer)), text.get_text()
    for f in made:
        plt.close(f)


def test_a_figure_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A kill inside savefig (here: an error after half the bytes) leaves the previous file
    and no temporary beside it, never a truncated PNG."""
    fig = figures.init_figure(["a"], [1.0], [2.0])
    png, _ = figures.save(fig, tmp_path, "f")
    before = png.read_bytes()
    real = fig.savefig

    def cut(path, **kw):
        real(path, **kw)
        with open(path, "r+b") as fh:
            fh.truncate(10)
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", cut)
    with pytest.raises(KeyboardInterrupt):
        figures.save(fig, tmp_path, "f")
    assert png.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == \
        ["f.png", "f.svg"]
    plt.close(fig)
