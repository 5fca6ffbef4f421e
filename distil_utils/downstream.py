"""The paper's downstream tasks beyond GLUE (Table 2): IMDb sentiment and SQuAD v1.1, the
latter also as DistilBERT (D), distilled a second time from a SQuAD-fine-tuned teacher.

The Trainer set-up is `finetune`'s; SQuAD's features and answer post-processing are `squad`'s.
Which examples a capped run uses depends on `cfg.seed` only (see `finetune`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    Trainer,
    set_seed,
)

from . import ft_runs
from .config import Config
from .devices import check_single_process
from .finetune import (
    finish,
    make_trainer,
    predict_in_order,
    subset,
    tokenizer_for,
    train_run,
    training_args,
)
from .hub import data_source, load_split, resolve_model
from .intervals import mean_interval
from .metrics import load_metric, squad_scores
from .squad import article_split, eval_features, postprocess, train_features
from .tasks import check_squad_split, check_task_split, label_kwargs

SQUAD_HELDOUT_FRAC = 0.3  # offline: share of SQuAD dev articles kept for evaluation
KEPT = ("per_example", "intervals")  # what a run's record keeps for the uncertainty


def with_intervals(per_example: dict[str, Any], seed: int) -> dict[str, Any]:
    """`per_example` scores (%, one per test example) and each mean's 95% interval: what a
    score needs to carry its uncertainty, and the paired retention intervals of `summary`."""
    kept = {k: [float(x) for x in v] for k, v in per_example.items()}
    return {"per_example": kept,
            "intervals": {k: list(mean_interval(v, seed=seed)) for k, v in kept.items()}}


# ------------------------------------------------------------------------------ IMDb
def stratified_holdout(ds: Any, n: int, seed: int) -> tuple[Any, Any]:
    """(rest, held out): `n` rows held out with the label proportions of `ds`, seeded.

    Splits indices only (no copy of the 25k reviews), with scikit-learn's stratification.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < n < len(ds):
        raise ValueError(f"cannot hold out {n} of {len(ds)} examples; set imdb_heldout to a "
                         f"number between 1 and {len(ds) - 1}")
    labels = np.asarray(list(ds["label"]))
    rest, held = train_test_split(np.arange(len(ds)), test_size=n, stratify=labels,
                                  random_state=seed)
    return ds.select(np.sort(rest)), ds.select(np.sort(held))


def imdb_splits(cfg: Config) -> tuple[Any, Any, str]:
    """(train, test, where the test set came from), capped by imdb_max_train (else
    ft_max_train) / ft_max_eval.

    The offline copy has no test split (train + unsupervised only): a stratified, seeded
    `cfg.imdb_heldout` examples of train become the test set instead, never trained on.
    """
    train = load_split("imdb", "train", cfg.data_dir)
    try:
        test, source = load_split("imdb", "test", cfg.data_dir), "test split"
    except FileNotFoundError:
        train, test = stratified_holdout(train, cfg.imdb_heldout, cfg.seed)
        source = (f"{cfg.imdb_heldout} examples held out of train, stratified, seed "
                  f"{cfg.seed} (no test split offline)")
    cap = cfg.imdb_max_train if cfg.imdb_max_train is not None else cfg.ft_max_train
    train, test = subset(train, cap, cfg.seed), subset(test, cfg.ft_max_eval, cfg.seed)
    for split, ds in (("train", train), ("test", test)):  # before any tokenising or training
        check_task_split("imdb", split, ds, data_source("imdb", split, cfg.data_dir))
    return train, test, source


