"""What timing (`speed`) and deployment (`deploy`) both feed a model: the
tokenizer outputs it takes, tokenised batches, a task's dev texts, and its size on disk.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import Config
from .hub import load_split, load_tokenizer, resolve_model
from .student import count_parameters
from .tasks import GLUE_TASKS, TASKS

STANDARD_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FRESH_HEAD_NOTE = ("{name}: a masked-LM / encoder checkpoint, loaded with a freshly initialised "
                   "1-output classification head. Its weights are random, which does not change "
                   "the time of a forward pass: fine for timing, meaningless for accuracy.")


# ------------------------------------------------------------------------------ size
def is_quantized(model: torch.nn.Module) -> bool:
    return any(hasattr(m, "_packed_params") for m in model.modules())


def model_size(model: torch.nn.Module) -> dict[str, Any]:
    """Parameters (millions) and size on disk (MB) of the model's weights.

    Disk is what `save_pretrained` writes as safetensors, i.e. what one ships. A dynamically
    quantised model cannot be written as safetensors (its weights are packed int8 objects), so
    its state dict is measured with `torch.save` instead; `format` says which was used.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if is_quantized(model) or not hasattr(model, "save_pretrained"):
            torch.save(model.state_dict(), Path(tmp) / "weights.pt")
            fmt, pattern = "torch.save state_dict", "*.pt"
        else:
            model.save_pretrained(tmp)
            fmt, pattern = "safetensors", "*.safetensors"
        disk = sum(f.stat().st_size for f in Path(tmp).glob(pattern))
    if disk == 0:
        raise RuntimeError(f"saving {type(model).__name__} wrote no {pattern} file in a temporary "
                           "directory: cannot measure its size on disk")
    return {"params_m": count_parameters(model) / 1e6, "disk_mb": disk / 1e6, "format": fmt}


def has_classifier_head(path: str) -> bool:
    """Whether the checkpoint at `path` is a `*ForSequenceClassification` model."""
    from transformers import AutoConfig

    archs = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


# ------------------------------------------------------------------------------ loading for timing
def load_for_timing(path: str) -> tuple[torch.nn.Module, bool]:
    """A sequence classifier from any checkpoint, and whether its head is freshly initialised.

    A masked-LM (or plain encoder) checkpoint gets a fresh 1-output head
    (`num_labels=1`, STS-B's regression head): random head weights do not change the time of a
    forward pass. A checkpoint that already is a classifier keeps its own head.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    resolved = resolve_model(path)
    fresh = not has_classifier_head(resolved)
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
    try:
        kwargs = {"num_labels": 1} if fresh else {}
        model = AutoModelForSequenceClassification.from_pretrained(resolved, **kwargs)
    finally:
        hf_logging.set_verbosity(previous)
    return model.eval(), fresh


def bench_tokenizer(teacher: str, student: str, cfg: Config) -> Any:
    """The student's own tokenizer, else the teacher's, else the profile's."""
    errors = []
    for name in (student, teacher, cfg.tokenizer):
        if not name:
            continue
        try:
            return load_tokenizer(name)
        except (OSError, ValueError, TypeError) as err:
            errors.append(f"{name}: {str(err).splitlines()[0]}")
    raise OSError("no tokenizer found for the benchmark; tried " + "; ".join(errors) +
                  ". Save the tokenizer beside the model or pass tokenizer=...")


# ------------------------------------------------------------------------------ inputs
def accepted_inputs(model: Any) -> set[str]:
    """Tokenizer outputs the model takes: DistilBERT takes no token_type_ids.

    Hugging Face forwards also take `**kwargs`, which must not receive token_type_ids, so only
    named parameters count; an object listing `input_names` (an ONNX session) is believed.
    """
    names = getattr(model, "input_names", None)
    if names is not None:
        return set(names)
    fwd = getattr(model, "forward", model)
    try:
        params = inspect.signature(fwd).parameters
    except (TypeError, ValueError):
        return set(STANDARD_INPUTS)
    named = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if named & set(STANDARD_INPUTS):
        return named & set(STANDARD_INPUTS)
    return set(STANDARD_INPUTS)


def max_positions(models: Mapping[str, Any] | Sequence[Any], default: int = 512) -> int:
    """The longest input every model accepts (position embeddings), capped at `default`."""
    values = models.values() if isinstance(models, Mapping) else models
    limits = [getattr(getattr(m, "config", None), "max_position_embeddings", None) for m in values]
    return min([default, *[x for x in limits if x]])


def task_texts(task: str, cfg: Config, split: str | None = None) -> list:
    """Sentences (or sentence pairs) of a GLUE task's dev split, capped by `bench_max_examples`."""
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown task {task!r} for timing; choose one of {sorted(GLUE_TASKS)}")
    a, b = TASKS[task].text
    ds = load_split(f"glue/{task}", split or TASKS[task].dev_split, cfg.data_dir)
    if cfg.bench_max_examples is not None:
        ds = ds.select(range(min(len(ds), cfg.bench_max_examples)))
    return [(x, y) for x, y in zip(ds[a], ds[b], strict=True)] if b else list(ds[a])


def encode_batch(tokenizer: Any, batch: Sequence,
                 max_length: int = 512) -> dict[str, torch.Tensor]:
    """One padded, truncated batch of strings or (a, b) pairs as tensors."""
    if batch and isinstance(batch[0], (tuple, list)):
        return dict(tokenizer([x for x, _ in batch], [y for _, y in batch], return_tensors="pt",
                              padding=True, truncation=True, max_length=max_length))
    return dict(tokenizer(list(batch), return_tensors="pt", padding=True, truncation=True,
                          max_length=max_length))


def batches(texts: Sequence, batch_size: int) -> list[Sequence]:
    return [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]


def encode_texts(tokenizer: Any, texts: Sequence, batch_size: int = 1,
                 max_length: int = 512) -> list[dict[str, torch.Tensor]]:
    """Tokenise `texts` (strings or (a, b) pairs) into padded batches, once.

    `time_dataset_pass` feeds these very tensors to every model when tokenisation is excluded,
    so the models are compared on identical inputs.
    """
    return [encode_batch(tokenizer, b, max_length) for b in batches(texts, batch_size)]


def select_inputs(enc: Mapping[str, torch.Tensor], keys: set[str]) -> dict[str, torch.Tensor]:
    """The tensors of `enc` named in `keys` (what `accepted_inputs` says a model takes)."""
    return {k: v for k, v in enc.items() if k in keys}


def progress_bar(items: Sequence, desc: str, progress: bool) -> Any:
    """A progress bar that `TQDM_DISABLE=1` can still switch off (an explicit `disable=False`
    would override the environment)."""
    return tqdm(items, desc=desc, **({} if progress else {"disable": True}))
