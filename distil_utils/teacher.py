"""The teacher and its tokenizer: built or loaded, checked against each other, adapted.

A tokenizer whose ids mean other tokens than the teacher was trained with gives silently
wrong numbers, so every model met here is checked (`check_vocab`). A teacher without an MLM
head, or the smoke profile's tiny random one, is first adapted with masked-LM on the corpus
(`adapt_teacher`) and saved with its stamp, so later notebooks reuse it (`prepare_teacher`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForMaskedLM

from .artefacts import vocab_digest
from .config import Config
from .hub import load_tokenizer, resolve_model


def prepare_tokenizer(cfg: Config) -> Any:
    """The profile's tokenizer, checked against the teacher's vocabulary later."""
    if cfg.tokenizer is None and cfg.teacher == "tiny":
        raise ValueError("teacher='tiny' needs an explicit tokenizer (e.g. 'minilm')")
    return load_tokenizer(cfg.tokenizer or cfg.teacher)


def check_vocab(model: torch.nn.Module, tokenizer: Any, what: str = "teacher") -> None:
    """A tokenizer whose ids mean other tokens to the model gives silently wrong numbers.

    The sizes must agree, and so must the tokens: against the vocabulary digest a suite
    model records in its config (`save_model`), else against the tokenizer saved beside the
    model's weights. A model with neither (built in memory) is checked by size alone.
    """
    n = model.config.vocab_size
    if len(tokenizer) != n:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the {what} embeds "
                         f"{n}: use the {what}'s own tokenizer (tokenizer=None) or a matching one")
    expected = getattr(model.config, "distil_vocab_sha256", None)
    if expected is None:
        own = _saved_tokenizer(getattr(model.config, "_name_or_path", "") or "")
        if own is not None:  # kept, so later checks of this model do not load it again
            expected = model.config.distil_vocab_sha256 = vocab_digest(own)
    if expected is not None and expected != vocab_digest(tokenizer):
        raise ValueError(f"the tokenizer has the {what}'s vocabulary size ({n}) but other tokens "
                         f"in it (or in another order) than the {what} was trained with: use the "
                         f"{what}'s own tokenizer (tokenizer=None) or the same vocabulary file")


def _saved_tokenizer(path: str) -> Any:
    """The tokenizer saved in a model folder, or None when the folder has none."""
    folder = Path(path)
    if not folder.is_dir() or not any((folder / f).is_file()
                                      for f in ("tokenizer.json", "vocab.txt")):
        return None
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        return None


def tiny_teacher(vocab_size: int, layers: int = 4, hidden: int = 64, heads: int = 2,
                 intermediate: int = 128, max_positions: int = 512,
                 seed: int = 0, dropout: float = 0.1) -> BertForMaskedLM:
    """A randomly initialised BERT masked LM built from a config (the smoke profile's teacher;
    the tests' tiny models, with `dropout=0` so that outputs are deterministic)."""
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate,
                     max_position_embeddings=max_positions, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout)
    return BertForMaskedLM(cfg)


def load_teacher(name_or_path: str | Path, *, allow_new_head: bool = False) -> BertForMaskedLM:
    """A `BertForMaskedLM` teacher by Hub name, local path or short name ("minilm").

    The student copies the teacher's MLM head, so a checkpoint without one (a plain
    `BertModel` such as a sentence encoder) is refused unless `allow_new_head` is set — the
    teacher-adaptation step sets it, gives the model a head and trains it.
    """
    path = resolve_model(str(name_or_path))
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise OSError(f"could not read a model config from {name_or_path!r} ({path}): {err}\n"
                      "Offline? Pass a local directory saved with save_pretrained, or 'minilm'."
                      ) from err
    if config.model_type != "bert":
        raise TypeError(
            f"teacher {name_or_path!r} is a {config.model_type!r} model "
            f"(architectures {getattr(config, 'architectures', None)}); the student "
            "initialisation needs a BERT masked LM (BertForMaskedLM), e.g. bert-base-uncased"
        )
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise TypeError(f"teacher {name_or_path!r} uses {config.position_embedding_type!r} "
                        "position embeddings; DistilBERT has absolute ones only")
    try:
        model, info = BertForMaskedLM.from_pretrained(path, output_loading_info=True)
    except Exception as err:  # safetensors/torch raise many types for a damaged file
        raise OSError(f"could not load the weights of teacher {name_or_path!r} ({path}): "
                      f"{type(err).__name__}: {err}. The checkpoint may be truncated or "
                      "corrupt: download or save it again.") from err
    missing_head = [k for k in info["missing_keys"] if k.startswith("cls.predictions")]
    if missing_head and not allow_new_head:
        raise ValueError(
            f"teacher {name_or_path!r} has no masked-LM head (missing {missing_head[:3]}…): "
            "it is a plain BERT encoder. Use a BertForMaskedLM checkpoint, or let the suite "
            "give it a head and adapt it first (profile setting adapt_steps > 0: notebook 01 "
            "runs distil_utils.distill.adapt_teacher)."
        )
    missing_body = [k for k in info["missing_keys"] if k.startswith("bert.")]
    if missing_body:
        raise ValueError(f"teacher {name_or_path!r} is missing encoder weights {missing_body[:3]}"
                         "…: the checkpoint is incomplete")
    return model.eval()


def build_teacher(cfg: Config, tokenizer: Any, name: str | None = None, *,
                  allow_new_head: bool | None = None) -> torch.nn.Module:
    """The teacher `name` (default: the profile's) as built before any adaptation.

    `tiny`: a random BERT of the profile's `tiny_*` shape (seeded by `cfg.seed`); anything
    else is loaded (`load_teacher`), given a fresh MLM head where it has none if
    `allow_new_head` (default: when the profile adapts it). Checked against `tokenizer`.
    """
    name = name or cfg.teacher
    if allow_new_head is None:
        allow_new_head = cfg.adapt_steps > 0
    if name == "tiny":
        teacher = tiny_teacher(len(tokenizer), cfg.tiny_layers, cfg.tiny_hidden, cfg.tiny_heads,
                               cfg.tiny_intermediate, seed=cfg.seed)
    else:
        teacher = load_teacher(name, allow_new_head=allow_new_head)
    check_vocab(teacher, tokenizer)
    return teacher


def teacher_depth(cfg: Config) -> int | None:
    """The profile teacher's number of layers from its config alone (no weights read), or
    None where the config cannot be read yet (the loader names that problem when it loads)."""
    if cfg.teacher == "tiny":
        return cfg.tiny_layers
    try:
        return AutoConfig.from_pretrained(resolve_model(str(cfg.teacher))).num_hidden_layers
    except (OSError, ValueError, AttributeError):
        return None


def teacher_is_saved(cfg: Config) -> bool:
    """Whether the profile's teacher is saved under results/<profile>/teacher (adapted, or the
    tiny random one, which later notebooks must load by path), rather than used as named."""
    return cfg.adapt_steps > 0 or cfg.teacher == "tiny"


def teacher_path(cfg: Config) -> str:
    """Where the profile's teacher is loaded from: its saved folder, else its name."""
    return str(cfg.out / "teacher") if teacher_is_saved(cfg) else cfg.teacher
