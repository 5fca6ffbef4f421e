"""Gather a profile's results files into the paper's tables, our rows beside the paper's.

Every file is read through its declaration in `results_files` (name and keys, beside its
one writer): `04_glue.json`'s "models" (per model its task scores and "score", the macro),
`05_downstream.json`'s (IMDb, SQuAD EM / F1), `06_speed.json`'s (Table 3's columns),
`deploy.json`'s int8 and ONNX rows, `glue_<model>.json`'s dev predictions, `03_distill.json`'s
ablation rows. The paper's rows come from `distil_utils.paper` and are labelled "(paper)".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .paper import GLUE_COLUMNS, TABLE1_GLUE, TABLE2_DOWNSTREAM, TABLE3_SPEED, TABLE4_ABLATION
from .results_files import (
    DISTILL,
    DOWNSTREAM,
    DOWNSTREAM_MODELS,
    GLUE,
    GLUE_MODEL,
    SPEED,
    SUMMARY,
)


def collect(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """`{file stem: metrics}` of every results file in a profile's directory."""
    from .artefacts import StaleArtefactError, stale_models
    from .results_io import read_json

    found, stale = {}, []
    for path in sorted(Path(out_dir).glob("*.json")):
        data = read_json(path)  # a damaged file is an error naming it
        if isinstance(data, dict) and "metrics" in data:
            found[path.stem] = data["metrics"]
            if models := stale_models(data.get("provenance") or {}):
                stale.append(f"{path.name}: {', '.join(models)}")
    if stale:  # one table must not mix the numbers of two different students
        raise StaleArtefactError(
            "these results describe models that have been made again since: "
            + "; ".join(stale) + ". Re-run the notebooks that wrote them (python -m "
            "distil_utils.tools.reproduce --profile PROFILE --skip-done re-runs exactly those).")
    return found


def with_retention(ours: dict[str, dict[str, float]], columns: list[str],
                   teacher: str = "teacher", student: str = "student") -> pd.DataFrame:
    """Our rows plus "retention %" = student / teacher × 100 per column."""
    rows = [{"model": name, **{c: vals.get(c) for c in columns}} for name, vals in ours.items()]
    if teacher in ours and student in ours:
        ret = {}
        for c in columns:
            t, s = ours[teacher].get(c), ours[student].get(c)
            ret[c] = round(100.0 * s / t, 1) if t not in (None, 0) and s is not None else None
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
    return pd.concat([mine, paper], ignore_index=True)


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
    from .intervals import macro_retention_interval, metric_interval, retention_interval
    from .metrics import glue_metrics, task_score

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


# Table 2's measures: (label, 05_downstream.json key, metric of each run's record)
DOWNSTREAM_MEASURES = (("IMDb accuracy", "imdb", "accuracy"), ("SQuAD EM", "squad", "exact_match"),
                       ("SQuAD F1", "squad", "f1"))


def downstream_intervals(results: dict[str, Any], teacher: str = "teacher") -> pd.DataFrame:
    """Table 2's scores with their 95% intervals, and each student's retention of the
    teacher's score with its paired interval (the same test examples resampled for both)."""
    from .intervals import mean_interval, retention_interval

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


def summary_tables(results: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of the summary notebook; empty frames where a notebook has not run."""
    from .targets import targets_table  # it reads glue_intervals from here

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
    from .results_io import atomic_write, provenance

    markdown = summary_markdown(tables, provenance(cfg, notebook="07_summary"))
    atomic_write(cfg.out / "summary.md", lambda p: p.write_text(markdown))
    SUMMARY.write({k: v.to_dict("records") for k, v in tables.items()}, cfg,
                  notebook="07_summary")
    return markdown
