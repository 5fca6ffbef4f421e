"""What made each artefact: settings digests, stamps inside model folders, and their checks.

Every model the suite writes (the adapted teacher, the student, each ablation row, each
fine-tuned model) carries `distil_artefact.json`: its kind, the settings that shaped it and the
digests of the artefacts it was made from. Its `digest` is a function of those settings and
inputs only, so the stamp a run *expects* can be computed from a config before anything is
loaded, and a cached folder is reused only when the two agree. Changing the seed, the corpus or
the teacher therefore rebuilds what depends on them instead of silently reusing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

STAMP = "distil_artefact.json"

# Settings that never change what a pre-training run computes: where things are, how often
# they are logged or saved, how fast a step runs (each speed switch is tested to give the same
# step), and everything that only fine-tuning or timing reads. Any other setting — including
# one added later — counts, so a forgotten key errs on the side of rebuilding.
NOT_RUN_SETTINGS = frozenset({
    "profile", "results_dir", "data_dir", "device", "checkpoint_every", "log_every",
    "eval_batches", "distill_fused_head", "distill_chunk_rows", "distill_compile",
    "num_threads", "attn_implementation", "extra", "dist_timeout_s", "corpus_cache",
})
# Settings of the teacher's masked-LM adaptation only / of the student's distillation only.
ADAPT_SETTINGS = frozenset({"adapt_steps", "adapt_lr", "adapt_head_lr", "adapt_mlm_smoothing"})
DISTILL_SETTINGS = frozenset({
    "student_layers", "max_steps", "lr", "temperature", "alpha_ce", "alpha_mlm", "alpha_cos",
    "ce_on_masked_only", "mlm_smoothing",
})
FINETUNE_PREFIXES = ("ft_", "imdb_", "squad_", "bench_", "glue_tasks")


class StaleArtefactError(RuntimeError):
    """An artefact exists but was made from other settings or inputs than this run's."""


def digest(obj: Any) -> str:
    """sha256 of `obj` as canonical JSON (tuples and lists alike)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def vocab_digest(tokenizer: Any) -> str:
    """sha256 of the tokenizer's tokens in id order: equal sizes with other tokens differ."""
    vocab = tokenizer.get_vocab()
    return digest(sorted(vocab, key=vocab.__getitem__))


def pretraining_settings(cfg: Any) -> dict[str, Any]:
    """The settings shared by adaptation and distillation (corpus, batches, seed, masking)."""
    out = {}
    for f in dataclasses.fields(cfg):
        name = f.name
        if name in NOT_RUN_SETTINGS or name in ADAPT_SETTINGS or name in DISTILL_SETTINGS \
                or name.startswith(FINETUNE_PREFIXES):
            continue
        out[name] = _plain(getattr(cfg, name))
    return out


