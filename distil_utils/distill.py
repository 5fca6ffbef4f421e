"""Distillation pre-training: the step's loss, the corpus, the held-out measure, the run.

`make_distill_loss` is the paper's step (mask, frozen teacher, student, `losses.triple_loss`);
`run_distillation` trains a student with it through `training.train_loop` and saves it;
`main` is the command line (`python -m distil_utils.distill --profile cpu`, `--plan`).

Multi-device runs use DDP through `accelerate` under `torchrun` (`devices.py`):

    torchrun --nproc_per_node 2 -m distil_utils.distill --profile cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DistilBertForMaskedLM

from .artefacts import (
    is_current,
    read_stamp,
    save_model,
    stale_reason,
    student_stamp,
    teacher_stamp,
    write_result,
)
from .config import Config, get_config
from .data import corpus_cache_dir, corpus_info, prepare_sequences, token_counts_of
from .devices import dist_info, resolve_device
from .fused_head import can_fuse, fused_triple_loss
from .heldout import evaluate_mlm
from .losses import triple_loss
from .masking import encoder_mask, masked_batch, masking_weights
from .modelcard import add_results, card_facts, mlm_results
from .recipe import plan, resolve
from .results_io import ResultsLockedError, lock_results, read_result
from .student import check_layers, random_student, student_from_teacher
from .teacher import (
    build_teacher,
    check_vocab,
    load_teacher,
    prepare_tokenizer,
    teacher_depth,
    teacher_is_saved,
)
from .training import (
    PHASE,
    LossFn,
    StepLoss,
    apply_speed_settings,
    autocast,
    checkpoint_for,
    run_fingerprint,
    train_loop,
)
from .validation import declared_spelling, parse_value


# ------------------------------------------------------------------------ the losses
def mlm_prepare(cfg: Config, weights: torch.Tensor, mask_id: int,
                vocab_size: int) -> Callable[[dict, torch.Generator], dict]:
    """The host half of every masked-LM step (`training.StepLoss.prepare`): the reference's
    smoothed dynamic masking and the loss's row indices (`masking.masked_batch`)."""

    def prepare(batch: dict, gen: torch.Generator) -> dict:
        return masked_batch(batch, weights, mask_id, vocab_size, gen, mlm_prob=cfg.mlm_prob,
                            count_special=cfg.mlm_count_special,
                            ce_on_masked_only=cfg.ce_on_masked_only)

    return prepare


def make_distill_loss(teacher: torch.nn.Module, cfg: Config, weights: torch.Tensor,
                      mask_id: int, vocab_size: int) -> LossFn:
    """The paper's step: mask, run the frozen teacher, run the student, triple loss.

    The masking is done on the host (`mlm_prepare`); the rest runs on the device. The speed
    settings of `cfg` (`distill_fused_head`, `distill_autocast`, `distill_compile`) change
    how, not what, the step computes.
    """
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    compiled: set[int] = set()

    def forward(student: torch.nn.Module, batch: dict) -> dict:
        dev = batch["input_ids"].device
        if cfg.distill_compile and dev.type == "cuda" and id(student) not in compiled:
            for m in (teacher, getattr(student, "module", student)):
                getattr(m, "bert", getattr(m, "distilbert", m)).compile()
            compiled.add(id(student))
        masked, am, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        enc_am = encoder_mask(batch)  # None without padding: no device sync in transformers
        terms = dict(temperature=cfg.temperature, alpha_ce=cfg.alpha_ce,
                     alpha_mlm=cfg.alpha_mlm, alpha_cos=cfg.alpha_cos,
                     ce_on_masked_only=cfg.ce_on_masked_only)
        with autocast(cfg, dev):
            if cfg.distill_fused_head and can_fuse(teacher, student):
                # the same triple_loss, without (tokens x vocab) logits: see fused_head
                return fused_triple_loss(teacher, student, masked, am, labels,
                                         chunk_rows=cfg.distill_chunk_rows, **terms)
            with PHASE("distil.teacher_forward"), torch.inference_mode():
                t_out = teacher(input_ids=masked, attention_mask=enc_am,
                                output_hidden_states=True)
            # Inference tensors cannot be saved for backward: the (small) hidden states are
            # copied out; the logits are only read through an index_select that copies the
            # rows the loss uses.
            t_hidden = t_out.hidden_states[-1].clone()
            with PHASE("distil.student_forward"):  # the vocabulary head is part of it here
                s_out = student(input_ids=masked, attention_mask=enc_am,
                                output_hidden_states=True)
            with PHASE("distil.vocab_head"):
                return triple_loss(s_out.logits, t_out.logits, s_out.hidden_states[-1],
                                   t_hidden, labels, am, ce_index=batch["ce_index"],
                                   mlm_index=batch["mlm_index"], **terms)

    return StepLoss(mlm_prepare(cfg, weights, mask_id, vocab_size), forward)