def finetune_imdb(model_path: str, cfg: Config, seed: int, tokenizer: Any = None,
                  output_dir: Path | None = None) -> dict:
    """IMDb sentiment: test accuracy (%) after fine-tuning on train (the paper's Table 2).

    Returns `accuracy`, `test_source` (the test split, or the held-out part of train
    offline) and the example counts, so the number is never mistaken for the full test set.
    """
    check_single_process("fine-tuning")  # before anything is read or written
    stamp, rid, done = ft_runs.lookup(cfg, model_path, "imdb", seed, output_dir, needs=KEPT)
    if done is not None:
        return done
    train, test, source = imdb_splits(cfg)
    tok = tokenizer_for(model_path, tokenizer)

    def encode(batch: dict) -> dict:
        return tok(batch["text"], truncation=True,
                   max_length=cfg.imdb_max_seq_len or cfg.ft_max_seq_len)

    train = train.map(encode, batched=True, remove_columns=["text"], desc="tokenise imdb")
    enc_test = test.map(encode, batched=True, remove_columns=test.column_names)
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model(model_path),
                                                               num_labels=2,
                                                               **label_kwargs("imdb"))
    folder, resume = ft_runs.checkpoint_dir(cfg, rid, stamp)
    trainer = make_trainer(model, tok, training_args(cfg, seed, str(folder), cfg.ft_epochs), train)
    trained = train_run(trainer, resume)
    preds, labels = predict_in_order(trainer, enc_test).argmax(-1), list(test["label"])
    scores = load_metric("glue", "sst2").compute(predictions=preds, references=labels)
    return finish(trainer, tok, output_dir, cfg, rid, stamp,
                   {"accuracy": scores["accuracy"],
                    "test_source": source, "n_train": len(train), "n_test": len(test),
                    **with_intervals({"accuracy": 100.0 * (preds == np.asarray(labels))},
                                     cfg.seed)}, trained, scores)


# ----------------------------------------------------------------------------- SQuAD
def squad_splits(cfg: Config) -> tuple[Any, Any, str]:
    """(train, eval, description): the Hub's train/dev, or offline an article-level split
    of the dev set (the only split mirrored), capped by squad_max_train / squad_max_eval."""
    try:
        train = load_split("squad", "train", cfg.data_dir)
        evals = load_split("squad", "validation", cfg.data_dir)
        source = "train / validation"
    except FileNotFoundError:
        dev = load_split("squad", "validation", cfg.data_dir)
        train, evals = article_split(dev, SQUAD_HELDOUT_FRAC, cfg.seed)
        source = (f"dev set split by article: {len(set(train['title']))} articles train, "
                  f"{len(set(evals['title']))} evaluate (no train split offline)")
    train = subset(train, cfg.squad_max_train, cfg.seed)
    evals = subset(evals, cfg.squad_max_eval, cfg.seed)
    for split, ds in (("train", train), ("validation", evals)):  # before any tokenising
        check_squad_split(split, ds, data_source("squad", split, cfg.data_dir))
    return train, evals, source


def qa_kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)) over positions, batch mean.

    T² keeps the gradient scale of the soft term independent of T (Hinton et al.). Padding
    positions (`mask` == 0) are excluded from both distributions: with dynamic padding their
    logits are arbitrary and would otherwise depend on the batch's longest sequence.
    """
    if mask is not None:
        keep = mask.bool()
        fill = torch.finfo(student.dtype).min
        student, teacher = student.masked_fill(~keep, fill), teacher.masked_fill(~keep, fill)
    return F.kl_div(F.log_softmax(student / temperature, -1),
                    F.log_softmax(teacher / temperature, -1), reduction="batchmean",
                    log_target=True) * temperature**2


def qa_distill_loss(student_out: Any, teacher_out: Any, alpha: float, temperature: float,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, KD term) of DistilBERT (D): (1-α)·task CE + α·KD, KD averaged over the
    start and end logits as the task CE is (the reference run_squad_w_distillation.py)."""
    kd = 0.5 * (qa_kd_loss(student_out.start_logits, teacher_out.start_logits, temperature, mask)
                + qa_kd_loss(student_out.end_logits, teacher_out.end_logits, temperature, mask))
    return (1 - alpha) * student_out.loss + alpha * kd, kd


def _forward_args(model: torch.nn.Module) -> set[str]:
    import inspect

    core = model.module if hasattr(model, "module") else model
    return set(inspect.signature(core.forward).parameters)


