"""Settings checked before any work starts: types, ranges, no-op runs and input files.

A bad value must fail here, naming the setting and the fix, not deep inside torch (a string
where a number is expected), silently (a tuple setting given one string is iterated by
character) or after an hour (a division by zero at the first checkpoint).
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import math
from pathlib import Path
from typing import Any

from .tasks import CORPORA


class SettingError(ValueError):
    """A setting has a value the suite cannot run with; the message names it and the fix."""


class MissingInputError(SettingError, FileNotFoundError):
    """A setting names a file or folder that is not there (or holds nothing usable)."""


class RecipeError(ValueError):
    """A run that would train nothing, or a recipe the hardware cannot follow."""


def check_recipe(cfg: Any) -> None:
    """Called at the end of `config.validate`: refuse a run that would train nothing."""
    if cfg.max_steps is None and cfg.epochs is None:
        raise RecipeError("max_steps is None and epochs is None: the run would train nothing; "
                          "give one, e.g. -p max_steps 200 or -p epochs 3")
    if cfg.max_steps is not None and cfg.epochs is None and cfg.max_steps < 1:
        raise RecipeError(f"max_steps is {cfg.max_steps}: distillation would train nothing; "
                          "give it steps (e.g. -p max_steps 200) or epochs (-p epochs 3, "
                          "with -p max_steps None)")
    if cfg.epochs is not None and not cfg.epochs > 0:
        raise RecipeError(f"epochs must be > 0 (got {cfg.epochs}); the paper trains 3")
    if cfg.global_batch is not None and cfg.global_batch < cfg.batch_size:
        raise RecipeError(f"global_batch {cfg.global_batch} is smaller than one device's batch "
                          f"(batch_size {cfg.batch_size}): lower batch_size")
    if cfg.dist_timeout_s < 60:
        raise RecipeError(f"dist_timeout_s must be >= 60 (got {cfg.dist_timeout_s}): a "
                          "collective waits that long for a rank's checkpoint or compilation")


def parse_value(text: str) -> Any:
    """A command line's `-p NAME VALUE` text as a Python literal when it is one (`200`, `None`,
    `['sst2']`), else the string; the runner and `python -m distil_utils.distill` share it."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def declared_spelling(name: str, declared: Any) -> str:
    """`name` as `declared` spells it, matched without case: a notebook's `SEED` for `-p seed`,
    a setting's `max_steps` for `-p MAX_STEPS`; `name` itself when nothing matches (the caller
    refuses it, naming what is declared). The runner, the distillation command line and a
    notebook started by papermill's own CLI all take a name this way."""
    if name in declared:
        return name
    return {d.upper(): d for d in declared}.get(name.upper(), name)


def _kind(annotation: str) -> tuple[str, bool]:
    """('int' | 'float' | 'bool' | 'str' | 'tuple[int]' | 'tuple[str]' | 'dict' | '', optional)."""
    parts = [p.strip() for p in annotation.split("|")]
    optional = "None" in parts
    base = next((p for p in parts if p != "None"), "")
    if base.startswith("tuple["):
        base = "tuple[int]" if "int" in base else "tuple[str]"
    elif base.startswith("dict"):
        base = "dict"
    return base, optional


def coerce(name: str, value: Any, annotation: str, example: Any = None) -> Any:
    """`value` as the type of setting `name`, or a `SettingError` that names both."""
    kind, optional = _kind(annotation)
    if value is None:
        if optional:
            return None
        raise SettingError(f"setting {name} cannot be None; e.g. -p {name} {example!r}")
    hint = f"e.g. -p {name} {example!r}" if example is not None else "see distil_utils/config.py"

    def bad(what: str) -> SettingError:
        return SettingError(f"setting {name} must be {what}, got {value!r} "
                            f"({type(value).__name__}); {hint}")

    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("True or False")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad("a whole number")
    elif kind == "float":
        if isinstance(value, str):  # the command line's `nan` / `inf` are not Python literals
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad("a finite number")
    elif kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
    elif kind == "tuple[str]":
        if isinstance(value, str):  # `-p corpus PATH`, `-p TASKS sst2`: one item, not chars
            return (value,)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    elif kind == "tuple[int]":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad("a tuple of whole numbers such as (0, 2, 5)")
        return tuple(value)
    elif kind == "dict" and not isinstance(value, dict):
        raise bad("a dict")
    return value


