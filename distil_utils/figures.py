"""The notebooks' figures: labelled axes with units, the paper's values marked where we
compare with them, bars from zero, layers numbered from 0 as `student_layers` numbers them.

Each function takes the numbers a notebook computed (or read from a results file) and
returns a matplotlib figure; `save` is the one saver (PNG and SVG), which the notebooks
reach through `notebook.save_figure` and `speed.run_bench` calls for its own plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .paper import TABLE1_GLUE, TABLE2_DOWNSTREAM, TABLE3_SPEED, TABLE4_ABLATION
from .results_io import atomic_write
from .tasks import GLUE_TASKS, TASKS

PAPER_MARK = dict(marker="D", color="black", linestyle="none", markersize=6, zorder=5)
TASK_NAMES = {"score": "macro", **{t: TASKS[t].display for t in GLUE_TASKS}, "imdb": "IMDb acc",
              "squad_em": "SQuAD EM", "squad_f1": "SQuAD F1"}
LOSS_NAMES = {"loss": ("total (weighted sum)", "loss"),
              "ce": ("$L_{ce}$: KL(teacher ‖ student) × T²", "nats per token"),
              "mlm": ("$L_{mlm}$: masked-LM cross-entropy", "nats per masked token"),
              "cos": ("$L_{cos}$: 1 − cos(h_s, h_t)", "1 − cosine")}


Interval = tuple[float, float]


def _yerr(values: Sequence[float], intervals: Sequence[Interval | None]) -> Any:
    """matplotlib's asymmetric error bars (2 × n, distances below and above each value) from
    95% intervals; a value without one gets none (NaN draws nothing)."""
    out = np.full((2, len(values)), np.nan)
    for i, (v, ci) in enumerate(zip(values, intervals, strict=True)):
        if ci is not None and None not in ci and np.isfinite(v):
            out[:, i] = (max(v - ci[0], 0.0), max(ci[1] - v, 0.0))
    return out


ERRORBAR = dict(ecolor="black", capsize=3, error_kw={"elinewidth": 1})


def save(fig: Any, folder: str | Path, name: str) -> list[Path]:
    """Save a matplotlib figure as `folder/name.png` and `folder/name.svg`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.svg"]
    for p in paths:  # whole or absent: a kernel killed inside savefig leaves no 0-byte PNG
        atomic_write(p, lambda tmp, p=p: fig.savefig(
            tmp, format=p.suffix[1:], bbox_inches="tight",
            dpi=120 if p.suffix == ".png" else None))
    return paths


def layer_labels(n_hidden_states: int) -> list[str]:
    """Tick labels of the hidden states: "emb" (embeddings output), then layers 0, 1, ..."""
    return ["emb"] + [str(i) for i in range(n_hidden_states - 1)]


def params_figure(components: Sequence[str], params: Sequence[int]) -> Any:
    fig, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    ax.bar(range(len(params)), np.asarray(params) / 1e6, color="C0")
    ax.set_xticks(range(len(params)), components, rotation=45, ha="right")
    ax.set_xlabel("component (encoder layers numbered from 0)")
    ax.set_ylabel("parameters (millions)")
    ax.set_title(f"teacher parameters by component ({sum(params) / 1e6:.1f}M in all)")
    return fig


def cka_figure(cka: Any) -> Any:
    import seaborn as sns

    cka = np.asarray(cka)
    labels = layer_labels(len(cka))
    fig, ax = plt.subplots(figsize=(6.5, 5), layout="constrained")
    sns.heatmap(cka, vmin=0, vmax=1, cmap="viridis", annot=len(cka) <= 13, fmt=".2f",
                xticklabels=labels, yticklabels=labels, ax=ax,
                cbar_kws={"label": "linear CKA (0 = unrelated, 1 = identical up to rotation)"})
    ax.set_xlabel("teacher layer output (emb = embeddings)")
    ax.set_ylabel("teacher layer output (emb = embeddings)")
    ax.set_title("similarity of layer representations on held-out tokens")
    return fig


def attention_figure(tokens: Sequence[str], att: Any, layer: int, head: int) -> Any:
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    sns.heatmap(np.asarray(att), xticklabels=tokens, yticklabels=tokens, cmap="Blues", vmin=0,
                ax=ax, cbar_kws={"label": "attention weight (each row sums to 1)"})
    ax.set_xlabel("attended-to token (key)")
    ax.set_ylabel("attending token (query)")
    ax.set_title(f"teacher attention, layer {layer}, head {head} (both numbered from 0)")
    return fig


