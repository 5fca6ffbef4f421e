"""The paper's Table 4 at the profile's scale: the same distillation budget, one change each.

Each row is a full `run_distillation` with one setting changed, so an ablation runs exactly the
code of the main run; the "no distillation" row is the layer-skipped student saved untrained.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .artefacts import is_current, save_model, student_stamp
from .config import ABLATIONS, Config
from .distill import run_distillation
from .finetune import glue_run
from .heldout import mlm_counts, paired_difference, summarise_mlm
from .intervals import difference_interval
from .metrics import accuracy
from .modelcard import add_results, card_facts, mlm_results
from .student import student_from_teacher


def slug(row: str) -> str:
    """Directory name of an ablation row's student: `ablation_without_l_cos` etc."""
    keep = "".join(c if c.isalnum() else "_" for c in row.lower())
    return "ablation_" + "_".join(p for p in keep.split("_") if p)


def row_stamp(cfg: Config, row: str) -> dict[str, Any]:
    """The stamp the row's student carries when it was made under `cfg` (artefacts)."""
    changes, init = ABLATIONS[row]
    if changes.get("max_steps") == 0:
        return student_stamp(cfg, init, undistilled=True)
    return student_stamp(dataclasses.replace(cfg, **changes), init)


def run_ablations(cfg: Config, teacher: Any, tokenizer: Any, train_seqs: Any, held_seqs: Any,
                  rows: list[str] | None = None, student_name: str = "student") -> list[dict]:
    """Run every ablation row (the "triple loss" row reuses the main student's directory).

    One record per row: held-out masked-LM loss and accuracy (with its 95% interval) and the
    accuracy difference from the triple loss (`delta`) with its paired interval
    (`delta_low`, `delta_high`) and `resolvable` (it excludes 0). Students are saved under
    `results/<profile>/<slug>` for the SST-2 comparison.
    """
    out, counts = [], {}
    for row in rows or list(ABLATIONS):
        changes, init = ABLATIONS[row]
        name = student_name if row == "triple loss" else slug(row)
        if changes.get("max_steps") == 0:
            student = student_from_teacher(teacher, cfg.student_layers)
            save_model(student, tokenizer, cfg.out / name, row_stamp(cfg, row),
                       card=card_facts(cfg))
        else:
            student, _ = run_distillation(dataclasses.replace(cfg, **changes), teacher,
                                          tokenizer, train_seqs, name=name, init=init)
        counts[row] = mlm_counts(student, held_seqs, tokenizer, n_batches=cfg.eval_batches,
                                 seed=cfg.seed)
        held = summarise_mlm(counts[row], cfg.seed)
        add_results(cfg.out / name, mlm_results(cfg, held))  # each row's card tells its measure
        out.append({"row": row, "name": name, **changes, "init": init, **held})
    if base := counts.get("triple loss"):
        for rec in out:
            rec |= paired_difference(counts[rec["row"]], base, cfg.seed)
    return out


def ablation_sst2(cfg: Config, student_path: str, tokenizer: Any = None
                  ) -> tuple[dict[str, float], dict[str, dict[str, Any]], list[str]]:
    """SST-2 dev accuracy of the ablation rows' students, all fine-tuned alike, and each
    row's difference from the triple loss with its paired 95% interval.

    `cfg.ft_ablation_rows` chooses the rows (None: all) and `cfg.ft_ablation_full` the
    budget: the headline SST-2 settings or the general caps. At the headline budget the
    triple-loss row's run is the GLUE table's own (`ft_runs`). A difference is "resolvable"
    when its paired interval over the dev sentences excludes 0. Returns (accuracy per row,
    {row: delta, interval, resolvable}, rows whose student is missing or stale).
    """
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