def make_mlm_loss(cfg: Config, weights: torch.Tensor, mask_id: int, vocab_size: int) -> LossFn:
    """Masked-LM loss of a `BertForMaskedLM`, with vocabulary logits only where masked.

    `BertForMaskedLM.forward` projects every position onto the 30,522-word vocabulary; the
    loss only needs the ~15% masked ones, so the head is applied to those rows alone.
    """

    def forward(model: torch.nn.Module, batch: dict) -> dict:
        # `model` is the bare model: train_loop calls this inside DDP's forward
        # (devices.LossModule), so the rows-only head below is still all-reduced
        hidden = model.bert(input_ids=batch["input_ids"],
                            attention_mask=encoder_mask(batch)).last_hidden_state
        rows = batch["mlm_index"]  # the masked positions, found on the host
        logits = model.cls(hidden.reshape(-1, hidden.size(-1)).index_select(0, rows))
        gold = batch["labels"].reshape(-1).index_select(0, rows)
        return {"loss": F.cross_entropy(logits.float(), gold)}

    return StepLoss(mlm_prepare(cfg, weights, mask_id, vocab_size), forward)


# ------------------------------------------------------------------- the pipeline
def corpus_weights(seqs: Any, tokenizer: Any, smoothing: float | None) -> torch.Tensor:
    """The reference's masking weights from the corpus token counts (uniform if None);
    the counts are one bincount over the Arrow values, cached beside the corpus cache."""
    counts = None
    if smoothing is not None:
        counts = token_counts_of(seqs, len(tokenizer))
    return masking_weights(counts, tokenizer.all_special_ids, len(tokenizer), smoothing)


class CorpusNotPreparedError(RuntimeError):
    """A multi-process run found no tokenised corpus: it is prepared in one process first."""


def prepare_corpus(cfg: Config, tokenizer: Any) -> tuple[Any, Any]:
    """Tokenised (train, held-out) sequences for the profile's corpus, and the recipe.

    Tokenised once per corpus settings and cached on disk (`data.prepare_sequences`). In one
    process a missing cache is built here; under several it must exist already
    (`--prepare-corpus`), so no rank waits in a collective while another tokenises and
    `dist_timeout_s` can stay at minutes. Fills in the recipe's derived settings on `cfg`.
    """
    if cfg.student_layers is not None and (depth := teacher_depth(cfg)) is not None:
        try:  # before any tokenising or adaptation: the teacher's depth is in its config
            check_layers(cfg.student_layers, depth)
        except ValueError as err:
            raise ValueError(f"setting student_layers {tuple(cfg.student_layers)}: {err} "
                             f"(teacher {cfg.teacher!r})") from None
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and corpus_info(cfg) is None:
        raise CorpusNotPreparedError(
            f"no tokenised corpus at {corpus_cache_dir(cfg)} for this run of {launched} "
            "processes: prepare it once, in one process, with the same profile and -p "
            f"settings: python -m distil_utils.distill --profile {cfg.profile} [-p ...] "
            "--prepare-corpus; then start torchrun again")
    _, world = dist_info(cfg.dist_timeout_s)
    train, held = prepare_sequences(cfg, tokenizer)
    resolve(cfg, len(train), world)
    return train, held


