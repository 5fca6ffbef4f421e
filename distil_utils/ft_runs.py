"""Fine-tuning runs that are done once: one stamped record per model × task × seed.

A GLUE table is many independent runs (up to 9 tasks × 5 seeds × 2 models); a notebook
stopped midway must not start them all again. Each finished run writes
`ft_runs/<model>_<task>_seed<seed>_<digest>.json` with its metrics and stamp (settings, seed,
digest of the starting model); a matching record is not run again. A run in progress keeps
Trainer checkpoints under `checkpoints/ft/<run>/` to resume from, deleted once recorded.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .artefacts import (
    NOT_RUN_SETTINGS,
    artefact_digest,
    is_current,
    make_stamp,
    provenance,
    read_stamp,
    write_stamp,
)
from .hub import task_data
from .results_io import read_json, write_json

# settings a fine-tuning run reads, by prefix; the seeds are the run's own argument, and
# ft_ablation_* choose which runs the ablation table makes, not how one run trains
FT_PREFIXES = ("ft_", "imdb_", "squad_")
NOT_FT_SETTINGS = NOT_RUN_SETTINGS | {"ft_seeds", "ft_task_overrides", "ft_checkpoint_every",
                                      "ft_ablation_rows", "ft_ablation_full"}


def run_stamp(model_path: str | Path, what: str, cfg: Any, seed: int,
              **inputs: str | Path | None) -> dict[str, Any]:
    """The stamp of fine-tuning `model_path` on `what` (a GLUE task, "imdb", "squad").

    `cfg` is the task's config (`task_config`); `inputs` are further models the run reads
    (the SQuAD teacher of DistilBERT (D)), recorded by digest.
    """
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()
                if k.startswith(FT_PREFIXES) and k not in NOT_FT_SETTINGS}
    settings |= {"what": what, "ft_seed": seed, "seed": cfg.seed,
                 "temperature": cfg.temperature}  # seed: which examples a capped run uses
    deps = {"model": artefact_digest(model_path)}
    deps |= {k: artefact_digest(v) for k, v in inputs.items() if v is not None}
    return make_stamp("finetune", settings, deps, task_data(what, cfg.data_dir))


def run_id(model_path: str | Path, what: str, seed: int, stamp: dict[str, Any]) -> str:
    """`<model>_<task>_seed<seed>_<digest>`: runs of one model under other settings (the
    ablation's capped SST-2 beside the headline table's full one) keep their own records."""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(str(model_path)).name)
    return f"{name}_{what}_seed{seed}_{stamp['digest'][:10]}"


def _record_path(cfg: Any, rid: str) -> Path:
    return cfg.out / "ft_runs" / f"{rid}.json"


def finished(cfg: Any, rid: str, stamp: dict[str, Any], output_dir: Path | None = None,
             needs: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The metrics of a finished run made from exactly `stamp`, else None.

    With `output_dir`, the saved model there must carry the same stamp too (a run that was
    scored but whose model was deleted or re-made is run again), and so is a record lacking a
    key in `needs` (e.g. per-example scores).
    """
    path = _record_path(cfg, rid)
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:  # damaged JSON: a cache entry, so the run is made again
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict) \
            or not isinstance(record.get("stamp"), dict):
        print(f"[fine-tune] {path} is not a finished run's record (damaged?): running {rid} "
              "again", flush=True)
        return None
    if record["stamp"].get("digest") != stamp["digest"]:
        return None
    if output_dir is not None and not is_current(output_dir, stamp):
        return None
    if any(k not in record["metrics"] for k in needs):
        print(f"[fine-tune] {rid}: record lacks {[k for k in needs if k not in record['metrics']]}"
              ", run again", flush=True)
        return None
    return record["metrics"]


def lookup(cfg: Any, model_path: str | Path, what: str, seed: int,
           output_dir: Path | None = None, needs: tuple[str, ...] = (),
           **inputs: str | Path | None) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """(stamp, run id, metrics of the finished run or None) of one fine-tuning run."""
    stamp = run_stamp(model_path, what, cfg, seed, **inputs)
    rid = run_id(model_path, what, seed, stamp)
    return stamp, rid, finished(cfg, rid, stamp, output_dir, needs)


def checkpoint_dir(cfg: Any, rid: str, stamp: dict[str, Any]) -> tuple[Path, str | None]:
    """(Trainer output folder of the run, its last checkpoint to resume from or None).

    Checkpoints of the same run under other settings are removed first: resuming them would
    mix two runs in one model.
    """
    from transformers.trainer_utils import get_last_checkpoint

    folder = cfg.out / "checkpoints" / "ft" / rid
    old = read_stamp(folder)
    if folder.exists() and (old is None or old.get("digest") != stamp["digest"]):
        print(f"[fine-tune] {rid}: checkpoints of other settings removed", flush=True)
        shutil.rmtree(folder)
    if not folder.exists():
        folder.mkdir(parents=True)
        write_stamp(folder, stamp)
    return folder, get_last_checkpoint(str(folder))


def record(cfg: Any, rid: str, stamp: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write the run's record (atomically), then drop its checkpoints."""
    write_json(_record_path(cfg, rid), {"provenance": provenance(cfg), "stamp": stamp,
                                        "metrics": metrics})
    shutil.rmtree(cfg.out / "checkpoints" / "ft" / rid, ignore_errors=True)
