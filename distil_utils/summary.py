"""Gather a profile's results files into the paper's tables, our rows beside the paper's.

Every file is read through its declaration in `results_files` (name and keys, beside its
one writer): `04_glue.json`'s "models" (per model its task scores and "score", the macro),
`05_downstream.json`'s (IMDb, SQuAD EM / F1), `06_speed.json`'s (Table 3's columns),
`deploy.json`'s int8 and ONNX rows, `glue_<model>.json`'s dev predictions, `03_distill.json`'s
ablation rows. The paper's rows come from `distil_utils.paper` and are labelled "(paper)".

The suite's own targets are judged on their 95% intervals: "met" only when the whole interval
clears the bound, "MISSED" when it wholly misses it, "within noise" when it straddles it, "not
run" when no results say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artefacts import StaleArtefactError, provenance, stale_models
from .config import NO_DISTILLATION
from .intervals import macro_retention_interval, mean_interval, metric_interval, retention_interval
from .metrics import glue_metrics, task_score
from .paper import GLUE_COLUMNS, TABLE1_GLUE, TABLE2_DOWNSTREAM, TABLE3_SPEED, TABLE4_ABLATION
from .results_files import (
    BENCH,
    DEPLOY,
    DEPLOY_ONNX_INT8,
    DEPLOY_STUDENT,
    DEPLOY_TORCH_INT8,
    DISTILL,
    DOWNSTREAM,
    DOWNSTREAM_MODELS,
    GLUE,
    GLUE_MODEL,
    SPEED,
    SUMMARY,
)
from .results_io import atomic_write, read_json
from .speed import reported_speedup


def collect(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """`{file stem: metrics}` of every results file in a profile's directory."""
    found, stale = {}, []
    for path in sorted(Path(out_dir).glob("*.json")):
        data = read_json(path)  # a damaged file is an error naming it
        if isinstance(data, dict) and "metrics" in data:
            found[path.stem] = data["metrics"]
            if models := stale_models(data.get("provenance") or {}, out_dir):
                stale.append(f"{path.name}: {', '.join(models)}")
    if stale:  # one table must not mix the numbers of two different students
        raise StaleArtefactError(
            "these results describe models that have been made again since: "
            + "; ".join(stale) + ". Re-run the notebooks that wrote them (python -m "
            "distil_utils.tools.reproduce --profile PROFILE --skip-done re-runs exactly those).")
    return found


def with_retention(ours: dict[str, dict[str, float]], columns: list[str],
                   teacher: str = "teacher", student: str = "student") -> pd.DataFrame:
    """Our rows plus "retention %" = student / teacher × 100 per column, unrounded so that it
    equals the interval tables' point estimate at every displayed precision."""
    rows = [{"model": name, **{c: vals.get(c) for c in columns}} for name, vals in ours.items()]
    if teacher in ours and student in ours:
        ret = {}
        for c in columns:
            t, s = ours[teacher].get(c), ours[student].get(c)
            ret[c] = 100.0 * s / t if t not in (None, 0) and s is not None else None
        rows.append({"model": f"retention % ({student} / {teacher})", **ret})
    return pd.DataFrame(rows)


def _paper_rows(table: dict[str, dict[str, float]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": name, **{c: vals.get(c) for c in columns}}
                         for name, vals in table.items()])


def _present(df: pd.DataFrame, key: str = "model") -> pd.DataFrame:
    """Drop columns that no row fills (tasks the profile did not run; "" counts as empty)."""
    keep = [key] + [c for c in df.columns
                    if c != key and (df[c].notna() & (df[c] != "")).any()]
    return df[keep]


def glue_table(results: dict[str, Any]) -> pd.DataFrame:
    cols = list(GLUE_COLUMNS)
    ours = GLUE.get(results, "models", {})
    if not ours:
        return pd.DataFrame()
    mine = _present(with_retention(ours, cols))
    paper = _paper_rows(TABLE1_GLUE, cols)[mine.columns]
    return pd.concat([mine, paper], ignore_index=True)


def downstream_table(results: dict[str, Any]) -> pd.DataFrame:
    cols = ["imdb", "squad_em", "squad_f1"]
    ours = DOWNSTREAM.get(results, "models", {})
    if not ours:
        return pd.DataFrame()
    return pd.concat([with_retention(ours, cols), _paper_rows(TABLE2_DOWNSTREAM, cols)],
                     ignore_index=True)