class QADistillTrainer(Trainer):
    """`Trainer` whose loss adds the distillation term to a SQuAD-fine-tuned teacher.

    The teacher (e.g. BERT) may need token_type_ids that the student (DistilBERT) does not
    take, so the data keeps every column (`remove_unused_columns=False`) and each model gets
    the inputs its forward accepts.
    """

    def __init__(self, *args: Any, teacher: torch.nn.Module, alpha: float, temperature: float,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval()
        self.alpha, self.temperature = alpha, temperature
        self.last_kd: float | None = None  # for inspection / tests

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        accepted = _forward_args(model)
        out = model(**{k: v for k, v in inputs.items() if k in accepted})
        teacher_args = _forward_args(self.teacher)
        with torch.inference_mode():
            t = self.teacher(**{k: v for k, v in inputs.items() if k in teacher_args
                                and k not in ("start_positions", "end_positions")})
        # clone: inference-mode tensors cannot be saved for the student's backward pass
        t_logits = type(t)(start_logits=t.start_logits.clone(), end_logits=t.end_logits.clone())
        loss, kd = qa_distill_loss(out, t_logits, self.alpha, self.temperature,
                                   inputs.get("attention_mask"))
        self.last_kd = float(kd.detach())
        return (loss, out) if return_outputs else loss


def _check_qa_teacher(path: str) -> None:
    archs = AutoConfig.from_pretrained(path).architectures or []
    if not any(a.endswith("ForQuestionAnswering") for a in archs):
        raise ValueError(f"teacher_qa_path {path!r} holds {archs or 'no architecture'}, not a "
                         "SQuAD-fine-tuned model: its QA head would be random. Fine-tune the "
                         "teacher first: finetune_squad(teacher, cfg, seed, output_dir=PATH).")


def finetune_squad(model_path: str, cfg: Config, seed: int, teacher_qa_path: str | None = None,
                   output_dir: Path | None = None, tokenizer: Any = None) -> dict:
    """SQuAD v1.1: exact match and F1 (%) on the evaluation articles.

    With `teacher_qa_path` (a SQuAD-fine-tuned model with the same vocabulary), the loss is
    DistilBERT (D)'s: (1 - squad_kd_alpha)·CE + squad_kd_alpha·T²·KL on the start and end
    logits, T = cfg.temperature, the teacher frozen in eval mode.
    """
    check_single_process("fine-tuning")  # before anything is read or written
    if teacher_qa_path is not None:
        _check_qa_teacher(resolve_model(teacher_qa_path))
    what = "squad" if teacher_qa_path is None else "squad_d"
    stamp, rid, done = ft_runs.lookup(cfg, model_path, what, seed, output_dir, needs=KEPT,
                                      teacher_qa=teacher_qa_path)
    if done is not None:
        return done
    tok = tokenizer_for(model_path, tokenizer)
    train, evals, source = squad_splits(cfg)
    feats = train_features(train, tok, cfg.squad_max_seq_len, cfg.squad_doc_stride)
    eval_feats = eval_features(evals, tok, cfg.squad_max_seq_len, cfg.squad_doc_stride)
    set_seed(seed)
    model = AutoModelForQuestionAnswering.from_pretrained(resolve_model(model_path))
    folder, resume = ft_runs.checkpoint_dir(cfg, rid, stamp)
    args = training_args(cfg, seed, str(folder), cfg.squad_epochs,
                          remove_unused_columns=teacher_qa_path is None)
    if teacher_qa_path is None:
        trainer = make_trainer(model, tok, args, feats)
    else:
        teacher = AutoModelForQuestionAnswering.from_pretrained(resolve_model(teacher_qa_path))
        trainer = make_trainer(model, tok, args, feats, QADistillTrainer, teacher=teacher,
                           alpha=cfg.squad_kd_alpha, temperature=cfg.temperature)
    trained = train_run(trainer, resume)
    keep = {"input_ids", "attention_mask", "token_type_ids"} & _forward_args(trainer.model)
    model_inputs = eval_feats.remove_columns([c for c in eval_feats.column_names
                                              if c not in keep])
    start, end = predict_in_order(trainer, model_inputs)[:2]
    preds = postprocess(evals, eval_feats, start, end)
    refs = [{"id": e["id"], "answers": e["answers"]} for e in evals]
    scores = load_metric("squad").compute(
        predictions=[{"id": k, "prediction_text": v} for k, v in preds.items()],
        references=refs)
    return finish(trainer, tok, output_dir, cfg, rid, stamp,
                   {**scores, "split": source, "n_train": len(train),
                    "n_train_features": len(feats), "n_eval": len(evals),
                    "distilled": teacher_qa_path is not None,
                    **with_intervals(squad_scores(preds, refs), cfg.seed)}, trained, scores)