def run_distillation(cfg: Config, teacher: torch.nn.Module, tokenizer: Any, train_seqs: Any,
                     *, name: str = "student", layers: Any = None, init: str = "skip",
                     stop_at: int | None = None,
                     on_log: Callable[[dict], None] | None = None) -> tuple[torch.nn.Module, list]:
    """Distil `teacher` into a layer-skipped (or random) student; save it under `name`.

    The student is saved with `save_pretrained` to `results/<profile>/<name>`, stamped with
    the settings and teacher it was made from, and its loss history to `<name>_history.json`;
    an interrupted run resumes from its checkpoint, and a student already distilled under
    exactly these settings is loaded instead of trained again.
    """
    if cfg.max_steps is None:
        raise ValueError("max_steps is None: with `epochs` it is derived from the corpus size "
                         "by prepare_corpus(cfg, tokenizer); call that first, or set max_steps")
    if cfg.max_steps < 1:
        raise ValueError(f"max_steps is {cfg.max_steps}: distillation would train nothing and "
                         "save nothing. Give it steps (e.g. -p max_steps 200); the undistilled "
                         "student is the ablation row 'no distillation'")
    check_vocab(teacher, tokenizer)
    if layers is not None:
        cfg = dataclasses.replace(cfg, student_layers=tuple(int(i) for i in layers))
    stamp = student_stamp(cfg, init)
    out_dir, history_path = cfg.out / name, cfg.out / f"{name}_history.json"
    dev = resolve_device(cfg.device)
    if stop_at is None and is_current(out_dir, stamp) and history_path.is_file():
        history = read_result(history_path)["metrics"]["history"]
        return DistilBertForMaskedLM.from_pretrained(out_dir).to(dev).eval(), history
    student = student_from_teacher(teacher, cfg.student_layers)
    if init == "random":
        student = random_student(teacher, student.config.n_layers, seed=cfg.seed)
    elif init != "skip":
        raise ValueError(f"init must be 'skip' or 'random', got {init!r}")
    rank, _ = dist_info()
    teacher.to(dev)
    student.to(dev)
    apply_speed_settings(cfg, teacher, student)
    weights = corpus_weights(train_seqs, tokenizer, cfg.mlm_smoothing)
    loss_fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    fp = run_fingerprint(cfg, "distill", init=init,
                         layers=list(student.config.to_dict().get("distil_teacher_layers", [])))
    fp["teacher_sha256"] = stamp["inputs"]["teacher"]
    ckpt = checkpoint_for(cfg.out / "checkpoints" / f"{name}.pt", fp)
    history = train_loop(student, loss_fn, train_seqs, cfg=cfg, max_steps=cfg.max_steps,
                         lr=cfg.lr, ckpt_path=ckpt, fingerprint=fp,
                         pad_id=tokenizer.pad_token_id, stop_at=stop_at, on_log=on_log,
                         desc=f"distil {name}",
                         fp16_scaling=cfg.distill_autocast == "fp16")
    finished = bool(history) and history[-1]["step"] >= cfg.max_steps
    if rank == 0 and finished:
        save_model(student, tokenizer, out_dir, stamp, card=card_facts(cfg))
        write_result(history_path, {"history": history}, cfg, name=name, init=init,
                     layers=fp["layers"], model=str(out_dir))
    return student, history


# ------------------------------------------------------------------- the teacher
def prepare_teacher(cfg: Config, tokenizer: Any, train_seqs: Any = None,
                    held_seqs: Any = None) -> tuple[torch.nn.Module, str, dict]:
    """The profile's masked-LM teacher, its path, and its adaptation report.

    A teacher without an MLM head (a sentence encoder such as MiniLM) or the smoke profile's
    tiny random teacher is given a head and trained with masked-LM for `cfg.adapt_steps`
    steps, then saved under `results/<profile>/teacher` with its stamp and adaptation report.
    The saved teacher is reused only while its stamp matches the settings.
    """
    cached = cfg.out / "teacher"
    stamp = teacher_stamp(cfg)
    report_path = cfg.out / "teacher_adaptation.json"
    saved = teacher_is_saved(cfg)
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
            train_seqs, held_seqs = prepare_corpus(cfg, tokenizer)
        report = adapt_teacher(teacher, cfg, tokenizer, train_seqs, held_seqs)
    if rank == 0:
        save_model(teacher, tokenizer, cached, stamp, report=report, card=card_facts(
            cfg, results=mlm_results(cfg, report["after"]) if report else []))
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


# ------------------------------------------------------------------------ command line
def config_from_cli(profile: str, pairs: list[list[str]] | None, **fixed: Any) -> Config:
    """The profile's config with `-p key value` pairs applied; `-p key None` sets None.

    `fixed` are the command's own options, where None means "the profile's value".
    """
    over = parse_overrides(pairs)
    return get_config(profile, explicit_none=tuple(k for k, v in over.items() if v is None),
                      **fixed, **over)


def parse_overrides(pairs: list[list[str]] | None) -> dict[str, Any]:
    """`-p key value` pairs, each value read by `validation.parse_value`; a name in any case
    (`-p SEED 7`, as the notebooks spell their parameters, is `-p seed 7`)."""
    fields = [f.name for f in dataclasses.fields(Config)]
    return {declared_spelling(key, fields): parse_value(value) for key, value in pairs or []}


# Folders of a profile's results that are not a student of this command's to (over)write.
RESERVED_NAMES = ("teacher", "finetuned", "checkpoints", "corpus", "config", "notebooks",
                  "figures", "ft_runs", "ft_epochs", "runs", "deploy", "models")