def speed_table(results: dict[str, Any]) -> pd.DataFrame:
    ours = SPEED.get(results, "models", {})
    if not ours:
        return pd.DataFrame()
    cols = sorted({k for v in ours.values() for k in v})
    mine = with_retention(ours, cols)
    mine.loc[mine.model.str.startswith("retention"), "model"] = "student / teacher %"
    paper = _paper_rows(TABLE3_SPEED, ["params_m", "seconds"])
    return pd.concat([mine, shapes_rows(results), paper], ignore_index=True)


def shapes_rows(results: dict[str, Any]) -> pd.DataFrame:
    """Table 3's own comparison timed here: BERT-base and DistilBERT-base *shapes* (random
    weights: speed does not depend on their values) over the paper's STS-B dev set at batch
    1, as `speed.paper_shapes` measured it (empty where it was switched off)."""
    shapes = BENCH.get(results, "paper_shapes") or {}
    if not shapes.get("seconds"):
        return pd.DataFrame()
    where = f"{shapes['examples']} STS-B pairs, random weights (ours)"
    return pd.DataFrame([{"model": f"{name}, {where}", "params_m": shapes["params_m"][name],
                          "seconds": seconds}
                         for name, seconds in shapes["seconds"].items()])


def _verdict(resolvable: bool | None) -> str:
    return "" if resolvable is None else "yes" if resolvable else "within noise"


def ablation_table(results: dict[str, Any]) -> pd.DataFrame:
    """Table 4 at this scale: each row's held-out MLM accuracy and SST-2 dev accuracy, its
    difference from the triple loss with the paired 95% interval that notebook 03 (MLM) and
    04 (SST-2) stored, and whether the difference is resolvable (the interval excludes 0).
    Columns no row fills are dropped (notebook 04 shows its SST-2 rows alone)."""
    sst2 = GLUE.get(results, "ablation_sst2", {})
    deltas = GLUE.get(results, "ablation_sst2_delta", {})
    rows = DISTILL.get(results, "ablation", []) or [{"row": r} for r in sst2]  # 04 alone
    if not rows:
        return pd.DataFrame()
    paper = {k.replace(" (paper)", ""): v for k, v in TABLE4_ABLATION.items()}
    table = []
    for r in rows:
        base = r["row"] == "triple loss"
        d = {} if base else deltas.get(r["row"], {})
        low, high = d.get("interval", [None, None])
        table.append({
            "row": r["row"], "held-out MLM acc": r.get("mlm_acc"),
            "held-out MLM loss": r.get("mlm_loss"),
            "Δ MLM acc": None if base else r.get("delta"),
            "Δ MLM 95% low": None if base else r.get("delta_low"),
            "Δ MLM 95% high": None if base else r.get("delta_high"),
            "Δ MLM resolvable": _verdict(None if base else r.get("resolvable")),
            "SST-2 dev acc": sst2.get(r["row"]), "Δ SST-2 vs triple loss": d.get("delta"),
            "Δ SST-2 95% low": low, "Δ SST-2 95% high": high,
            "Δ SST-2 resolvable": _verdict(d.get("resolvable")),
            "Δ GLUE macro (paper)": paper.get(r["row"])})
    return _present(pd.DataFrame(table), key="row")


