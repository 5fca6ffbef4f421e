"""The suite's own targets (the CPU reproduction, speed and deployment issues), each judged
on its 95% interval: "met" only when the whole interval clears the bound, "MISSED" when it
wholly misses it, "within noise" when it straddles it, "not run" when no results say.

Every figure comes from the results files, read through `results_files`' declarations.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .ablation import NO_DISTILLATION
from .results_files import (
    DEPLOY,
    DEPLOY_ONNX_INT8,
    DEPLOY_STUDENT,
    DEPLOY_TORCH_INT8,
    DISTILL,
    GLUE,
    SPEED,
)
from .summary import glue_intervals

# Each int8 variant of deploy.json: key -> (name in the targets, row in deploy.json).
INT8_VARIANTS = {"torch_int8": ("int8 (torch)", DEPLOY_TORCH_INT8),
                 "onnx_int8": ("ONNX int8", DEPLOY_ONNX_INT8)}
# The suite's own targets (the CPU reproduction and speed issues): what is compared, and how.
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
    speed = SPEED.get(results, "ratios", {})
    if speed.get("speedup_paired_interval"):
        out["speedup"] = tuple(speed["speedup_paired_interval"])
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
        # the paired ratio (drift between rounds cancels) where its interval was measured
        "speedup": ratios.get("speedup_paired") if ratios.get("speedup_paired_interval")
        else ratios.get("speedup"), **int8,
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
