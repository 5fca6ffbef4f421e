"""What made each artefact: settings digests, stamps inside model folders, and their checks.

Every model the suite writes (the adapted teacher, the student, each ablation row, each
fine-tuned model) carries `distil_artefact.json`: its kind, the settings that shaped it and the
digests of the artefacts it was made from. Its `digest` is a function of those settings and
inputs only, so the stamp a run *expects* can be computed from a config before anything is
loaded, and a cached folder is reused only when the two agree. Changing the seed, the corpus or
the teacher therefore rebuilds what depends on them instead of silently reusing it.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from .config import ADAPT, DISTILL, NONE, ROOT, RUN, shaped_by
from .hub import corpus_data
from .modelcard import write_model_card
from .results_io import (
    default_file_mode,
    file_sha256,
    note_read,
    number_libraries,
    read_json,
    versions,
    write_error,
    write_json,
)

STAMP = "distil_artefact.json"

# The settings partition, as each setting declares it in config.py.
NOT_RUN_SETTINGS = shaped_by(NONE)
ADAPT_SETTINGS = shaped_by(ADAPT)
DISTILL_SETTINGS = shaped_by(DISTILL)
RUN_SETTINGS = shaped_by(RUN)

def portable(obj: Any, base: str | Path | None = None) -> Any:
    """`obj` with every absolute path written relative to `base` (a profile's results folder)
    when inside its parent (`student`, `..` for the results root), else to the repository
    (`../shared/data` for a sibling): results files and saved settings then read the same on
    every machine and after a move. `resolve` undoes it."""
    if isinstance(obj, dict):
        return {k: portable(v, base) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v, base) for v in obj]
    if isinstance(obj, Path):
        obj = str(obj)
    if not isinstance(obj, str) or "\n" in obj or not os.path.isabs(obj):
        return obj
    path = Path(obj)
    if base is not None and path.is_relative_to(Path(base).parent):  # its results root too
        return Path(os.path.relpath(path, base)).as_posix()
    if path.is_relative_to(ROOT):
        return path.relative_to(ROOT).as_posix() or "."
    return Path(os.path.relpath(path, ROOT)).as_posix()


def resolve(path: str | Path, base: str | Path | None = None) -> Path:
    """The folder a `portable` path names: under `base` when it is there, else the repo's."""
    path = Path(path)
    if path.is_absolute():
        return path
    if base is not None and (Path(base) / path).exists():
        return Path(base) / path
    return ROOT / path


def provenance(config: Any = None, **extra: Any) -> dict[str, Any]:
    """What produced a result: profile, seed, versions, command and time.

    Every results file carries this block so a number can be traced back to the run that
    made it.
    """
    cfg = config.to_dict() if hasattr(config, "to_dict") else (config or {})
    cmd = os.environ.get("DISTIL_COMMAND") or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    out = {
        "profile": cfg.get("profile"),
        "seed": cfg.get("seed"),
        "command": cmd,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        **extra,
    }
    if cfg:  # what the numbers depend on, so a reader can tell a stale file from a current one
        out["settings_sha256"] = digest({k: v for k, v in cfg.items()
                                         if k not in NOT_RUN_SETTINGS})
    # models named by path (teacher=..., student=...) are recorded by their stamp's digest
    models = {k: artefact_digest(v) for k, v in extra.items()
              if isinstance(v, (str, Path)) and Path(str(v)).is_dir()}
    if models:
        out["artefacts"] = models
    return out


def write_result(path: str | Path, metrics: dict[str, Any], config: Any = None,
                 **extra: Any) -> Path:
    """Write `{"provenance": ..., "metrics": ...}` atomically under a results directory, its
    paths `portable` (relative to the profile's results folder)."""
    base = getattr(config, "out", None)
    return write_json(path, portable({"provenance": provenance(config, **extra),
                                      "metrics": metrics}, base))


# ------------------------------------------------------------------ the code behind a number
PACKAGE = Path(__file__).resolve().parent
# Modules that hold settings or only keep records: their code moves no number (settings are
# stamped by value), so editing them re-makes no model; notebooks still re-run for them.
# The task registry too: which split a model reads is in its data digests, and its checks
# only refuse data.
RECORD_ONLY = frozenset({"config", "validation", "tasks", "paper", "intervals", "results_io",
                         "artefacts", "checkpoint", "ft_runs", "results_files", "modelcard"})
# The modules that compute each kind of model; the package modules they import count too.
MAKERS: dict[str, tuple[str, ...]] = {
    "teacher": ("distill",), "student": ("distill",),
    "finetune": ("finetune", "downstream", "squad"),
}
# Modules loaded from their files rather than imported (`evaluate.load(path)`): the edge the
# import graph does not show.
LOADS: dict[str, tuple[str, ...]] = {
    "metrics": ("metric_modules.glue_local.glue_local", "metric_modules.squad_local.squad_local"),
}
_CODE: dict[tuple[str, int, int], tuple[str, tuple[str, ...]]] = {}


def module_path(name: str) -> Path:
    """The source file of package module `name` ("tools.reproduce")."""
    return PACKAGE.joinpath(*name.split(".")).with_suffix(".py")


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
    return tree


def package_imports(tree: ast.AST, here: list[str]) -> list[str]:
    """The package modules ("tools.freshness") a syntax tree imports, relatively from package
    `here` (["tools"]) or by `distil_utils.…`; `from . import x` and `from .m import f` alike."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - node.level + 1]
            mod = [*base, *(node.module.split(".") if node.module else [])]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distil_utils"):
            mod = node.module.split(".")[1:]
        elif isinstance(node, ast.Import):
            found += [a.name.split(".", 1)[1] for a in node.names
                      if a.name.startswith("distil_utils.")]
            continue
        else:
            continue
        for alias in node.names:
            for cand in (".".join([*mod, alias.name]), ".".join(mod)):
                if cand and module_path(cand).is_file():
                    found.append(cand)
                    break
    return found


def _module_code(name: str) -> tuple[str, tuple[str, ...]]:
    """(digest of the module's code, the package modules it imports). The digest is of the
    syntax tree without docstrings: comments, docstrings and formatting change nothing."""
    path = module_path(name)
    st = path.stat()
    key = (name, st.st_size, st.st_mtime_ns)
    if key not in _CODE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = package_imports(tree, name.split(".")[:-1]) + list(LOADS.get(name, ()))
        body = ast.dump(_without_docstrings(tree), annotate_fields=False)
        _CODE[key] = (hashlib.sha256(body.encode()).hexdigest(), tuple(sorted(set(found))))
    return _CODE[key]


def code_digests(roots: tuple[str, ...] | list[str],
                 skip: frozenset[str] = RECORD_ONLY) -> dict[str, str]:
    """{module file: code digest} of `roots` and every package module they import, directly
    or not, except `skip` (whose imports are not followed either)."""
    out: dict[str, str] = {}
    todo = [r for r in roots if r not in skip]
    while todo:
        name = todo.pop()
        rel = module_path(name).relative_to(PACKAGE.parent).as_posix()
        if rel in out:
            continue
        out[rel], imports = _module_code(name)
        todo += [m for m in imports if m not in skip]
    return dict(sorted(out.items()))


def made_from(kind: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    """What besides settings and input models a `kind` of model is made from: its code, the
    versions of the libraries that move numbers, and the content of the data it read."""
    return {"code": code_digests(MAKERS[kind]), "libraries": number_libraries(),
            "data": dict(sorted((data or {}).items()))}


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
        if f.name in RUN_SETTINGS:
            out[f.name] = _plain(getattr(cfg, f.name))
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
    """The stamp the profile's teacher must carry (an adapted one: with its corpus's data)."""
    data = corpus_data(cfg.corpus, cfg.data_dir) if cfg.adapt_steps > 0 else {}
    return make_stamp("teacher", teacher_settings(cfg), {}, data)


def distill_settings(cfg: Any, init: str = "skip") -> dict[str, Any]:
    """Everything that shapes one distilled student, its teacher excepted."""
    return _recipe_inputs(cfg, {**pretraining_settings(cfg), "init": init,
                                **{k: _plain(getattr(cfg, k)) for k in sorted(DISTILL_SETTINGS)}})


def student_stamp(cfg: Any, init: str = "skip", undistilled: bool = False) -> dict[str, Any]:
    """The stamp of a student distilled (or, `undistilled`, only initialised) under `cfg`."""
    settings = distill_settings(cfg, init)
    data = {} if undistilled else corpus_data(cfg.corpus, cfg.data_dir)
    if undistilled:
        settings = {"student_layers": settings["student_layers"], "init": init,
                    "max_steps": 0, "seed": cfg.seed}
    return make_stamp("student", settings, {"teacher": teacher_stamp(cfg)["digest"]}, data)


def made_from_digest(stamp: dict[str, Any]) -> str:
    """The digest of a stamp's code, libraries and data, for a checkpoint's fingerprint."""
    return digest({k: stamp.get(k) for k in ("code", "libraries", "data")})


STAMP_PARTS = ("settings", "inputs", "data", "code", "libraries")


def make_stamp(kind: str, settings: dict[str, Any], inputs: dict[str, str],
               data: dict[str, str] | None = None) -> dict[str, Any]:
    """`{kind, settings, inputs, data, code, libraries, digest}`; the digest covers them all:
    the settings, the input models' digests, and `made_from(kind, data)`."""
    body = {"kind": kind, "settings": settings, "inputs": inputs, **made_from(kind, data)}
    return {**body, "digest": digest(body)}


def write_stamp(folder: str | Path, stamp: dict[str, Any], **extra: Any) -> Path:
    """Write the stamp (plus `extra`, e.g. a report, and the time) into a model folder.

    Called on the temporary folder before `save_model` renames it, so the stamp and the
    weights appear together or not at all.
    """
    return write_json(Path(folder) / STAMP,
                      {**stamp, **extra, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def weights_record(folder: str | Path) -> dict[str, dict[str, Any]]:
    """{weights file: sha256, size, mtime} of a model folder, taken once when it is saved."""
    out = {}
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and f.suffix in WEIGHT_SUFFIXES:
            st = f.stat()
            out[f.name] = {"sha256": file_sha256(f), "size": st.st_size,
                           "mtime_ns": st.st_mtime_ns}
    return out


def weights_problem(folder: str | Path, stamp: dict[str, Any]) -> str | None:
    """Why the folder's weights are not the ones saved with its stamp, or None. A file whose
    size and time are as recorded is trusted; any other is hashed again (a copy of another
    model's weights keeps the size, never the content)."""
    for name, rec in (stamp.get("weights") or {}).items():
        f = Path(folder) / name
        if not f.is_file():
            return f"its weights file {name} is missing"
        st = f.stat()
        if (st.st_size, st.st_mtime_ns) != (rec["size"], rec["mtime_ns"]) \
                and file_sha256(f) != rec["sha256"]:
            return f"its weights file {name} is not the one saved with its stamp"
    return None


def read_stamp(folder: str | Path) -> dict[str, Any] | None:
    """The stamp of a model folder, or None when it has none (or no folder exists)."""
    path = Path(folder) / STAMP
    note_read(folder)  # read or found missing: either way this run depended on it
    if not path.is_file():
        return None
    return read_json(path)


def artefact_digest(name_or_path: str | Path) -> str:
    """The digest of a stamped folder, else of the name itself (a Hub model used as is)."""
    stamp = read_stamp(name_or_path) if Path(str(name_or_path)).is_dir() else None
    if not stamp:
        return digest({"model": str(name_or_path)})
    if not stamp.get("weights"):  # saved before weights were recorded
        return stamp["digest"]
    if weights_problem(name_or_path, stamp):  # other weights under this stamp: another model
        return digest({"stamp": stamp["digest"], "weights": "changed since saved"})
    return digest({"stamp": stamp["digest"],
                   "weights": {k: v["sha256"] for k, v in stamp["weights"].items()}})


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
        problem = weights_problem(folder, stamp)
        return f"{folder}: {problem} (made again or overwritten)" if problem else None
    diffs = []
    for part in STAMP_PARTS:
        old, new = stamp.get(part) or {}, expected.get(part) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) == new.get(key):
                continue
            if part in ("code", "data"):  # digests: which file, not two hex strings
                what = "new" if key not in old else "gone" if key not in new else "changed"
                diffs.append(f"{part} {key} {what}")
            else:
                diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    if stamp.get("kind") != expected["kind"]:
        diffs.insert(0, f"kind: {stamp.get('kind')!r} -> {expected['kind']!r}")
    return (f"{folder} was made from other settings, inputs, code, libraries or data "
            f"({'; '.join(diffs[:8]) or 'digest differs'})")


def is_current(folder: str | Path, expected: dict[str, Any]) -> bool:
    """True when `folder` holds a model made from exactly `expected`'s settings and inputs."""
    return stale_reason(folder, expected) is None


def require_current(folder: str | Path, expected: dict[str, Any], fix: str) -> None:
    """Refuse a folder that does not match `expected`, naming what differs and `fix`."""
    reason = stale_reason(folder, expected)
    if reason is not None:
        raise StaleArtefactError(f"{reason}. {fix}")


def stale_models(provenance: dict[str, Any], base: str | Path | None = None) -> list[str]:
    """The models a results file describes that have since been made again differently.

    `provenance` records, for each model named by path (relative to the results folder
    `base`), the digest of its stamp. A model folder that still exists with another stamp means
    the numbers are of a model that is gone. A folder that does not exist is not judged.
    """
    out = []
    for key, recorded in (provenance.get("artefacts") or {}).items():
        path = provenance.get(key)
        if not isinstance(path, str):
            continue
        folder = resolve(path, base)
        if (folder / STAMP).is_file() and artefact_digest(folder) != recorded:
            out.append(f"{key} ({path})")
    return out


# Load-time flags transformers 5 keeps in a tokenizer's saved config: they describe how this
# machine loaded it, not the tokenizer, and would pin `local_files_only` on a Hub user.
TOKENIZER_LOAD_FLAGS = ("is_local", "local_files_only", "_commit_hash", "cache_dir", "token")


def _drop_load_flags(folder: Path) -> None:
    path = folder / "tokenizer_config.json"
    if path.is_file():
        conf = read_json(path)
        write_json(path, {k: v for k, v in conf.items() if k not in TOKENIZER_LOAD_FLAGS})


def _write_model_folder(model: torch.nn.Module, tokenizer: Any, tmp: Path,
                        stamp: dict[str, Any] | None, card: dict[str, Any] | None,
                        stamp_extra: dict[str, Any]) -> None:
    """`save_model`'s complete folder, written under the temporary name `tmp`."""
    if tmp.exists():
        shutil.rmtree(tmp)
    if tokenizer is not None:
        model.config.distil_vocab_sha256 = vocab_digest(tokenizer)
    model.save_pretrained(tmp)
    if stamp is not None:  # with the weights' digests: they are part of the model's identity
        write_stamp(tmp, stamp, weights=weights_record(tmp), **stamp_extra)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
        _drop_load_flags(tmp)
    write_model_card(tmp, model.config, card or {})
    # safetensors writes its file owner-only (0600); a shared results folder needs it readable.
    mode = default_file_mode()
    for file in tmp.iterdir():
        if file.is_file():
            file.chmod(mode)


def save_model(model: torch.nn.Module, tokenizer: Any, path: str | Path,
               stamp: dict[str, Any] | None = None, card: dict[str, Any] | None = None,
               **stamp_extra: Any) -> Path:
    """`save_pretrained` model and tokenizer into `path`, so `from_pretrained`, `pipeline`
    and the Hub can load it; written to a sibling directory first, then renamed.

    `stamp` (`artefacts.make_stamp`, plus `stamp_extra` such as a report) is written inside,
    so the settings a model was made from arrive with it in the same rename, and so is the
    model card built from `card` (`modelcard.card_facts`: the run's settings and results).
    The config records the tokenizer's vocabulary digest, which `teacher.check_vocab` compares.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _write_model_folder(model, tokenizer, tmp, stamp, card, stamp_extra)
    except Exception as err:  # a full disk or read-only folder inside safetensors: named here
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(path, err) from None
    # complete from here on: `.NAME.new` is what `results_io.clean_temporaries` puts in place
    # of NAME when a kill cut the swap below, instead of deleting it with the old folder
    new = path.with_name(f".{path.name}.new")
    if new.exists():
        shutil.rmtree(new)
    tmp.rename(new)
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        path.rename(old)
    new.rename(path)
    if old.exists():
        shutil.rmtree(old)
    return path
