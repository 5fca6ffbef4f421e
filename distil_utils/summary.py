"""Gather a profile's results files into the paper's tables, our rows beside the paper's.

Each notebook writes one `NN_*.json` with a `metrics` block in a fixed shape:
`04_glue.json` → `{"models": {name: {task: score, "score": macro}}, "ablation_sst2": {...}}`,
`05_downstream.json` → `{"models": {name: {"imdb", "squad_em", "squad_f1"}}}`,
`06_speed.json` → `{"models": {name: {"params_m", "disk_mb", "seconds", ...}}}`.
The paper's rows come from `distil_utils.paper` and are labelled "(paper)".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .paper import GLUE_COLUMNS, TABLE1_GLUE, TABLE2_DOWNSTREAM, TABLE3_SPEED, TABLE4_ABLATION


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


def _present(df: pd.DataFrame) -> pd.DataFrame:
    """Drop columns that no row fills (tasks the profile did not run)."""
    keep = ["model"] + [c for c in df.columns if c != "model" and df[c].notna().any()]
    return df[keep]


def glue_table(results: dict[str, Any]) -> pd.DataFrame:
    cols = list(GLUE_COLUMNS)
    ours = results.get("04_glue", {}).get("models", {})
    if not ours:
        return pd.DataFrame()
    mine = _present(with_retention(ours, cols))
    paper = _paper_rows(TABLE1_GLUE, cols)[mine.columns]
    return pd.concat([mine, paper], ignore_index=True)


def downstream_table(results: dict[str, Any]) -> pd.DataFrame:
    cols = ["imdb", "squad_em", "squad_f1"]
    ours = results.get("05_downstream", {}).get("models", {})
    if not ours:
        return pd.DataFrame()
    return pd.concat([with_retention(ours, cols), _paper_rows(TABLE2_DOWNSTREAM, cols)],
                     ignore_index=True)


def speed_table(results: dict[str, Any]) -> pd.DataFrame:
    ours = results.get("06_speed", {}).get("models", {})
    if not ours:
        return pd.DataFrame()
    cols = sorted({k for v in ours.values() for k in v})
    mine = with_retention(ours, cols)
    mine.loc[mine.model.str.startswith("retention"), "model"] = "student / teacher %"
    paper = _paper_rows(TABLE3_SPEED, ["params_m", "seconds"])
    return pd.concat([mine, paper], ignore_index=True)


def ablation_table(results: dict[str, Any]) -> pd.DataFrame:
    rows = results.get("03_distill", {}).get("ablation", [])
    if not rows:
        return pd.DataFrame()
    sst2 = results.get("04_glue", {}).get("ablation_sst2", {})
    df = pd.DataFrame([{"row": r["row"], "held-out MLM acc": r["mlm_acc"],
                        "held-out MLM loss": r["mlm_loss"], "SST-2 dev acc": sst2.get(r["row"])}
                       for r in rows])
    base = df.loc[df.row == "triple loss", "SST-2 dev acc"]
    if len(base) and base.notna().all():
        df["Δ SST-2 vs triple loss"] = df["SST-2 dev acc"] - float(base.iloc[0])
    paper = {k.replace(" (paper)", ""): v for k, v in TABLE4_ABLATION.items()}
    df["Δ GLUE macro (paper)"] = df.row.map(paper)
    return df


def glue_intervals(results: dict[str, Any], teacher: str = "teacher",
                   student: str = "student") -> pd.DataFrame:
    """Each GLUE task's score with its 95% interval, and the student's retention with its
    paired interval (both models resampled on the same dev examples); a last row for the
    macro score. From the first seed's dev predictions in `glue_<model>.json`."""
    from .intervals import macro_retention_interval, metric_interval, retention_interval
    from .metrics import glue_metrics, task_score

    t_dev = results.get(f"glue_{teacher}", {}).get("dev") or {}
    s_dev = results.get(f"glue_{student}", {}).get("dev") or {}
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
                     "retention 95% high": r_ci[1], "dev examples": len(y)})
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