def init_figure(names: Sequence[str], loss: Sequence[float], acc: Sequence[float],
                acc_intervals: Sequence[Interval | None] | None = None) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True, layout="constrained")
    y = np.arange(len(names))
    axes[0].barh(y, loss, color="C1")
    axes[1].barh(y, acc, color="C0", xerr=_yerr(acc, acc_intervals or [None] * len(acc)),
                 **ERRORBAR)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("held-out masked-LM loss\n(nats per masked token, lower is better)")
    axes[1].set_xlabel("held-out masked-token accuracy (%)"
                       + (", 95% intervals" if acc_intervals else ""))
    axes[0].set_ylabel("initialisation")
    fig.suptitle("students before any training, beside their teacher")
    return fig


def losses_figure(hist: Any) -> Any:
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4), layout="constrained")
    for ax, key in zip(axes, LOSS_NAMES, strict=True):
        title, unit = LOSS_NAMES[key]
        ax.plot(hist["step"], hist[key])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(unit)
    return fig


def ablation_figure(rows: Sequence[str], ours: Mapping[str, Sequence[float | None]],
                    paper: Mapping[str, float] | None = None,
                    intervals: Mapping[str, Sequence[Interval | None]] | None = None) -> Any:
    """Table 4 as deltas against the triple loss: one panel per measure of ours, each bar with
    its paired 95% interval where `intervals` gives one (panel -> one per row), the paper's
    Δ GLUE macro in the last panel (different measures, so not on one axis)."""
    paper = {k.replace(" (paper)", ""): v for k, v in (paper or TABLE4_ABLATION).items()}
    panels = [*ours.items(), ("GLUE macro score (paper)", [paper.get(r) for r in rows])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 0.5 * len(rows) + 1.8),
                             sharey=True, layout="constrained")
    y = np.arange(len(rows))
    for i, (ax, (label, values)) in enumerate(zip(np.atleast_1d(axes), panels, strict=True)):
        vals = np.array([np.nan if v is None else v for v in values], dtype=float)
        cis = list((intervals or {}).get(label) or [None] * len(rows))
        err = _yerr(vals, cis)
        ax.barh(y, vals, color=["C3" if v < 0 else "C2" for v in np.nan_to_num(vals)],
                hatch="//" if i == len(panels) - 1 else None, xerr=err, **ERRORBAR)
        ax.axvline(0, color="black", linewidth=0.8)
        reach = np.abs(vals) + np.nan_to_num(err).max(axis=0)
        lim = 1.45 * max(1.0, float(np.nanmax(reach)) if np.isfinite(reach).any() else 1)
        ax.set_xlim(-lim, lim)  # symmetric: gains and losses read alike
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("Δ vs the triple loss (points)")
        reach_below, reach_above = np.nan_to_num(err)
        for yi, v, lo, hi in zip(y, vals, reach_below, reach_above, strict=True):
            edge = 0 if not np.isfinite(v) else (v - lo if v < 0 else v + hi)  # past the bar
            ax.text(edge, yi, " n/a" if not np.isfinite(v) else f" {v:+.2f} ",
                    va="center", ha="left" if not np.isfinite(v) or v >= 0 else "right",
                    fontsize=8)
    axes[0].set_yticks(y, rows)
    axes[0].invert_yaxis()
    fig.suptitle("Table 4: each row minus the triple loss (ours at this scale with paired 95% "
                 "intervals; paper hatched)")
    return fig