def glue_intervals(results: dict[str, Any], teacher: str = "teacher",
                   student: str = "student") -> pd.DataFrame:
    """Each GLUE task's score with its 95% interval, and the student's retention with its
    paired interval (both models resampled on the same dev examples); a last row for the
    macro score. From the first seed's dev predictions in `glue_<model>.json`; where several
    seeds ran, each model's median and range across them beside."""
    t_dev = GLUE_MODEL.get(results, "dev", {}, name=teacher)
    s_dev = GLUE_MODEL.get(results, "dev", {}, name=student)
    runs = {who: GLUE_MODEL.get(results, "runs", {}, name=name)
            for who, name in (("teacher", teacher), ("student", student))}

    def across_seeds(who: str, task: str) -> dict[str, float]:
        """The paper's median of several fine-tuning seeds, and their range."""
        scores = [task_score(task, m) for m in runs[who].get(task, [])]
        if len(scores) < 2:
            return {}
        return {f"{who} seeds": len(scores), f"{who} median": float(np.median(scores)),
                f"{who} seed min": min(scores), f"{who} seed max": max(scores)}

    rows, macro = [], {}
    for task in [t for t in t_dev if t in s_dev and t != "mnli" and t_dev[t] and s_dev[t]]:
        split = next(iter(t_dev[task][0]))  # the task's one dev split
        if split not in s_dev[task][0]:
            continue
        td, sd = t_dev[task][0][split], s_dev[task][0][split]
        y = td["labels"]

        def score(p: Any, labels: Any, task: str = task) -> float:
            return task_score(task, glue_metrics(task, p, labels))

        tp, sp = td["predictions"], sd["predictions"]
        t_score, s_score = score(tp, y), score(sp, y)
        t_ci, s_ci = metric_interval(score, tp, y), metric_interval(score, sp, y)
        ret = 100.0 * s_score / t_score if t_score else float("nan")
        r_ci = retention_interval(score, tp, sp, y)
        rows.append({"task": task, "teacher": t_score, "teacher 95% low": t_ci[0],
                     "teacher 95% high": t_ci[1], "student": s_score,
                     "student 95% low": s_ci[0], "student 95% high": s_ci[1],
                     "retention %": ret, "retention 95% low": r_ci[0],
                     "retention 95% high": r_ci[1], "dev examples": len(y),
                     **across_seeds("teacher", task), **across_seeds("student", task)})
        macro[task] = (score, tp, sp, y)
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    lo, hi = macro_retention_interval(macro)
    t_macro, s_macro = df["teacher"].mean(), df["student"].mean()
    df.loc[len(df)] = {"task": "macro (these tasks)", "teacher": t_macro, "student": s_macro,
                       "retention %": 100.0 * s_macro / t_macro, "retention 95% low": lo,
                       "retention 95% high": hi, "dev examples": int(df["dev examples"].sum())}
    return df


def glue_figure_intervals(intervals: pd.DataFrame) -> dict[str, dict[str, tuple[float, float]]]:
    """`glue_intervals`' table as the figures take it: {"teacher"/"student": {task: (low,
    high)}, "retention": {task or "score": (low, high)}} (the macro row is "score")."""
    out: dict[str, dict[str, tuple[float, float]]] = {"teacher": {}, "student": {},
                                                      "retention": {}}
    for row in intervals.to_dict("records") if len(intervals) else []:
        key = "score" if str(row["task"]).startswith("macro") else row["task"]
        for who, col in (("teacher", "teacher"), ("student", "student"),
                         ("retention", "retention")):
            low, high = row.get(f"{col} 95% low"), row.get(f"{col} 95% high")
            if low is not None and high is not None and np.isfinite([low, high]).all():
                out[who][key] = (float(low), float(high))
    return out


# Table 2's measures: (label, 05_downstream.json key, metric of each run's record)
DOWNSTREAM_MEASURES = (("IMDb accuracy", "imdb", "accuracy"), ("SQuAD EM", "squad", "exact_match"),
                       ("SQuAD F1", "squad", "f1"))


def downstream_intervals(results: dict[str, Any], teacher: str = "teacher") -> pd.DataFrame:
    """Table 2's scores with their 95% intervals, and each student's retention of the
    teacher's score with its paired interval (the same test examples resampled for both)."""
    def mean(v: Any, _: Any) -> float:
        return float(np.mean(v))

    rows = []
    for label, key, metric in DOWNSTREAM_MEASURES:
        runs = DOWNSTREAM.get(results, key, {})
        ref = (runs.get(teacher) or {}).get("per_example", {}).get(metric)
        for model in DOWNSTREAM_MODELS:
            scores = (runs.get(model) or {}).get("per_example", {}).get(metric)
            if scores is None:
                continue
            low, high = mean_interval(scores)
            row = {"measure": label, "model": model, "score": mean(scores, None),
                   "95% low": low, "95% high": high, "examples": len(scores)}
            if model != teacher and ref is not None and len(ref) == len(scores):
                zeros = np.zeros(len(scores))
                r_low, r_high = retention_interval(mean, ref, scores, zeros)
                t = mean(ref, None)
                row |= {"retention %": 100.0 * row["score"] / t if t else float("nan"),
                        "retention 95% low": r_low, "retention 95% high": r_high}
            rows.append(row)
    return pd.DataFrame(rows)