def mlm_table(results: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(results.get("03_distill", {}).get("held_out_mlm", []))


# Each int8 variant of deploy.json: key -> (name in the targets, row in deploy.json).
INT8_VARIANTS = {"torch_int8": ("int8 (torch)", "student int8 (torch)"),
                 "onnx_int8": ("ONNX int8", "student ONNX int8")}
# The suite's own targets (the CPU reproduction and speed issues): what is compared, and how.
TARGETS = {
    "student keeps >= 95% of the teacher's SST-2 dev accuracy": ("sst2_retention", ">=", 95.0),
    "student keeps >= 90% of the teacher's GLUE macro score": ("macro_retention", ">=", 90.0),
    "student beats every ablation row on SST-2 dev": ("sst2_margin_over_ablations", ">", 0.0),
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


def _margin(rows: dict[str, float | None], ours: str = "triple loss") -> float | None:
    """Our row minus the best other row (positive = ours beats every ablation)."""
    others = [v for k, v in rows.items() if k != ours and v is not None]
    if rows.get(ours) is None or not others:
        return None
    return float(rows[ours]) - max(others)


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
    speed = results.get("06_speed", {}).get("ratios", {})
    if speed.get("speedup_paired_interval"):
        out["speedup"] = tuple(speed["speedup_paired_interval"])
    deploy = results.get("06_speed", {}).get("deploy", {}).get("models", {})
    for key, (_, row) in INT8_VARIANTS.items():
        if deploy.get(row, {}).get("accuracy_drop_interval"):
            out[f"{key}_accuracy_drop"] = tuple(deploy[row]["accuracy_drop_interval"])
    return out


def target_measurements(results: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets are judged on, from the results files (None = not run)."""
    glue = results.get("04_glue", {}).get("models", {})
    t, s = glue.get("teacher", {}), glue.get("student", {})

    def ratio(key: str) -> float | None:
        if t.get(key) in (None, 0) or s.get(key) is None:
            return None
        return 100.0 * s[key] / t[key]

    mlm = {r["row"]: r.get("mlm_acc") for r in results.get("03_distill", {}).get("ablation", [])}
    speed = results.get("06_speed", {})
    deploy = speed.get("deploy", {}).get("models", {})
    fp32 = deploy.get("student fp32", {})
    int8: dict[str, float | None] = {}
    for key, (_, row) in INT8_VARIANTS.items():
        r = deploy.get(row, {})
        int8[f"{key}_speedup"] = r.get("speedup_vs_teacher")
        int8[f"{key}_accuracy_drop"] = (fp32["accuracy"] - r["accuracy"]
                                        if "accuracy" in fp32 and "accuracy" in r else None)
    return {
        "sst2_retention": ratio("sst2"), "macro_retention": ratio("score"),
        "sst2_margin_over_ablations": _margin(results.get("04_glue", {}).get("ablation_sst2",
                                                                            {})),
        "mlm_margin_over_ablations": _margin(mlm),
        # the paired ratio (drift between rounds cancels) where its interval was measured
        "speedup": speed.get("ratios", {}).get("speedup_paired")
        if speed.get("ratios", {}).get("speedup_paired_interval")
        else speed.get("ratios", {}).get("speedup"), **int8,
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


def summary_tables(results: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of the summary notebook; empty frames where a notebook has not run."""
    return {"targets": targets_table(results), "glue": glue_table(results),
            "glue intervals": glue_intervals(results),
            "downstream": downstream_table(results), "speed": speed_table(results),
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
    from .results_io import atomic_write, provenance, write_result

    markdown = summary_markdown(tables, provenance(cfg, notebook="07_summary"))
    atomic_write(cfg.out / "summary.md", lambda p: p.write_text(markdown))
    write_result(cfg.out / "summary.json", {k: v.to_dict("records") for k, v in tables.items()},
                 cfg, notebook="07_summary")
    return markdown