def _recipe_inputs(cfg: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The recipe's inputs in place of what `recipe.resolve` derives from them.

    With `global_batch`, `grad_accum` follows from it and the number of processes; with
    `epochs`, `max_steps` follows from it and the corpus size (both in the settings already).
    A config is stamped the same before and after `prepare_corpus` resolves it.
    """
    if getattr(cfg, "global_batch", None) is not None:
        settings.pop("grad_accum", None)
    derived = (cfg.extra or {}).get("derived", {}) if isinstance(cfg.extra, dict) else {}
    if getattr(cfg, "epochs", None) is not None and "max_steps" in settings \
            and settings["max_steps"] in (None, derived.get("max_steps")):
        settings["max_steps"] = None
    return settings


def teacher_settings(cfg: Any) -> dict[str, Any]:
    """Everything that shapes the profile's teacher (its adaptation run included)."""
    out = pretraining_settings(cfg)
    if cfg.adapt_steps <= 0:  # used as loaded: only its name matters
        return {"teacher": cfg.teacher, "tokenizer": cfg.tokenizer, "adapt_steps": 0,
                **({k: out[k] for k in out if k.startswith("tiny_") or k == "seed"}
                   if cfg.teacher == "tiny" else {})}
    return _recipe_inputs(cfg, {**out, **{k: _plain(getattr(cfg, k))
                                          for k in sorted(ADAPT_SETTINGS)}})


def teacher_stamp(cfg: Any) -> dict[str, Any]:
    """The stamp the profile's teacher must carry."""
    return make_stamp("teacher", teacher_settings(cfg), {})


def distill_settings(cfg: Any, init: str = "skip") -> dict[str, Any]:
    """Everything that shapes one distilled student, its teacher excepted."""
    return _recipe_inputs(cfg, {**pretraining_settings(cfg), "init": init,
                                **{k: _plain(getattr(cfg, k)) for k in sorted(DISTILL_SETTINGS)}})


def student_stamp(cfg: Any, init: str = "skip", undistilled: bool = False) -> dict[str, Any]:
    """The stamp of a student distilled (or, `undistilled`, only initialised) under `cfg`."""
    settings = distill_settings(cfg, init)
    if undistilled:
        settings = {"student_layers": settings["student_layers"], "init": init,
                    "max_steps": 0, "seed": cfg.seed}
    return make_stamp("student", settings, {"teacher": teacher_stamp(cfg)["digest"]})


def make_stamp(kind: str, settings: dict[str, Any], inputs: dict[str, str]) -> dict[str, Any]:
    """`{kind, settings, inputs, digest}`; the digest covers all three."""
    body = {"kind": kind, "settings": settings, "inputs": inputs}
    return {**body, "digest": digest(body)}


def write_stamp(folder: str | Path, stamp: dict[str, Any], **extra: Any) -> Path:
    """Write the stamp (plus `extra`, e.g. a report, and the time) into a model folder.

    Called on the temporary folder before `save_model` renames it, so the stamp and the
    weights appear together or not at all.
    """
    from .results_io import write_json

    return write_json(Path(folder) / STAMP,
                      {**stamp, **extra, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def read_stamp(folder: str | Path) -> dict[str, Any] | None:
    """The stamp of a model folder, or None when it has none (or no folder exists)."""
    from .results_io import note_read, read_json

    path = Path(folder) / STAMP
    note_read(folder)  # read or found missing: either way this run depended on it
    if not path.is_file():
        return None
    return read_json(path)


def artefact_digest(name_or_path: str | Path) -> str:
    """The digest of a stamped folder, else of the name itself (a Hub model used as is)."""
    stamp = read_stamp(name_or_path) if Path(str(name_or_path)).is_dir() else None
    return stamp["digest"] if stamp else digest({"model": str(name_or_path)})


def stale_reason(folder: str | Path, expected: dict[str, Any]) -> str | None:
    """Why `folder` cannot stand for `expected` (missing, unstamped, other settings), or None.

    The reason names the settings or inputs that differ, old value against new.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return f"{folder} does not exist yet"
    stamp = read_stamp(folder)
    if stamp is None:
        return f"{folder} has no {STAMP} (made by an older version of the suite)"
    if stamp.get("digest") == expected["digest"]:
        return None
    diffs = []
    for part in ("settings", "inputs"):
        old, new = stamp.get(part, {}), expected[part]
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    if stamp.get("kind") != expected["kind"]:
        diffs.insert(0, f"kind: {stamp.get('kind')!r} -> {expected['kind']!r}")
    return f"{folder} was made from other settings ({'; '.join(diffs[:8]) or 'digest differs'})"


def is_current(folder: str | Path, expected: dict[str, Any]) -> bool:
    """True when `folder` holds a model made from exactly `expected`'s settings and inputs."""
    return stale_reason(folder, expected) is None


def require_current(folder: str | Path, expected: dict[str, Any], fix: str) -> None:
    """Refuse a folder that does not match `expected`, naming what differs and `fix`."""
    reason = stale_reason(folder, expected)
    if reason is not None:
        raise StaleArtefactError(f"{reason}. {fix}")


def stale_models(provenance: dict[str, Any]) -> list[str]:
    """The models a results file describes that have since been made again differently.

    `io.provenance` records, for each model named by path, the digest of its stamp. A model
    folder that still exists with another stamp means the numbers are of a model that is gone.
    A folder that no longer exists (a results file copied to another machine) is not judged.
    """
    out = []
    for key, recorded in (provenance.get("artefacts") or {}).items():
        path = provenance.get(key)
        if isinstance(path, str) and (Path(path) / STAMP).is_file() \
                and artefact_digest(path) != recorded:
            out.append(f"{key} ({path})")
    return out