def mlm_table(results: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(DISTILL.get(results, "held_out_mlm", []))


# ------------------------------------------------- the suite's targets, judged
# Each int8 variant of deploy.json: key -> (name in the targets, row in deploy.json).
INT8_VARIANTS = {"torch_int8": ("int8 (torch)", DEPLOY_TORCH_INT8),
                 "onnx_int8": ("ONNX int8", DEPLOY_ONNX_INT8)}
# The suite's own targets (not the paper's): name -> (figure, comparison, bound).
TARGETS = {
    "student keeps >= 95% of the teacher's SST-2 dev accuracy": ("sst2_retention", ">=", 95.0),
    "student keeps >= 90% of the teacher's GLUE macro score": ("macro_retention", ">=", 90.0),
    "student beats every ablation row on SST-2 dev": ("sst2_margin_over_ablations", ">", 0.0),
    "distilled student beats the undistilled layer-skipped one on SST-2 dev":
        ("sst2_gain_over_undistilled", ">", 0.0),
    "student beats every ablation row on held-out MLM accuracy":
        ("mlm_margin_over_ablations", ">", 0.0),
    "student >= 1.8x faster than the teacher (STS-B dev, batch 1, no tokenisation)":
        ("speedup", ">=", 1.8),
    "student >= 1.9x faster than the teacher (same protocol)": ("speedup", ">=", 1.9),
    **{f"{name} student >= 3x faster than the fp32 teacher (SST-2 dev, batch 1)":
       (f"{k}_speedup", ">=", 3.0) for k, (name, _) in INT8_VARIANTS.items()},
    **{f"{name} student loses <= 1 point of SST-2 dev accuracy vs the fp32 student":
       (f"{k}_accuracy_drop", "<=", 1.0) for k, (name, _) in INT8_VARIANTS.items()},
}


def _deploy_rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """deploy.json's rows: every deployable form of the student."""
    return DEPLOY.get(results, "models", {})


def _margin(rows: dict[str, float | None], ours: str = "triple loss") -> float | None:
    """Our row minus the best other row (positive = ours beats every ablation)."""
    others = [v for k, v in rows.items() if k != ours and v is not None]
    if rows.get(ours) is None or not others:
        return None
    return float(rows[ours]) - max(others)


def _negated(interval: Any) -> tuple[float, float]:
    """The interval of -x from that of x (0.0 - v: no "-0.00" in the tables)."""
    return 0.0 - interval[1], 0.0 - interval[0]


def target_intervals(results: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """95% intervals of the targets' figures, where the results hold what they need."""
    out: dict[str, tuple[float, float]] = {}
    glue = glue_intervals(results)
    if len(glue):
        by_task = glue.set_index("task")
        for key, row in (("sst2_retention", "sst2"), ("macro_retention", "macro (these tasks)")):
            if row in by_task.index:
                out[key] = (by_task.loc[row, "retention 95% low"],
                            by_task.loc[row, "retention 95% high"])
    deltas = GLUE.get(results, "ablation_sst2_delta", {})
    others = {r: d for r, d in deltas.items() if r != "triple loss"}
    if others:  # our margin over the best other row: minus that row's paired difference
        best = max(others, key=lambda r: others[r]["delta"])
        out["sst2_margin_over_ablations"] = _negated(others[best]["interval"])
    mlm = [r for r in DISTILL.get(results, "ablation", [])
           if r["row"] != "triple loss" and r.get("delta_low") is not None]
    if mlm:  # the same on held-out masked tokens (paired per sequence, notebook 03)
        best = max(mlm, key=lambda r: r["delta"])
        out["mlm_margin_over_ablations"] = _negated((best["delta_low"], best["delta_high"]))
    if NO_DISTILLATION in deltas:
        out["sst2_gain_over_undistilled"] = _negated(deltas[NO_DISTILLATION]["interval"])
    if (speed := reported_speedup(SPEED.get(results, "ratios", {}))[1]) is not None:
        out["speedup"] = speed
    deploy = _deploy_rows(results)
    for key, (_, row) in INT8_VARIANTS.items():
        if deploy.get(row, {}).get("accuracy_drop_interval"):
            out[f"{key}_accuracy_drop"] = tuple(deploy[row]["accuracy_drop_interval"])
        if deploy.get(row, {}).get("speedup_interval"):
            out[f"{key}_speedup"] = tuple(deploy[row]["speedup_interval"])
    return out


def target_measurements(results: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets are judged on, from the results files (None = not run)."""
    glue = GLUE.get(results, "models", {})
    t, s = glue.get("teacher", {}), glue.get("student", {})

    def ratio(key: str) -> float | None:
        if t.get(key) in (None, 0) or s.get(key) is None:
            return None
        return 100.0 * s[key] / t[key]

    mlm = {r["row"]: r.get("mlm_acc") for r in DISTILL.get(results, "ablation", [])}
    sst2_rows = GLUE.get(results, "ablation_sst2", {})
    ratios = SPEED.get(results, "ratios", {})
    deploy = _deploy_rows(results)
    fp32 = deploy.get(DEPLOY_STUDENT, {})
    int8: dict[str, float | None] = {}
    for key, (_, row) in INT8_VARIANTS.items():
        r = deploy.get(row, {})
        # the paired ratio where its interval was measured, as for the main speed-up
        int8[f"{key}_speedup"] = (r.get("speedup_paired") if r.get("speedup_interval")
                                  else r.get("speedup_vs_teacher"))
        int8[f"{key}_accuracy_drop"] = (fp32["accuracy"] - r["accuracy"]
                                        if "accuracy" in fp32 and "accuracy" in r else None)
    return {
        "sst2_retention": ratio("sst2"), "macro_retention": ratio("score"),
        "sst2_margin_over_ablations": _margin(sst2_rows),
        "sst2_gain_over_undistilled": _margin({k: sst2_rows.get(k) for k in
                                               ("triple loss", NO_DISTILLATION)}),
        "mlm_margin_over_ablations": _margin(mlm),
        "speedup": reported_speedup(ratios)[0], **int8,
    }


def judge(value: float | None, op: str, bound: float,
          interval: tuple[float, float] | None = None) -> str:
    """"met" / "MISSED" / "within noise" (the 95% interval straddles the bound) / "not run".

    Without an interval the point value decides; with one, only an interval wholly on one
    side of the bound does.
    """
    ops = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b}
    if value is None:
        return "not run"
    if interval is None or any(v != v for v in interval):  # NaN: too few data for one
        return "met" if ops[op](value, bound) else "MISSED"
    lo, hi = interval
    good, bad = (lo, hi) if op in (">=", ">") else (hi, lo)
    if ops[op](good, bound):
        return "met"
    if not ops[op](bad, bound):
        return "MISSED"
    return "within noise"


def targets_table(results: dict[str, Any]) -> pd.DataFrame:
    """Each target with the measured figure, its 95% interval where known, and the verdict."""
    measured, intervals = target_measurements(results), target_intervals(results)
    rows = []
    for name, (key, op, bound) in TARGETS.items():
        value, ci = measured.get(key), intervals.get(key)
        rows.append({"target": name, "metric": key, "measured": value,
                     "95% low": ci[0] if ci else None, "95% high": ci[1] if ci else None,
                     "bound": f"{op} {bound:g}", "result": judge(value, op, bound, ci)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ the summary
def summary_tables(results: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of the summary notebook; empty frames where a notebook has not run."""
    return {"targets": targets_table(results), "glue": glue_table(results),
            "glue intervals": glue_intervals(results),
            "downstream": downstream_table(results),
            "downstream intervals": downstream_intervals(results), "speed": speed_table(results),
            "ablation": ablation_table(results), "mlm": mlm_table(results)}


def summary_markdown(tables: dict[str, pd.DataFrame], prov: dict[str, Any]) -> str:
    """The tables as Markdown under a header that says which run produced them."""
    v = prov.get("versions", {})
    head = (f"Produced by `{prov.get('command')}` (profile `{prov.get('profile')}`, seed "
            f"{prov.get('seed')}, {prov.get('created')}; torch {v.get('torch')}, transformers "
            f"{v.get('transformers')}). Rows marked *(paper)* are the paper's numbers, not ours.")
    parts = [f"### {name}\n\n{table.to_markdown(index=False, floatfmt='.2f')}"
             for name, table in tables.items() if len(table)]
    return "\n\n".join([head, *parts]) + "\n"


def write_summary(cfg: Any, tables: dict[str, pd.DataFrame]) -> str:
    """`summary.md` and `summary.json` in the profile's directory, atomically; the Markdown."""
    markdown = summary_markdown(tables, provenance(cfg, notebook="07_summary"))
    atomic_write(cfg.out / "summary.md", lambda p: p.write_text(markdown))
    SUMMARY.write({k: v.to_dict("records") for k, v in tables.items()}, cfg,
                  notebook="07_summary")
    return markdown
