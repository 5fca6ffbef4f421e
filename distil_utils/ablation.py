"""The paper's Table 4 at the profile's scale: the same distillation budget, one change each.

Each row is a full `run_distillation` with one setting changed, so an ablation runs exactly the
code of the main run; the "no distillation" row is the layer-skipped student saved untrained.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .config import Config
from .distill import evaluate_mlm, run_distillation

# row name -> (config changes, initialisation)
ABLATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "triple loss": ({}, "skip"),
    "without L_cos": ({"alpha_cos": 0.0}, "skip"),
    "without L_mlm": ({"alpha_mlm": 0.0}, "skip"),
    "without L_ce": ({"alpha_ce": 0.0}, "skip"),
    "triple loss, random init": ({}, "random"),
    "no distillation (layer-skipped init only)": ({"max_steps": 0}, "skip"),
}


def slug(row: str) -> str:
    """Directory name of an ablation row's student: `ablation_without_l_cos` etc."""
    keep = "".join(c if c.isalnum() else "_" for c in row.lower())
    return "ablation_" + "_".join(p for p in keep.split("_") if p)


def row_stamp(cfg: Config, row: str) -> dict[str, Any]:
    """The stamp the row's student carries when it was made under `cfg` (artefacts)."""
    from .artefacts import student_stamp

    changes, init = ABLATIONS[row]
    if changes.get("max_steps") == 0:
        return student_stamp(cfg, init, undistilled=True)
    return student_stamp(dataclasses.replace(cfg, **changes), init)


def run_ablations(cfg: Config, teacher: Any, tokenizer: Any, train_seqs: Any, held_seqs: Any,
                  rows: list[str] | None = None, student_name: str = "student") -> list[dict]:
    """Run every ablation row (the "triple loss" row reuses the main student's directory).

    Returns one record per row with its held-out masked-LM loss and accuracy; the students
    are saved under `results/<profile>/<slug>` for the downstream (SST-2) comparison.
    """
    from .student import save_model, student_from_teacher

    out = []
    for row in rows or list(ABLATIONS):
        changes, init = ABLATIONS[row]
        name = student_name if row == "triple loss" else slug(row)
        if changes.get("max_steps") == 0:
            student = student_from_teacher(teacher, cfg.student_layers)
            save_model(student, tokenizer, cfg.out / name, row_stamp(cfg, row))
        else:
            student, _ = run_distillation(dataclasses.replace(cfg, **changes), teacher,
                                          tokenizer, train_seqs, name=name, init=init)
        mlm = evaluate_mlm(student, held_seqs, tokenizer, n_batches=cfg.eval_batches,
                           seed=cfg.seed)
        out.append({"row": row, "name": name, **changes, "init": init, **mlm})
    return out


def ablation_sst2(cfg: Config, student_path: str, student_glue: dict | None = None,
                  tokenizer: Any = None) -> tuple[dict[str, float], list[str]]:
    """SST-2 dev accuracy of every ablation row's student, all fine-tuned alike.

    The rows use the profile's general fine-tuning settings (`ft_max_train`, `ft_epochs`),
    not the per-task `ft_task_overrides` of the headline table: on the cpu profile six
    full-train SST-2 runs would not fit the time budget. The triple-loss row reuses the
    student's GLUE run when that run had exactly these settings. Returns the accuracies and
    the rows whose student is missing or stale (notebook 03 not run with its ablations under
    these settings).
    """
    from .artefacts import is_current, student_stamp
    from .finetune import finetune_glue

    row_cfg = dataclasses.replace(cfg, ft_task_overrides={})
    reusable = student_glue is not None and "sst2" not in cfg.ft_task_overrides \
        and "sst2" in student_glue.get("runs", {})
    scores: dict[str, float] = {}
    missing: list[str] = []
    for row in ABLATIONS:
        path = Path(student_path) if row == "triple loss" else cfg.out / slug(row)
        if row == "triple loss" and reusable:
            # the same model, data and first seed as the GLUE run: reuse its number
            scores[row] = student_glue["runs"]["sst2"][0]["accuracy"]
        elif is_current(path, row_stamp(cfg, row) if row != "triple loss"
                        else student_stamp(cfg)):
            scores[row] = finetune_glue(str(path), "sst2", row_cfg, cfg.ft_seeds[0],
                                        tokenizer=tokenizer)["accuracy"]
        else:  # never distilled, or distilled under other settings than this profile's
            missing.append(row)
    return scores, missing
