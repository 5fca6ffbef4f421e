"""What each notebook section found, in words formatted from its numbers.

Every function takes the measurements a section computed and returns Markdown: what the paper
found, what we found, whether the two agree and, where they do not, the likely reason. The
text follows the numbers, so it stays true when a profile or a seed changes them. Nothing here
is a result; the paper's numbers come from `distil_utils.paper`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .config import NO_DISTILLATION
from .figures import TASK_NAMES
from .paper import TABLE1_GLUE, TABLE2_DOWNSTREAM, TABLE3_SPEED, TABLE4_ABLATION
from .results_files import DEPLOY_STUDENT

BERT = TABLE1_GLUE["BERT-base (paper)"]
DISTIL = TABLE1_GLUE["DistilBERT (paper)"]
PAPER_RETENTION = 100 * DISTIL["score"] / BERT["score"]  # 96.9%: the paper's "97%"
PAPER_SPEEDUP = TABLE3_SPEED["BERT-base (paper)"]["seconds"] / \
    TABLE3_SPEED["DistilBERT (paper)"]["seconds"]
# Below this F1 / accuracy margin a downstream number says the code ran, not what it measures.
PLUMBING_SQUAD_F1 = 40.0
PLUMBING_ACC_ABOVE_CHANCE = 5.0
TINY_NOTE = ("**Plumbing, not a result.** This profile's teacher is a tiny BERT trained for a "
             "few steps from random weights: the numbers show that the code runs end to end, "
             "not what DistilBERT achieves. Ratios of such near-chance scores can read far "
             "above 100% or at 0% (the `cpu`, `colab` and `paper` profiles use real pretrained "
             "teachers).")


def reading(paper: str, ours: str, verdict: str, why: str | None = None) -> str:
    verdict = verdict if verdict.endswith(".") else verdict + "."
    parts = [f"**Paper.** {paper}", f"**Here.** {ours}", f"**Agreement.** {verdict}"]
    if why:
        parts.append(f"**Why.** {why}")
    return "\n\n".join(parts)


def tiny_note(teacher: str) -> str:
    return f"\n\n> {TINY_NOTE}" if teacher == "tiny" else ""


def _share(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else float("nan")


def paper_retention(columns: Sequence[str]) -> dict[str, float]:
    """DistilBERT / BERT-base (%) per GLUE task, and the macro over exactly `columns`."""
    tasks = [c for c in columns if c != "score" and c in BERT]
    out = {c: 100 * DISTIL[c] / BERT[c] for c in tasks}
    if tasks:
        out["score"] = 100 * sum(DISTIL[c] for c in tasks) / sum(BERT[c] for c in tasks)
    return out


# --------------------------------------------------------------------------- notebook 01
def params_reading(params: Mapping[str, int]) -> str:
    total = sum(params.values())
    layers = [v for k, v in params.items() if k.startswith("layer")]
    emb = _share(params.get("embeddings", 0), total)
    per_layer = _share(layers[0], total) if layers else float("nan")
    return reading(
        "BERT-base: 23.8M of its 110M parameters (21.6%) are embeddings and each of its 12 "
        "layers holds 7.1M (6.4%); halving the layers gives 66M (40% smaller).",
        f"{total / 1e6:.1f}M parameters; embeddings {emb:.1f}%, one layer {per_layer:.1f}%, "
        f"{len(layers)} layers in all {_share(sum(layers), total):.1f}%.",
        "The same structure." if emb < 50 else
        "The embeddings dominate this teacher far more than BERT-base's.",
        None if emb < 50 else
        f"A narrow model keeps the 30,522-word vocabulary: halving its layers removes only "
        f"{_share(sum(layers), total) / 2:.1f}% of the parameters, not 40%.")


def cka_reading(cka: Any) -> str:
    n = len(cka)
    near = [float(cka[i][i + 1]) for i in range(1, n - 1)]
    two = [float(cka[i][i + 2]) for i in range(1, n - 2)]
    mean = sum(near) / len(near) if near else float("nan")
    mean2 = sum(two) / len(two) if two else float("nan")
    return reading(
        "The paper reports no layer-similarity measure; it initialises the student from one "
        "layer out of two, relying on neighbouring layers computing similar things.",
        f"Linear CKA between consecutive encoder layers: mean {mean:.2f} (range "
        f"{min(near, default=float('nan')):.2f}-{max(near, default=float('nan')):.2f}); "
        f"two layers apart: mean {mean2:.2f}.",
        "Consistent with the paper's premise." if mean >= 0.7 else
        "Neighbouring layers are less alike here than the premise assumes.",
        None if mean >= 0.7 else "A small or briefly trained teacher has layers that differ "
        "more; the layer-skipping choice then matters more (notebook 02).")


def mlm_reading(name: str, acc: float, n_masked: int, before: float | None = None) -> str:
    adapted = "" if before is None else f", {before:.1f}% before its masked-LM adaptation"
    return reading(
        "The paper reports no masked-token accuracy; its teacher is the fully pre-trained "
        "BERT-base.",
        f"The teacher ({name}) predicts {acc:.1f}% of {n_masked:,} held-out masked tokens "
        f"exactly{adapted}. This is the bar the student is held to in notebook 03.",
        "Not comparable with a paper number (none is given).")


# --------------------------------------------------------------------------- notebook 02
def init_reading(inits: Mapping[str, float], paper_name: str = "every other layer (paper)") -> str:
    """`inits`: held-out masked-token accuracy (%) of each initialisation, before training."""
    ranked = sorted(inits, key=inits.get, reverse=True)
    best, ours = ranked[0], inits[paper_name]
    verdict = (f"Agrees: the paper's choice is the best start here ({ours:.1f}%)."
               if best == paper_name else
               f"Not before training: '{best}' starts ahead ({inits[best]:.1f}% vs {ours:.1f}% "
               "for one layer out of two).")
    why = None if best == paper_name else (
        "The paper argues for layer skipping after distillation, not before it: what a "
        "student keeps of the teacher's depth matters once it is trained (Table 4 measures "
        "init only against random). An untrained student's score depends on how well its "
        "last layer's output suits the copied MLM head, which a contiguous block of layers "
        "may match better than a strided one. Only the paper's start and a random one are "
        "distilled in notebook 03 (its 'triple loss, random init' row); whether a contiguous "
        "start would end ahead after distillation is not measured here.")
    return reading(
        "Initialising from one layer out of two matters: random initialisation costs 3.69 "
        "GLUE points after distillation (Table 4).",
        "Held-out masked-token accuracy before any training: " + ", ".join(
            f"{k} {v:.1f}%" for k, v in inits.items()) + ".", verdict, why)


def size_reading(teacher: int, student: int, n_teacher: int, n_student: int) -> str:
    ratio = _share(student, teacher)
    return reading(
        "66M / 110M parameters = 60% (\"40% smaller\") for 6 of 12 layers.",
        f"{student / 1e6:.2f}M / {teacher / 1e6:.2f}M = {ratio:.1f}% for {n_student} of "
        f"{n_teacher} layers.",
        "Agrees (within 5 points)." if abs(ratio - 60) <= 5 else
        f"{'Smaller' if ratio < 60 else 'Larger'} share than the paper's.",
        None if abs(ratio - 60) <= 5 else "The embeddings' share of the teacher sets the ratio: "
        "the student keeps all of them (notebook 01).")


# --------------------------------------------------------------------------- notebook 03
def distill_reading(teacher: float, before: float, after: float, steps: int) -> str:
    gain = after - before
    return reading(
        "Distillation recovers most of the teacher: DistilBERT keeps 97% of BERT-base's GLUE "
        "score after 3 epochs of Wikipedia + BookCorpus (about 90 h on 8 V100s).",
        f"After {steps} steps held-out masked-token accuracy went from {before:.1f}% to "
        f"{after:.1f}% ({gain:+.1f} points); the teacher scores {teacher:.1f}%, so the student "
        f"reaches {_share(after, teacher):.0f}% of it.",
        "Distillation helps here too." if gain > 0 else "Distillation did not help here.",
        None if gain > 0 else f"{steps} steps is a tiny fraction of the paper's budget.")


def _interval_words(interval: Sequence[float] | None) -> str:
    if not interval or None in interval:
        return ""
    low, high = interval
    return (f" [{low:+.2f}, {high:+.2f}], "
            + ("within noise" if low <= 0 <= high else "resolvable"))


def ablation_reading(deltas: Mapping[str, float | None], measure: str,
                     intervals: Mapping[str, Sequence[float] | None] | None = None) -> str:
    """`deltas`: row -> our change of `measure` against the triple loss (points), with its
    paired 95% interval where `intervals` has one; rows the paper has no figure for (the
    undistilled student) are named too, with what they show."""
    paper = {k.replace(" (paper)", ""): v for k, v in TABLE4_ABLATION.items()}
    rows = [r for r in deltas if r in paper and r != "triple loss" and deltas[r] is not None]
    same = [r for r in rows if (deltas[r] < 0) == (paper[r] < 0)]
    ours = "; ".join(f"{r} {deltas[r]:+.2f}" + _interval_words((intervals or {}).get(r))
                     for r in rows)
    extra = [r for r in deltas if r not in paper and deltas[r] is not None]

    def undistilled(delta: float, ci: Sequence[float] | None) -> str:
        if not ci or None in ci:
            return ""
        if ci[0] <= 0 <= ci[1]:
            return " (the distilled student is not resolvably ahead of the undistilled one)"
        return (" (distillation helps, resolvably)" if delta < 0
                else " (the undistilled student is resolvably ahead)")

    beyond = "; ".join(
        f"{r} {deltas[r]:+.2f}" + _interval_words((intervals or {}).get(r))
        + (undistilled(deltas[r], (intervals or {}).get(r)) if r == NO_DISTILLATION else "")
        for r in extra)
    return reading(
        "Every term helps (Δ GLUE macro vs the triple loss): " + "; ".join(
            f"{r} {v:+.2f}" for r, v in paper.items() if r != "triple loss") + ".",
        f"Δ {measure}: {ours}." + (f" Beyond the paper's rows: {beyond}." if beyond else ""),
        f"{len(same)} of {len(rows)} rows move in the paper's direction"
        + (f" ({', '.join(same)})." if same else "."),
        None if len(same) == len(rows) else
        "Our measure is not the paper's (a held-out masked-LM or SST-2 score after a short "
        "run, not GLUE after 3 epochs), one seed each, with a weaker teacher: a term that copies "
        "a weak teacher's distribution (L_ce) can hold back a student that already matches "
        "it, and differences under a point are within seed noise.")


# --------------------------------------------------------------------------- notebook 04
def glue_reading(models: Mapping[str, Mapping[str, float | None]], skipped: Mapping[str, str],
                 n_seeds: int) -> str:
    t, s = models.get("teacher", {}), models.get("student", {})
    tasks = [c for c in t if c != "score" and t.get(c) is not None]
    if not tasks or not t.get("score"):
        return "No GLUE task ran."
    ret = 100 * s["score"] / t["score"]
    pr = paper_retention(tasks)["score"]
    scored = [c for c in tasks if t[c] > 0 and s.get(c) is not None]  # a ratio needs t > 0
    worst = min(scored, key=lambda c: s[c] / t[c]) if scored else None
    seeds = f"median of {n_seeds} seeds" if n_seeds > 1 else "one seed (the paper: median of 5)"
    skip = f" Skipped (no data): {', '.join(sorted(skipped))}." if skipped else ""
    return reading(
        f"DistilBERT keeps {PAPER_RETENTION:.1f}% of BERT-base's 9-task macro score "
        f"({DISTIL['score']} / {BERT['score']}); over the {len(tasks)} tasks run here, the "
        f"paper's columns give {pr:.1f}%.",
        f"The student keeps {ret:.1f}% of the teacher's {len(tasks)}-task macro score "
        f"({s['score']:.1f} / {t['score']:.1f}), {seeds}"
        + (f"; its weakest task is {worst} ({100 * s[worst] / t[worst]:.0f}%)" if worst else "")
        + f".{skip}",
        f"Within {abs(ret - pr):.1f} points of the paper on the same tasks"
        if abs(ret - pr) <= 3 else f"{pr - ret:.1f} points below the paper on the same tasks"
        if ret < pr else f"{ret - pr:.1f} points above the paper on the same tasks",
        None if abs(ret - pr) <= 3 else
        "The paper distils for 3 epochs of a 3.3B-word corpus from a fully pre-trained "
        "BERT-base; this profile's budget is orders of magnitude smaller, and small tasks "
        "(CoLA, STS-B, RTE) move by points between seeds.")


# --------------------------------------------------------------------------- notebook 05
def _f(x: float | None, nd: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def downstream_reading(models: Mapping[str, Mapping[str, float | None]]) -> str:
    t, s = models.get("teacher", {}), models.get("student", {})
    d = models.get("student (D)", {})
    pb, pd_ = TABLE2_DOWNSTREAM["BERT-base (paper)"], TABLE2_DOWNSTREAM["DistilBERT (paper)"]
    pdd = TABLE2_DOWNSTREAM["DistilBERT (D) (paper)"]
    weak = []
    if (t.get("squad_f1") or 0) < PLUMBING_SQUAD_F1:
        weak.append(f"SQuAD F1 {_f(t.get('squad_f1'))}, below {PLUMBING_SQUAD_F1:.0f}")
    if (t.get("imdb") or 0) < 50 + PLUMBING_ACC_ABOVE_CHANCE:
        weak.append(f"IMDb {_f(t.get('imdb'))}%, within {PLUMBING_ACC_ABOVE_CHANCE:.0f} "
                    "points of chance")
    plumbing = bool(weak)
    return reading(
        f"IMDb accuracy {pb['imdb']} → {pd_['imdb']} (−{pb['imdb'] - pd_['imdb']:.2f} "
        f"points); SQuAD F1 {pb['squad_f1']} → {pd_['squad_f1']}, {pdd['squad_f1']} with "
        "the SQuAD teacher's distillation (D).",
        f"Teacher → student: IMDb accuracy {_f(t.get('imdb'))} → {_f(s.get('imdb'))}; SQuAD "
        f"F1 {_f(t.get('squad_f1'))} → {_f(s.get('squad_f1'))}, {_f(d.get('squad_f1'))} "
        "with (D).",
        "Not a result: at this scale these scores are plumbing, not a measurement of the "
        "paper's claim." if plumbing else
        "Compare the gaps (teacher − student) rather than the levels.",
        f"The teacher itself barely learnt the task ({'; '.join(weak)}): the profile "
        "fine-tunes on a small sample for one epoch, and a retention ratio of such numbers "
        "means nothing." if plumbing else None)


# --------------------------------------------------------------------------- notebook 06
def speed_reading(speedup: float, params_ratio: float, threads: int, n: int) -> str:
    return reading(
        f"BERT-base 668 s, DistilBERT 410 s for STS-B dev at batch 1 on a CPU: "
        f"{PAPER_SPEEDUP:.2f}× faster with 60% of the parameters.",
        f"The student is {speedup:.2f}× faster than the teacher ({n} STS-B dev sentences, "
        f"batch 1, {threads} threads) with {params_ratio:.0f}% of its parameters.",
        "As fast as the paper or faster." if speedup >= PAPER_SPEEDUP - 0.05 else
        f"Slower than the paper's {PAPER_SPEEDUP:.2f}×.",
        None if speedup >= PAPER_SPEEDUP - 0.05 else "Per-call overhead (tokeniser, Python, "
        "the embeddings) does not shrink with depth and weighs more on a small model and a "
        "short pass; raise bench_max_examples / bench_repeats for a steadier figure.")


def deploy_reading(rows: Mapping[str, Mapping[str, Any]]) -> str:
    fp32 = rows.get(DEPLOY_STUDENT, {})
    parts = []
    for name, r in rows.items():
        if name.startswith("student") and name != DEPLOY_STUDENT:
            drop = fp32.get("accuracy", float("nan")) - r["accuracy"]
            parts.append(f"{name} is {r['speedup_vs_teacher']:.1f}× faster than the fp32 "
                         f"teacher and {'loses' if drop >= 0 else 'gains'} {abs(drop):.2f} "
                         "points of accuracy against the fp32 student")
    return reading(
        "The paper measures no quantised model (its extra deployment study is on an iPhone).",
        "; ".join(parts) + "." if parts else "No quantised variant ran.",
        "Beyond the paper: no comparison to make.")


# --------------------------------------------------------------------------- notebook 07
def closing_reading(targets: Sequence[Mapping[str, Any]], teacher: str) -> str:
    met = [t["target"] for t in targets if t["result"] == "met"]
    missed = [t for t in targets if t["result"] == "MISSED"]
    not_run = [t["target"] for t in targets if t["result"] == "not run"]
    noise = [t for t in targets if t["result"] == "within noise"]
    lines = [f"Of the suite's {len(targets)} targets, **{len(met)} met**, "
             f"**{len(missed)} missed**, {len(noise)} within noise (the 95% interval "
             f"straddles the bound), {len(not_run)} not run.", ""]
    lines += [f"- MISSED: {t['target']} (measured {t['measured']:.2f}{_ci(t)}, bound "
              f"{t['bound']})" for t in missed if t.get("measured") is not None]
    lines += [f"- within noise: {t['target']} (measured {t['measured']:.2f}{_ci(t)}, bound "
              f"{t['bound']})" for t in noise]
    lines.append("\nThe paper's headline (97% of BERT-base's GLUE score, 40% smaller, 60% "
                 "faster) is measured at the paper's scale; the rows above are this profile's "
                 "scale, labelled as ours.")
    return "\n".join(lines) + tiny_note(teacher)


def _ci(target: Mapping[str, Any]) -> str:
    lo, hi = target.get("95% low"), target.get("95% high")
    return "" if lo is None or hi is None or lo != lo else f", 95% interval {lo:.2f}–{hi:.2f}"


# --------------------------------------------------------------------------- tables
# What a reader sees instead of the results files' keys, wherever `tidy` shows a table.
COLUMN_NAMES = {
    "mlm_loss": "held-out MLM loss (nats)", "mlm_acc": "masked-token accuracy (%)",
    "mlm_acc_low": "accuracy 95% low", "mlm_acc_high": "accuracy 95% high",
    "n_masked": "masked tokens", "n_sequences": "held-out sequences",
    "delta": "Δ accuracy (points)", "delta_low": "Δ 95% low", "delta_high": "Δ 95% high",
    "batch_size": "batch size", "seq_len": "sequence length (tokens)",
    "latency_ms": "latency (ms)",
}


def human_name(column: Any) -> Any:
    """`COLUMN_NAMES`' name for a key, also before " vs ..." ("delta_low vs teacher")."""
    head, sep, tail = str(column).partition(" vs ")
    if head in COLUMN_NAMES:
        return COLUMN_NAMES[head] + (f" vs {tail}" if sep else "")
    return column