def scores_figure(models: Mapping[str, Mapping[str, float | None]], columns: Sequence[str],
                  paper: Mapping[str, Mapping[str, float]], ylabel: str, title: str,
                  intervals: Mapping[str, Mapping[str, Interval]] | None = None) -> Any:
    """Grouped bars of our models per column, each with its 95% interval where `intervals`
    (model -> column -> (low, high)) has one; the paper's rows as black/grey markers."""
    cols = [c for c in columns if any(m.get(c) is not None for m in models.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(cols) + 2), 3.8), layout="constrained")
    width = 0.8 / max(1, len(models))
    for i, (name, row) in enumerate(models.items()):
        vals = [np.nan if row.get(c) is None else row[c] for c in cols]
        cis = [(intervals or {}).get(name, {}).get(c) for c in cols]
        ax.bar(np.arange(len(cols)) + (i - (len(models) - 1) / 2) * width, vals, width,
               label=f"{name} (ours)", color=f"C{i}", yerr=_yerr(vals, cis), **ERRORBAR)
    for j, (name, row) in enumerate(paper.items()):
        ax.plot(np.arange(len(cols)), [row.get(c, np.nan) for c in cols],
                **{**PAPER_MARK, "color": ("black", "dimgrey", "silver")[j % 3]}, label=name)
    ax.set_xticks(np.arange(len(cols)), [TASK_NAMES.get(c, c) for c in cols])
    ax.set_ylabel(ylabel)
    lowest = min([0.0, *(v for m in models.values() for c in cols
                         if (v := m.get(c)) is not None)])
    ax.set_ylim(lowest - 5 if lowest < 0 else 0, 100)  # a negative MCC / Pearson stays visible
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def glue_figure(models: Mapping[str, Mapping[str, float | None]], n_seeds: int,
                intervals: Mapping[str, Mapping[str, Interval]] | None = None) -> Any:
    paper = {k: v for k, v in TABLE1_GLUE.items() if "ELMo" not in k}
    seeds = f"median of {n_seeds} seeds" if n_seeds > 1 else "one seed"
    bars = ", 95% intervals of the first seed" if intervals else ""
    return scores_figure(models, list(TABLE1_GLUE["BERT-base (paper)"]), paper,
                         "dev score (%; CoLA: MCC × 100)", f"GLUE dev, {seeds}{bars}",
                         intervals)


def downstream_figure(models: Mapping[str, Mapping[str, float | None]]) -> Any:
    return scores_figure(models, ["imdb", "squad_em", "squad_f1"], TABLE2_DOWNSTREAM,
                         "score (%)", "Table 2: IMDb accuracy and SQuAD v1.1 EM / F1")


def _retention_axes(ax: Any, retention: Mapping[str, float],
                    paper_retention: Mapping[str, float],
                    intervals: Mapping[str, Interval] | None = None) -> None:
    cols = list(retention)
    x = np.arange(len(cols))
    top = 150.0  # ratios of near-zero scores run off the scale: written on the bar instead
    vals = [retention[c] for c in cols]
    shown = np.clip(vals, None, top)
    cis = [None if v > top else (intervals or {}).get(c) for c, v in zip(cols, vals, strict=True)]
    err = np.minimum(_yerr(shown, cis), [[np.inf] * len(cols), top + 9 - shown])  # stay inside
    ax.bar(x, shown, 0.6, color="C0", yerr=err, **ERRORBAR,
           label="ours (student / teacher)" + (", paired 95% interval" if intervals else ""))
    for xi, v in zip(x, vals, strict=True):
        ax.text(xi, max(min(v, top), 0) / 2, f"{v:.0f}%" + ("\n(off scale)" if v > top else ""),
                ha="center", va="center", fontsize=8, color="white")
    ax.plot(x, [paper_retention.get(c, np.nan) for c in cols], **PAPER_MARK,
            label="paper (DistilBERT / BERT-base)")
    ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, [TASK_NAMES.get(c, c) for c in cols])
    ax.set_xlabel("score")
    ax.set_ylabel("student / teacher (%)")
    ax.set_ylim(min(0.0, *vals), top + 10)
    ax.set_title("how much of the teacher's score the student keeps")
    # below the axes: inside them it covered the first task's bar label
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2, fontsize=8)


def retention_figure(retention: Mapping[str, float], paper_retention: Mapping[str, float],
                     intervals: Mapping[str, Interval] | None = None) -> Any:
    """Student / teacher (%) per score, ours as bars with their paired 95% intervals, the
    paper's as black diamonds."""
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(retention) + 2), 3.8),
                           layout="constrained")
    _retention_axes(ax, retention, paper_retention, intervals)
    return fig


