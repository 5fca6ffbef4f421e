"""Gather a profile's results files into the paper's tables, our rows beside the paper's.

Each notebook writes one `NN_*.json` with a `metrics` block in a fixed shape:
`04_glue.json` → `{"models": {name: {task: score, "score": macro}}, "ablation_sst2": {...}}`,
`05_downstream.json` → `{"models": {name: {"imdb", "squad_em", "squad_f1"}}}`,
`06_speed.json` → `{"models": {name: {"params_m", "disk_mb", "seconds", ...}}}`.
The paper's rows come from `distil_utils.paper` and are labelled "(paper)".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .paper import GLUE_COLUMNS, TABLE1_GLUE, TABLE2_DOWNSTREAM, TABLE3_SPEED, TABLE4_ABLATION


def collect(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """`{file stem: metrics}` of every results file in a profile's directory."""
    found = {}
    for path in sorted(Path(out_dir).glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "metrics" in data:
            found[path.stem] = data["metrics"]
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


def mlm_table(results: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(results.get("03_distill", {}).get("held_out_mlm", []))


def summary_tables(results: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of the summary notebook; empty frames where a notebook has not run."""
    return {"glue": glue_table(results), "downstream": downstream_table(results),
            "speed": speed_table(results), "ablation": ablation_table(results),
            "mlm": mlm_table(results)}
