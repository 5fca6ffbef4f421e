"""Every results file the suite writes under `results/<profile>/`: its name, its one writer
and the keys of its `metrics` block, declared once.

`ResultsFile.write` refuses metrics that lack a declared key or hold an undeclared one, and
`summary` and the notebooks read through the same declarations (`ResultsFile.get`), so a
renamed key is an error at the writer, not a silently empty table. The notebooks' files
(`01_teacher.json` ... `06_speed.json`) are assembled here; the package's own files are
written by the function that computes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .artefacts import write_result
from .modelcard import add_results, mlm_results


@dataclasses.dataclass(frozen=True)
class ResultsFile:
    """One results file: `pattern` (its name, `{field}`s filled in), `writer` (the one
    function that writes it), `keys` (always in `metrics`) and `optional` keys."""

    pattern: str
    writer: str
    keys: tuple[str, ...]
    optional: tuple[str, ...] = ()

    def stem(self, **fields: Any) -> str:
        """The file's name without `.json`: the key `summary.collect` files it under."""
        return self.pattern.format(**fields).removesuffix(".json")

    def path(self, out: str | Path, **fields: Any) -> Path:
        return Path(out) / self.pattern.format(**fields)

    def check(self, metrics: Mapping[str, Any]) -> None:
        missing = [k for k in self.keys if k not in metrics]
        unknown = [k for k in metrics if k not in self.keys + self.optional]
        if missing or unknown:
            raise ValueError(f"{self.pattern} (written by {self.writer}): missing keys "
                             f"{missing}, undeclared keys {unknown}; declare them in "
                             "distil_utils/results_files.py")

    def write(self, metrics: Mapping[str, Any], cfg: Any, *, out: str | Path | None = None,
              fields: Mapping[str, Any] | None = None, **provenance: Any) -> Path:
        """Check `metrics` against the declaration and write them, with `provenance`."""
        self.check(metrics)
        return write_result(self.path(cfg.out if out is None else out, **(fields or {})),
                            dict(metrics), cfg, **provenance)

    def get(self, results: Mapping[str, Any], key: str, default: Any = None,
            **fields: Any) -> Any:
        """`key` of this file's metrics in `summary.collect`'s `{stem: metrics}` (default
        when the file or the key is absent); an undeclared key is an error."""
        if key not in self.keys + self.optional:
            raise KeyError(f"{self.pattern} declares no key {key!r} (keys: {self.keys})")
        found = (results.get(self.stem(**fields)) or {}).get(key)
        return default if found is None else found

    def results(self, metrics: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        """`{stem: metrics}`: the shape `summary`'s tables read, for metrics not yet written."""
        return {self.stem(**fields): dict(metrics)}


TEACHER = ResultsFile("01_teacher.json", "results_files.write_teacher",
                      ("teacher", "params", "params_by_component", "held_out_mlm",
                       "adaptation", "cka_consecutive"))
INIT = ResultsFile("02_init.json", "results_files.write_init",
                   ("layers", "copied_tensors", "max_copy_diff", "full_depth_max_logit_diff",
                    "teacher_params", "student_params", "ratio", "initialisations"))
DISTILL = ResultsFile("03_distill.json", "results_files.write_distill",
                      ("steps", "final", "tokens_per_second", "held_out_mlm", "ablation"))
GLUE_MODEL = ResultsFile("glue_{name}.json", "finetune.run_glue",
                         ("model", "per_task", "columns", "score", "seed_ranges", "runs", "dev",
                          "seeds", "tasks", "skipped"))
GLUE = ResultsFile("04_glue.json", "results_files.write_glue",
                   ("models", "seeds", "ablation_sst2", "ablation_sst2_delta"))
DOWNSTREAM = ResultsFile("05_downstream.json", "results_files.write_downstream",
                         ("models", "imdb", "squad"))
BENCH = ResultsFile("speed.json", "speed.run_bench",
                    ("task", "split", "examples", "batch_size", "threads", "interop_threads",
                     "teacher", "student", "models", "ratios", "passes", "grid", "grid_ratios",
                     "notes", "paper"), optional=("paper_shapes", "figures"))
DEPLOY = ResultsFile("deploy.json", "deploy.deploy_report",
                     ("task", "split", "examples_accuracy", "examples_timing", "reference",
                      "threads", "models", "onnx_error", "onnx_int8_error",
                      "onnx_teacher_error", "onnx_fp32_speedup", "timing", "student",
                      "teacher"))
SPEED = ResultsFile("06_speed.json", "results_files.write_speed", ("models", "ratios"))
SUMMARY = ResultsFile("summary.json", "summary.write_summary",
                      ("targets", "glue", "glue intervals", "downstream",
                       "downstream intervals", "speed", "ablation",
                       "mlm"))
FILES = (TEACHER, INIT, DISTILL, GLUE_MODEL, GLUE, DOWNSTREAM, BENCH, DEPLOY, SPEED, SUMMARY)

# The rows of deploy.json's "models": every deployable form of the student, the fp32 teacher
# first (the reference of every ratio).
DEPLOY_TEACHER, DEPLOY_STUDENT = "teacher fp32", "student fp32"
DEPLOY_TORCH_INT8 = "student int8 (torch)"
DEPLOY_ONNX, DEPLOY_ONNX_TEACHER = "student ONNX fp32", "teacher ONNX fp32"
DEPLOY_ONNX_INT8 = "student ONNX int8"
# 03_distill.json's held-out row of the student that notebook 03 distilled.
DISTILLED_ROW = "student, distilled"
# 05_downstream.json's model rows, in order, and 06_speed.json's columns per model.
DOWNSTREAM_MODELS = ("teacher", "student", "student (D)")
SPEED_COLUMNS = ("params_m", "disk_mb", "seconds", "seconds_with_tokenization")


# ------------------------------------------------------------------------------ 01-03
def write_teacher(cfg: Any, teacher: str, params_by_component: list[dict[str, Any]],
                  held_out_mlm: Any, adaptation: Any, cka_consecutive: list[float]) -> Path:
    """`01_teacher.json`: the teacher's parameter budget, held-out MLM, adaptation, CKA."""
    return TEACHER.write({
        "teacher": teacher, "params": int(sum(r["params"] for r in params_by_component)),
        "params_by_component": params_by_component, "held_out_mlm": held_out_mlm,
        "adaptation": adaptation, "cka_consecutive": cka_consecutive,
    }, cfg, notebook="01_teacher")


def write_init(cfg: Any, teacher: str, layers: list[int], copy_report: Any,
               full_depth_max_logit_diff: float, teacher_params: int, student_params: int,
               initialisations: Any) -> Path:
    """`02_init.json`: the copied layers, the copy check and the initialisations compared
    (`copy_report` and `initialisations` as the notebook's DataFrames)."""
    return INIT.write({
        "layers": list(layers), "copied_tensors": len(copy_report),
        "max_copy_diff": float(copy_report.max_abs_diff.max()),
        "full_depth_max_logit_diff": full_depth_max_logit_diff,
        "teacher_params": teacher_params, "student_params": student_params,
        "ratio": student_params / teacher_params,
        "initialisations": initialisations.to_dict("records"),
    }, cfg, notebook="02_init", teacher=teacher)


def write_distill(cfg: Any, teacher: str, history: list[dict[str, Any]],
                  tokens_per_second: float | None, held_out_mlm: Any, ablation: Any) -> Path:
    """`03_distill.json`: steps, last logged losses, throughput, held-out MLM, ablation
    (`held_out_mlm` and `ablation` as the notebook's DataFrames); the distilled student's
    card gets its held-out accuracy."""
    rows = {r["model"]: r for r in held_out_mlm.to_dict("records")}
    if DISTILLED_ROW in rows and (cfg.out / "student" / "config.json").is_file():
        add_results(cfg.out / "student", mlm_results(cfg, rows[DISTILLED_ROW]))
    return DISTILL.write({
        "steps": len(history), "final": history[-1] if history else None,
        "tokens_per_second": tokens_per_second, "held_out_mlm": held_out_mlm.to_dict("records"),
        "ablation": ablation.to_dict("records"),
    }, cfg, notebook="03_distill", teacher=teacher)


# ------------------------------------------------------------------------------ 04-06
def glue_models(glue: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """04_glue.json's "models": per model (`run_glue`'s results) its task scores and macro."""
    return {name: {**res["columns"], "score": res["score"]} for name, res in glue.items()}


def write_glue(cfg: Any, glue: Mapping[str, Mapping[str, Any]],
               ablation_sst2: Mapping[str, float | None],
               ablation_sst2_delta: Mapping[str, Mapping[str, Any]], teacher: str,
               student: str) -> Path:
    """`04_glue.json` from `run_glue`'s result per model and `ablation_sst2`'s two dicts: the
    headline table only; each model's runs, skips and dev predictions stay in the
    `glue_<model>.json` that `run_glue` wrote."""
    return GLUE.write({
        "models": glue_models(glue), "seeds": list(cfg.ft_seeds),
        "ablation_sst2": dict(ablation_sst2), "ablation_sst2_delta": dict(ablation_sst2_delta),
    }, cfg, notebook="04_glue", teacher=teacher, student=student)


def downstream_models(imdb: Mapping[str, Mapping[str, Any]],
                      squad: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """05_downstream.json's "models": IMDb accuracy (where run), SQuAD EM and F1."""
    models = {}
    for name in DOWNSTREAM_MODELS:
        row = {"imdb": imdb[name]["accuracy"]} if name in imdb else {}
        row["squad_em"], row["squad_f1"] = squad[name]["exact_match"], squad[name]["f1"]
        models[name] = row
    return models


def write_downstream(cfg: Any, imdb: Mapping[str, Any], squad: Mapping[str, Any],
                     teacher: str, student: str) -> Path:
    """`05_downstream.json` from `finetune_imdb`'s and `finetune_squad`'s results."""
    return DOWNSTREAM.write({"models": downstream_models(imdb, squad), "imdb": dict(imdb),
                             "squad": dict(squad)},
                            cfg, notebook="05_imdb_squad", teacher=teacher, student=student)


def speed_models(bench: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """06_speed.json's "models": `run_bench`'s Table 3 columns per model."""
    return {name: {c: row[c] for c in SPEED_COLUMNS} for name, row in bench["models"].items()}


def write_speed(cfg: Any, bench: Mapping[str, Any], teacher: str, student: str) -> Path:
    """`06_speed.json`: Table 3's columns and ratios from `run_bench`'s result. The full
    measurement stays in `speed.json` and the deployable variants in `deploy.json`, each
    written once by the function that measured it."""
    return SPEED.write({"models": speed_models(bench), "ratios": bench["ratios"]},
                       cfg, notebook="06_speed", teacher=teacher, student=student)