def headline_figure(retention: Mapping[str, float], speedup: float | None,
                    paper_retention: Mapping[str, float], paper_speedup: float,
                    intervals: Mapping[str, Interval] | None = None,
                    speedup_interval: Interval | None = None) -> Any:
    """Retention per score and the batch-1 CPU speed-up, ours (with their 95% intervals)
    beside the paper's."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained",
                                 gridspec_kw={"width_ratios": [max(2, len(retention)), 1.2]})
    _retention_axes(ax, retention, paper_retention, intervals)
    bars = {"ours": speedup if speedup is not None else np.nan, "paper": paper_speedup}
    bx.bar(list(bars), list(bars.values()), 0.6, color=["C0", "white"], edgecolor="black",
           hatch=["", "//"], yerr=_yerr(list(bars.values()), [speedup_interval, None]),
           **ERRORBAR)
    bx.axhline(1, color="grey", linewidth=0.8, linestyle=":")
    bx.set_ylabel("teacher time / student time (×)")
    bx.set_ylim(0, max(2.2, *(v + 0.3 for v in bars.values() if np.isfinite(v))))
    bx.set_title("CPU speed-up, batch 1")
    for i, v in enumerate(bars.values()):
        top = (speedup_interval[1] if i == 0 and speedup_interval else v)
        bx.text(i, top if np.isfinite(v) else 0, f"{v:.2f}×" if np.isfinite(v) else "not run",
                ha="center", va="bottom")
    return fig


def paper_speedup() -> float:
    return TABLE3_SPEED["BERT-base (paper)"]["seconds"] / TABLE3_SPEED["DistilBERT (paper)"][
        "seconds"]


def dataset_pass_figure(times: Mapping[str, Sequence[float]], task: str) -> Any:
    fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    ax.boxplot(list(times.values()), tick_labels=list(times))
    ax.set_ylim(0, 1.1 * max(max(t) for t in times.values()))  # from 0: ratios read true
    ax.set_ylabel("seconds per dev-set pass")
    ax.set_xlabel("model (fp32, batch size 1)")
    ax.set_title(f"{task} dev, tokenisation excluded")
    return fig


def grid_figure(grid: Sequence[Mapping[str, Any]]) -> Any:
    """Latency per batch over sequence length, one line per model × batch size; legend
    outside the axes so it covers no line."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8), layout="constrained")
    models = list(dict.fromkeys(r["model"] for r in grid))
    batches = sorted({r["batch_size"] for r in grid})
    styles = ["-", "--", ":", "-."]
    for i, m in enumerate(models):
        for j, b in enumerate(batches):
            pts = sorted((r["seq_len"], r["latency_ms"]) for r in grid
                         if r["model"] == m and r["batch_size"] == b)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", color=f"C{i}",
                        linestyle=styles[j % len(styles)], label=f"{m}, batch {b}")
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("latency per batch (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("CPU latency over batch size and sequence length")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def latency_grid_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Latency vs batch size and vs sequence length (log-log), one line per model and size."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.ticker import ScalarFormatter

    if not rows:
        raise ValueError("no latency-grid rows to plot (was the grid switched off?)")
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    sns.lineplot(data=df, x="batch_size", y="latency_ms", hue="model", style="seq_len",
                 marker="o", ax=axes[0])
    sns.lineplot(data=df, x="seq_len", y="latency_ms", hue="model", style="batch_size",
                 marker="o", ax=axes[1])
    for ax, col, x in zip(axes, ("batch_size", "seq_len"), ("batch size", "sequence length"),
                          strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(df[col].unique()))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel(x)
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize="small", framealpha=0.6)
    axes[0].set_title("latency vs batch size")
    axes[1].set_title("latency vs sequence length")
    return fig


def passes_figure(res: Mapping[str, Any]) -> Any:
    """Every timed dev-set pass per model, with and without tokenisation."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=False, layout="constrained")
    for ax, key in zip(axes, ("without_tokenization", "with_tokenization"), strict=True):
        models = res["passes"][key]["models"]
        ax.boxplot([models[m]["times"] for m in models], tick_labels=list(models))
        ax.set_title(key.replace("_", " "))
        ax.set_ylabel("seconds per pass")
    fig.suptitle(f"{res['task']} dev, batch 1, {res['examples']} examples")
    return fig


def save_speed_plots(res: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """`speed.run_bench`'s latency grid and dev-set passes as PNG and SVG in `folder`."""
    paths = []
    for name, fig in (("speed_latency_grid", latency_grid_figure(res["grid"])),
                      ("speed_dataset_pass", passes_figure(res))):
        paths += save(fig, folder, name)
        plt.close(fig)
    return paths
