"""The paper's Table 4 at the profile's scale: the same distillation budget, one change each.

Each row is a full `run_distillation` with one setting changed, so an ablation runs exactly the
code of the main run; the "no distillation" row is the layer-skipped student saved untrained.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .distill import run_distillation
from .heldout import mlm_counts, paired_difference, summarise_mlm

NO_DISTILLATION = "no distillation (layer-skipped init only)"
# row name -> (config changes, initialisation)
ABLATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "triple loss": ({}, "skip"),
    "without L_cos": ({"alpha_cos": 0.0}, "skip"),
    "without L_mlm": ({"alpha_mlm": 0.0}, "skip"),
    "without L_ce": ({"alpha_ce": 0.0}, "skip"),
    "triple loss, random init": ({}, "random"),
    NO_DISTILLATION: ({"max_steps": 0}, "skip"),
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

    Returns one record per row with its held-out masked-LM loss and accuracy (with its 95%
    interval) and, beside a "triple loss" row, the accuracy difference from it (`delta`) with
    its paired interval (`delta_low`, `delta_high`: the same masked positions, resampled by
    sequence) and whether that interval excludes 0 (`resolvable`). The students are saved
    under `results/<profile>/<slug>` for the downstream (SST-2) comparison.
    """
    from .student import save_model, student_from_teacher

    out, counts = [], {}
    for row in rows or list(ABLATIONS):
        changes, init = ABLATIONS[row]
        name = student_name if row == "triple loss" else slug(row)
        if changes.get("max_steps") == 0:
            student = student_from_teacher(teacher, cfg.student_layers)
            save_model(student, tokenizer, cfg.out / name, row_stamp(cfg, row))
        else:
            student, _ = run_distillation(dataclasses.replace(cfg, **changes), teacher,
                                          tokenizer, train_seqs, name=name, init=init)
        counts[row] = mlm_counts(student, held_seqs, tokenizer, n_batches=cfg.eval_batches,
                                 seed=cfg.seed)
        out.append({"row": row, "name": name, **changes, "init": init,
                    **summarise_mlm(counts[row], cfg.seed)})
    if base := counts.get("triple loss"):
        for rec in out:
            rec |= paired_difference(counts[rec["row"]], base, cfg.seed)
    return out


def ablation_sst2(cfg: Config, student_path: str, tokenizer: Any = None
                  ) -> tuple[dict[str, float], dict[str, dict[str, Any]], list[str]]:
    """SST-2 dev accuracy of the ablation rows' students, all fine-tuned alike, and each
    row's difference from the triple loss with its paired 95% interval.

    `cfg.ft_ablation_rows` chooses the rows (None: all) and `cfg.ft_ablation_full` the
    budget: the headline SST-2 settings (`ft_task_overrides["sst2"]`, e.g. the full train
    set) or the general caps (`ft_max_train`, `ft_epochs`). The triple-loss row is the main
    student, so at the headline budget its run is the GLUE table's own, found again rather
    than trained twice (`ft_runs`). A difference is "resolvable" when its interval, from
    resampling the 872 dev sentences with both rows' predictions paired, excludes 0.
    Returns (accuracy per row, {row: delta, interval, resolvable}, rows whose student is
    missing or stale: notebook 03 not run with its ablations under these settings).
    """
    from .artefacts import is_current, student_stamp
    from .finetune import glue_run
    from .intervals import difference_interval
    from .metrics import accuracy

    row_cfg = cfg if cfg.ft_ablation_full else dataclasses.replace(cfg, ft_task_overrides={})
    runs: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for row in cfg.ft_ablation_rows or list(ABLATIONS):
        path = Path(student_path) if row == "triple loss" else cfg.out / slug(row)
        stamp = student_stamp(cfg) if row == "triple loss" else row_stamp(cfg, row)
        if is_current(path, stamp):
            runs[row] = glue_run(str(path), "sst2", row_cfg, cfg.ft_seeds[0],
                                 tokenizer=tokenizer)
        else:  # never distilled, or distilled under other settings than this profile's
            missing.append(row)
    scores = {row: run["metrics"]["accuracy"] for row, run in runs.items()}
    deltas: dict[str, dict[str, Any]] = {}
    if "triple loss" in runs:
        base = runs["triple loss"]["dev"]["validation"]
        labels = np.asarray(base["labels"])
        for row, run in runs.items():
            preds = np.asarray(run["dev"]["validation"]["predictions"])
            low, high = difference_interval(accuracy, preds, np.asarray(base["predictions"]),
                                            labels, seed=cfg.seed)
            deltas[row] = {"delta": scores[row] - scores["triple loss"],
                           "interval": [low, high], "resolvable": not low <= 0 <= high}
    return scores, deltas, missing