def check_student_name(name: str) -> None:
    """Refuse a `--name` that would overwrite one of the suite's own folders (the teacher...)."""
    if name in RESERVED_NAMES or name.startswith(("ablation_", ".")) or "/" in name \
            or "\\" in name or not name:
        raise ValueError(f"--name {name!r} names a folder the suite keeps for something else "
                         f"(reserved: {', '.join(RESERVED_NAMES)}, ablation_*, hidden or nested "
                         "names): give the student its own name, e.g. --name student_long")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Distil a BERT teacher into a DistilBERT student.")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                    help="override a profile setting, e.g. -p max_steps 200")
    ap.add_argument("--name", default="student", help="output directory name under results/")
    ap.add_argument("--init", default="skip", choices=["skip", "random"])
    ap.add_argument("--stop-at", type=int, default=None, help="stop after this step (resumable)")
    ap.add_argument("--plan", action="store_true", help="print the run's plan (processes, "
                    "batches, steps, precision) as one JSON object and exit, training nothing")
    ap.add_argument("--world-size", type=int, default=None,
                    help="with --plan: plan for this many processes (default: this machine)")
    ap.add_argument("--prepare-corpus", action="store_true",
                    help="tokenise the profile's corpus into its cache (one process, before a "
                    "torchrun run; nothing is done when it is there) and exit")
    args = ap.parse_args(argv)
    if args.plan:
        print(json.dumps(plan(config_from_cli(args.profile, args.param), args.world_size)))
        return
    if args.prepare_corpus:
        prepare_corpus_only(ap, args)
        return
    try:  # every bad setting or output path is named here, before any work
        check_student_name(args.name)
        cfg = config_from_cli(args.profile, args.param)
        if cfg.max_steps is not None and cfg.max_steps < 1:  # None: from epochs (recipe)
            raise ValueError(f"max_steps is {cfg.max_steps}: this command would train nothing "
                             "and save nothing; give it steps, e.g. -p max_steps 200")
        if int(os.environ.get("RANK", "0")) == 0:  # rank 0 writes; the other ranks only read
            lock_results(cfg.out, f"distill --profile {args.profile} --name {args.name}")
    except (ValueError, ResultsLockedError, NotADirectoryError) as err:
        ap.exit(2, f"error: {err}\n")
    torch.manual_seed(cfg.seed)
    tokenizer = prepare_tokenizer(cfg)
    try:
        train, held = prepare_corpus(cfg, tokenizer)
    except (CorpusNotPreparedError, ValueError) as err:  # student_layers, a too-small corpus
        ap.exit(2, f"error: {err}\n")
    teacher, teacher_path, _ = prepare_teacher(cfg, tokenizer, train, held)
    student, history = run_distillation(cfg, teacher, tokenizer, train, name=args.name,
                                        init=args.init, stop_at=args.stop_at)
    rank, _ = dist_info()
    if rank == 0 and history:
        last = history[-1]
        print(f"step {last['step']}: loss {last['loss']:.4f} (ce {last['ce']:.4f}, "
              f"mlm {last['mlm']:.4f}, cos {last['cos']:.4f}) -> {cfg.out / args.name}")
        # the notebooks' held-out measure (same masking seed), so a command-line variant of
        # the distillation is comparable with the committed ablation table
        mlm = evaluate_mlm(student, held, tokenizer, n_batches=cfg.eval_batches, seed=cfg.seed)
        print(f"held-out masked-token accuracy {mlm['mlm_acc']:.2f}% "
              f"[{mlm['mlm_acc_low']:.2f}, {mlm['mlm_acc_high']:.2f}] "
              f"(loss {mlm['mlm_loss']:.4f}, {mlm['n_masked']} tokens)")
        add_results(cfg.out / args.name, mlm_results(cfg, mlm))  # the card tells it too
        write_result(cfg.out / f"{args.name}_run.json",
                     {"teacher": teacher_path, "steps": last["step"], "init": args.init, **mlm},
                     cfg)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def prepare_corpus_only(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--prepare-corpus`: build the tokenised corpus cache in this one process (idempotent)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        ap.exit(2, "error: --prepare-corpus runs in one process: start it without torchrun\n")
    try:
        cfg = config_from_cli(args.profile, args.param)
        lock_results(cfg.out, f"distill --profile {args.profile} --prepare-corpus")
    except (ValueError, ResultsLockedError, NotADirectoryError) as err:
        ap.exit(2, f"error: {err}\n")
    found = corpus_info(cfg) is not None
    prepare_sequences(cfg, prepare_tokenizer(cfg))
    print(json.dumps({"corpus_cache": str(corpus_cache_dir(cfg)),
                      "already_prepared": found, **(corpus_info(cfg) or {})}))


if __name__ == "__main__":
    main()
