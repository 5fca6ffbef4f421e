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

from .config import Config
from .devices import dist_info
from .results_io import write_result
from .training import checkpoint_for, run_fingerprint, train_loop


def prepare_tokenizer(cfg: Config) -> Any:
    """The profile's tokenizer, checked against the teacher's vocabulary later."""
    from .hub import load_tokenizer

    if cfg.tokenizer is None and cfg.teacher == "tiny":
        raise ValueError("teacher='tiny' needs an explicit tokenizer (e.g. 'minilm')")
    return load_tokenizer(cfg.tokenizer or cfg.teacher)


def check_vocab(model: torch.nn.Module, tokenizer: Any, what: str = "teacher") -> None:
    """A tokenizer whose ids mean other tokens to the model gives silently wrong numbers.

    The sizes must agree, and so must the tokens: against the vocabulary digest a suite
    model records in its config (`save_model`), else against the tokenizer saved beside the
    model's weights. A model with neither (built in memory) is checked by size alone.
    """
    from .artefacts import vocab_digest

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
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        return None


def build_teacher(cfg: Config, tokenizer: Any, name: str | None = None, *,
                  allow_new_head: bool | None = None) -> torch.nn.Module:
    """The teacher `name` (default: the profile's) as built before any adaptation.

    `tiny`: a random BERT of the profile's `tiny_*` shape (seeded by `cfg.seed`); anything
    else is loaded (`student.load_teacher`), given a fresh MLM head where it has none if
    `allow_new_head` (default: when the profile adapts it). Checked against `tokenizer`.
    """
    from .student import load_teacher, tiny_teacher

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


def prepare_teacher(cfg: Config, tokenizer: Any, train_seqs: Any = None,
                    held_seqs: Any = None) -> tuple[torch.nn.Module, str, dict]:
    """The profile's masked-LM teacher, its path, and its adaptation report.

    A teacher without an MLM head (a sentence encoder such as MiniLM) or the smoke profile's
    tiny random teacher is given a head and trained on the corpus with masked-LM for
    `cfg.adapt_steps` steps — saved under `results/<profile>/teacher` with its stamp (the
    settings it was made from, and the adaptation report) and resumable. The saved teacher is
    reused only while its stamp matches the profile's settings; otherwise it is made again.
    A tiny teacher is saved even unadapted, so later notebooks load it by path.
    """
    from .artefacts import read_stamp, stale_reason, teacher_stamp
    from .student import load_teacher, save_model

    cached = cfg.out / "teacher"
    stamp = teacher_stamp(cfg)
    report_path = cfg.out / "teacher_adaptation.json"
    saved = cfg.adapt_steps > 0 or cfg.teacher == "tiny"
    rank = dist_info()[0]
    if saved:
        reason = stale_reason(cached, stamp)
        if reason is None:
            teacher = load_teacher(cached)
            check_vocab(teacher, tokenizer)
            report = read_stamp(cached).get("report") or {}
            if rank == 0 and report and not report_path.exists():
                # the report travels inside the teacher's folder: a kill between the two
                # writes loses nothing
                write_result(report_path, report, cfg, teacher=cfg.teacher, model=str(cached))
            return teacher, str(cached), report
        if (cached / "config.json").exists() and rank == 0:
            print(f"[teacher] {reason}: making it again", flush=True)
    teacher = build_teacher(cfg, tokenizer)
    if not saved:
        return teacher.eval(), cfg.teacher, {}
    report = {}
    if cfg.adapt_steps > 0:
        if train_seqs is None:
            from .distill import prepare_corpus

            train_seqs, held_seqs = prepare_corpus(cfg, tokenizer)
        report = adapt_teacher(teacher, cfg, tokenizer, train_seqs, held_seqs)
    if rank == 0:
        save_model(teacher, tokenizer, cached, stamp, report=report)
        if report:
            write_result(report_path, report, cfg, teacher=cfg.teacher, model=str(cached))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # every rank returns the path once the folder exists
    return teacher.eval(), str(cached), report


def adapt_teacher(teacher: torch.nn.Module, cfg: Config, tokenizer: Any, train_seqs: Any,
                  held_seqs: Any) -> dict:
    """Train a teacher's MLM head (lr adapt_head_lr) and encoder (adapt_lr) with masked-LM."""
    # the corpus, its masking weights, the MLM loss and the held-out measure are the
    # distillation's own, so the adapted teacher is measured as the students are
    from .distill import corpus_weights, make_mlm_loss
    from .heldout import evaluate_mlm

    before = evaluate_mlm(teacher, held_seqs, tokenizer, n_batches=cfg.eval_batches,
                          seed=cfg.seed)
    head = [p for n, p in teacher.named_parameters() if n.startswith("cls.")]
    head_ids = {id(p) for p in head}
    body = [p for p in teacher.parameters() if id(p) not in head_ids]
    weights = corpus_weights(train_seqs, tokenizer, cfg.adapt_mlm_smoothing)
    loss_fn = make_mlm_loss(cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    fp = run_fingerprint(cfg, "adapt")
    history = train_loop(
        teacher, loss_fn, train_seqs, cfg=cfg, max_steps=cfg.adapt_steps, lr=cfg.adapt_lr,
        ckpt_path=checkpoint_for(cfg.out / "checkpoints" / "teacher_adapt.pt", fp),
        fingerprint=fp,
        pad_id=tokenizer.pad_token_id,
        param_groups=[{"params": body, "lr": cfg.adapt_lr},
                      {"params": head, "lr": cfg.adapt_head_lr}], desc="adapt teacher")
    after = evaluate_mlm(teacher, held_seqs, tokenizer, n_batches=cfg.eval_batches,
                         seed=cfg.seed)
    return {"before": before, "after": after, "steps": cfg.adapt_steps,
            "mlm_smoothing": cfg.adapt_mlm_smoothing,
            "final_loss": history[-1]["loss"] if history else None}