def tidy(df: Any, decimals: int = 2, columns: Mapping[str, str] | None = None) -> Any:
    """`df` rounded, with numeric object columns (numbers mixed with None) made numeric
    first so that they round too, and columns renamed: `columns` first (e.g. to carry their
    units), else the human names of `COLUMN_NAMES`; index names too."""
    import pandas as pd

    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            num = pd.to_numeric(df[c], errors="coerce")
            if num.notna().sum() == df[c].notna().sum() and num.notna().any():
                df[c] = num
    names = {c: human_name(c) for c in df.columns} | dict(columns or {})
    df.index.names = [human_name(n) if n is not None else None for n in df.index.names]
    return df.round(decimals).rename(columns=names)


def glue_frame(table: Any, tasks: Sequence[str]) -> Any:
    """Table 1 with one comparable macro column: ours over the tasks run, the paper's rows
    over the same tasks (from its own columns), and the paper's 9-task figure beside it."""
    df = table.copy()
    paper = df.model.str.endswith("(paper)")
    cols = [t for t in tasks if t in df.columns]
    df.insert(1, f"macro, {len(cols)} tasks (%)", df["score"])
    df.loc[paper, f"macro, {len(cols)} tasks (%)"] = df.loc[paper, cols].mean(axis=1)
    df.insert(2, "macro, 9 tasks (paper, %)", df["score"].where(paper))
    df = df.drop(columns="score")

    return tidy(df, 1, {c: f"{TASK_NAMES.get(c, c)} (%)" for c in cols}).set_index("model")