def coerce_all(values: dict[str, Any], config_cls: type) -> dict[str, Any]:
    """Every value of `values` coerced to its `config_cls` field's type."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    out = {}
    for name, value in values.items():
        f = fields[name]
        example = f.default if f.default is not dataclasses.MISSING else None
        out[name] = coerce(name, value, str(f.type), example)
    return out


def _at_least(cfg: Any, low: float, *names: str, why: str = "") -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < low:
            raise SettingError(f"setting {name} must be >= {low:g} (got {value}){why}")


def check_values(cfg: Any) -> None:
    """Ranges and combinations no run can use; see the module docstring."""
    _at_least(cfg, 1, "batch_size", "grad_accum", "max_seq_len", "min_seq_len", "ft_batch_size",
              "ft_max_seq_len", "tiny_layers", "tiny_hidden", "tiny_heads", "tiny_intermediate",
              "bench_repeats", "bench_max_repeats", "squad_max_seq_len", "squad_doc_stride",
              "distill_chunk_rows",
              "ft_max_train", "ft_max_eval", "imdb_max_train", "squad_max_train",
              "squad_max_eval", "bench_max_examples", "bench_shape_examples", "corpus_max_docs")
    _at_least(cfg, 1, "checkpoint_every", "log_every", "eval_batches",
              why=": it counts optimizer steps (or batches) between two saves or logs")
    _at_least(cfg, 1, "heldout_docs",
              why=": the held-out documents are where masked-token accuracy is measured")
    _at_least(cfg, 0, "max_steps", "adapt_steps", "weight_decay", "imdb_heldout",
              "mlm_smoothing")
    for name in ("lr", "adapt_lr", "adapt_head_lr", "ft_lr", "ft_epochs", "squad_epochs",
                 "max_grad_norm"):
        if getattr(cfg, name) <= 0:
            raise SettingError(
                f"setting {name} must be > 0 (got {getattr(cfg, name)}): with 0 training "
                "changes nothing" + (" (every gradient is clipped to zero)"
                                     if name == "max_grad_norm" else ""))
    if cfg.alpha_ce + cfg.alpha_mlm + cfg.alpha_cos <= 0:
        raise SettingError("alpha_ce, alpha_mlm and alpha_cos are all 0: the loss is 0 and "
                           "distillation would change nothing; keep at least one term > 0 "
                           "(the paper: 5, 2, 1)")
    if cfg.bench_ci_halfwidth is not None and cfg.bench_ci_halfwidth <= 0:
        raise SettingError(f"setting bench_ci_halfwidth must be > 0 or None (got "
                           f"{cfg.bench_ci_halfwidth}); None times bench_repeats rounds only")
    if not 0 <= cfg.warmup_frac < 1:
        raise SettingError(f"setting warmup_frac must be in [0, 1) (got {cfg.warmup_frac})")
    if not 0 <= cfg.squad_kd_alpha <= 1:
        raise SettingError(f"setting squad_kd_alpha must be in [0, 1] (got {cfg.squad_kd_alpha})")
    if cfg.min_seq_len > cfg.max_seq_len:
        raise SettingError(f"min_seq_len {cfg.min_seq_len} > max_seq_len {cfg.max_seq_len}: "
                           "no sequence could be kept")
    if cfg.squad_doc_stride >= cfg.squad_max_seq_len:
        raise SettingError(f"squad_doc_stride ({cfg.squad_doc_stride}) must be smaller than "
                           f"squad_max_seq_len ({cfg.squad_max_seq_len})")
    if cfg.tiny_hidden % cfg.tiny_heads:
        raise SettingError(f"tiny_hidden ({cfg.tiny_hidden}) must be a multiple of tiny_heads "
                           f"({cfg.tiny_heads})")
    if cfg.corpus_max_docs is not None and cfg.corpus_max_docs <= cfg.heldout_docs:
        raise SettingError(f"corpus_max_docs ({cfg.corpus_max_docs}) must exceed heldout_docs "
                           f"({cfg.heldout_docs}): nothing would be left to train on")
    if cfg.student_layers is not None and any(i < 0 for i in cfg.student_layers):
        raise SettingError(f"student_layers {cfg.student_layers} holds a negative index; "
                           "teacher layers count from 0")
    if not cfg.ft_seeds:
        raise SettingError("ft_seeds is empty: give at least one seed, e.g. -p ft_seeds (42,)")
    if not cfg.corpus:
        raise SettingError("corpus is empty: name one, e.g. -p corpus wikitext")
    for name in cfg.corpus:
        check_corpus_entry(name)
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise MissingInputError(f"data_dir {cfg.data_dir} is not a folder: point DISTIL_DATA_DIR "
                           "(or -p data_dir) at the offline data mirror, or set it to None "
                           "to use the Hugging Face Hub")


def check_corpus_entry(name: str) -> None:
    """A corpus entry is a known name or an existing, non-empty UTF-8 .txt/.jsonl path."""
    if name in CORPORA:
        return
    path = Path(name)
    if not path.exists():
        raise MissingInputError(f"corpus entry {name!r} is neither a known corpus "
                           f"{list(CORPORA)} nor an existing file or folder")
    files = [path] if path.is_file() else [*sorted(path.glob("*.txt")),
                                           *sorted(path.glob("*.jsonl"))]
    if not files:
        raise MissingInputError(f"corpus folder {path} holds no .txt or .jsonl files")
    for file in files:
        if file.stat().st_size == 0:
            raise SettingError(f"corpus file {file} is empty: give it one document per line")
        _check_utf8(file)


def _check_utf8(file: Path, block: int = 1 << 20) -> None:
    """Decode the whole file incrementally: a bad byte anywhere would fail mid-tokenisation."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(file, "rb") as fh:
        while chunk := fh.read(block):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                raise SettingError(f"corpus file {file} is not UTF-8 (byte {offset + err.start}: "
                                   f"{err.reason}); convert it, e.g. iconv -f latin1 -t utf-8"
                                   ) from err
            offset += len(chunk)
