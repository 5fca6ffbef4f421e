"""Fine-tuning on GLUE, IMDb and SQuAD v1.1 with transformers' own `Trainer`.

Any checkpoint the suite produces or loads works: a BERT or DistilBERT masked-LM checkpoint gets
a fresh task head (`AutoModelFor...`), a fine-tuned one keeps its own. The same functions run
on the Hub's data sets or on a local copy in the Hub's schema.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from .config import GLUE_TASKS, Config
from .hub import load_split, load_tokenizer, resolve_model
from .io import write_result
from .metrics import glue_macro_score, glue_metrics, squad_metrics
from .squad import article_split, postprocess, prepare_eval_features, prepare_train_features

TEXT_KEYS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}
EVAL_SPLITS = {"mnli": ("validation_matched", "validation_mismatched")}


def num_labels(task: str) -> int:
    return {"stsb": 1, "mnli": 3}.get(task, 2)


def _check_task(task: str) -> None:
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; GLUE tasks are {list(GLUE_TASKS)}")


def _subset(ds: Any, n: int | None, seed: int) -> Any:
    return ds.shuffle(seed=seed).select(range(n)) if n is not None and len(ds) > n else ds


def _args(cfg: Config, seed: int, out: str, epochs: float, **kw: Any) -> TrainingArguments:
    return TrainingArguments(
        output_dir=out, num_train_epochs=epochs, learning_rate=cfg.ft_lr,
        per_device_train_batch_size=cfg.ft_batch_size, per_device_eval_batch_size=64,
        warmup_steps=0.1, weight_decay=0.01, seed=seed, data_seed=seed, save_strategy="no",
        eval_strategy="no", logging_strategy="no", report_to=[],
        disable_tqdm=os.environ.get("TQDM_DISABLE") == "1", use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, log_level="error", **kw)


def _tokenizer(model_path: str, tokenizer: Any) -> Any:
    return tokenizer if tokenizer is not None else load_tokenizer(model_path)


# ------------------------------------------------------------------------------ GLUE
def finetune_glue(model_path: str, task: str, cfg: Config, seed: int,
                  output_dir: Path | None = None, tokenizer: Any = None) -> dict[str, float]:
    """Fine-tune on one GLUE task's train split; the task's metrics on its dev split(s)."""
    _check_task(task)
    tok = _tokenizer(model_path, tokenizer)
    train = _subset(load_split(f"glue/{task}", "train", cfg.data_dir), cfg.ft_max_train, seed)
    evals = {s: _subset(load_split(f"glue/{task}", s, cfg.data_dir), cfg.ft_max_eval, 0)
             for s in EVAL_SPLITS.get(task, ("validation",))}
    a, b = TEXT_KEYS[task]

    def encode(batch: dict) -> dict:
        return tok(batch[a], batch[b] if b else None, truncation=True,
                   max_length=cfg.ft_max_seq_len)

    regression = task == "stsb"
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(model_path), num_labels=num_labels(task),
        problem_type="regression" if regression else "single_label_classification")
    if regression:
        train = train.cast_column("label", _float_feature())
    train = train.map(encode, batched=True, remove_columns=[c for c in train.column_names
                                                             if c != "label"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model=model, args=_args(cfg, seed, tmp, cfg.ft_epochs),
                          train_dataset=train, data_collator=DataCollatorWithPadding(tok),
                          processing_class=tok)
        trainer.train()
        out: dict[str, float] = {}
        for split, ds in evals.items():
            refs = list(ds["label"])
            enc = ds.map(encode, batched=True, remove_columns=ds.column_names)
            logits = trainer.predict(enc).predictions
            preds = logits[:, 0] if regression else logits.argmax(-1)
            name = task if len(evals) == 1 else f"{task}_{split.split('_')[-1]}"
            metrics = glue_metrics(name if name in ("mnli_matched", "mnli_mismatched")
                                   else task, preds, refs)
            out.update(metrics if len(evals) == 1 else
                       {f"{k}_{split.split('_')[-1]}": v for k, v in metrics.items()})
    if output_dir is not None:
        from .student import save_model

        save_model(trainer.model, tok, output_dir)
    return out


def _float_feature() -> Any:
    import datasets

    return datasets.Value("float32")


def run_glue(model_path: str, cfg: Config, name: str, tokenizer: Any = None,
             tasks: tuple[str, ...] | None = None, save_first_seed: bool = True) -> dict:
    """Every task × seed of the profile; the median over seeds per metric and the macro score.

    Tasks whose data is not reachable (offline copies lack some train splits) are skipped and
    recorded with the reason, never silently dropped. Writes `results/<profile>/glue_<name>.json`;
    the first seed's model of each task is saved under `finetuned/<name>_<task>`.
    """
    tasks = tasks or cfg.glue_tasks
    for t in tasks:
        _check_task(t)
    per_task: dict[str, dict[str, float]] = {}
    runs: dict[str, list[dict]] = {}
    skipped: dict[str, str] = {}
    for task in tasks:
        try:
            load_split(f"glue/{task}", "train", cfg.data_dir)
        except (FileNotFoundError, ConnectionError) as err:
            skipped[task] = str(err).splitlines()[0]
            continue
        runs[task] = []
        for i, seed in enumerate(cfg.ft_seeds):
            save = cfg.out / "finetuned" / f"{name}_{task}" if i == 0 and save_first_seed else None
            runs[task].append(finetune_glue(model_path, task, cfg, seed, save, tokenizer))
        per_task[task] = {k: statistics.median(r[k] for r in runs[task]) for k in runs[task][0]}
    flat = {t: _paper_column(t, m) for t, m in per_task.items()}
    macro = glue_macro_score(_split_mnli(per_task)) if per_task else None
    result = {"model": model_path, "per_task": per_task, "columns": flat, "score": macro,
              "runs": runs, "seeds": list(cfg.ft_seeds), "skipped": skipped}
    write_result(cfg.out / f"glue_{name}.json", result, cfg, model=model_path, name=name)
    return result


def _split_mnli(per_task: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for task, m in per_task.items():
        if task == "mnli":
            out["mnli_matched"] = {"accuracy": m["accuracy_matched"]}
            out["mnli_mismatched"] = {"accuracy": m["accuracy_mismatched"]}
        else:
            out[task] = m
    return out


def _paper_column(task: str, metrics: dict[str, float]) -> float:
    """The single figure the paper's Table 1 prints for a task (mean of its metrics)."""
    from .metrics import task_score

    if task == "mnli":
        return float(np.mean([metrics["accuracy_matched"], metrics["accuracy_mismatched"]]))
    return task_score(task, metrics)


# ------------------------------------------------------------------------------ IMDb
def imdb_splits(cfg: Config, seed: int) -> tuple[Any, Any, str]:
    """(train, test, where the test set came from). The offline copy has no test split:
    a stratified, seeded `imdb_heldout` examples of train are held out instead."""
    import datasets

    train = load_split("imdb", "train", cfg.data_dir)
    try:
        test, source = load_split("imdb", "test", cfg.data_dir), "test split"
    except FileNotFoundError:
        train = train.cast_column("label", datasets.ClassLabel(names=["neg", "pos"]))
        parts = train.train_test_split(test_size=cfg.imdb_heldout, stratify_by_column="label",
                                       seed=seed)
        train, test = parts["train"], parts["test"]
        source = f"{cfg.imdb_heldout} examples held out of train (no test split offline)"
    return _subset(train, cfg.ft_max_train, seed), _subset(test, cfg.ft_max_eval, 0), source


def finetune_imdb(model_path: str, cfg: Config, seed: int, tokenizer: Any = None) -> dict:
    """IMDb sentiment: test accuracy (%) after fine-tuning on train."""
    tok = _tokenizer(model_path, tokenizer)
    train, test, source = imdb_splits(cfg, seed)

    def encode(batch: dict) -> dict:
        return tok(batch["text"], truncation=True, max_length=cfg.ft_max_seq_len)

    model = AutoModelForSequenceClassification.from_pretrained(resolve_model(model_path),
                                                               num_labels=2)
    train = train.map(encode, batched=True, remove_columns=["text"])
    refs = list(test["label"])
    test = test.map(encode, batched=True, remove_columns=test.column_names)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model=model, args=_args(cfg, seed, tmp, cfg.ft_epochs),
                          train_dataset=train, data_collator=DataCollatorWithPadding(tok),
                          processing_class=tok)
        trainer.train()
        preds = trainer.predict(test).predictions.argmax(-1)
    return {"accuracy": glue_metrics("sst2", preds, refs)["accuracy"], "test_source": source,
            "n_train": len(train), "n_test": len(refs)}


# ----------------------------------------------------------------------------- SQuAD
def squad_splits(cfg: Config, seed: int) -> tuple[Any, Any, str]:
    """(train, eval, description): the Hub's train/dev, or offline an article-level split
    of the dev set (the only split mirrored)."""
    try:
        train = load_split("squad", "train", cfg.data_dir)
        evals = load_split("squad", "validation", cfg.data_dir)
        source = "train / validation"
    except FileNotFoundError:
        train, evals = article_split(load_split("squad", "validation", cfg.data_dir), 0.3, seed)
        source = "dev set split by article (70% of articles train, 30% evaluate)"
    return (_subset(train, cfg.squad_max_train, seed), _subset(evals, cfg.squad_max_eval, 0),
            source)


class QADistillTrainer(Trainer):
    """DistilBERT (D): task loss plus T²·KL to a SQuAD-fine-tuned teacher's start/end logits."""

    def __init__(self, *args: Any, teacher: torch.nn.Module, alpha: float, temperature: float,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval()
        self.alpha, self.temperature = alpha, temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        token_types = inputs.pop("token_type_ids", None)
        student_inputs = dict(inputs)
        if "token_type_ids" in _forward_args(model) and token_types is not None:
            student_inputs["token_type_ids"] = token_types
        out = model(**student_inputs)
        with torch.inference_mode():
            t = self.teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                             token_type_ids=token_types)
        kd = 0.5 * (qa_kd_loss(out.start_logits, t.start_logits.clone(), self.temperature)
                    + qa_kd_loss(out.end_logits, t.end_logits.clone(), self.temperature))
        loss = (1 - self.alpha) * out.loss + self.alpha * kd
        return (loss, out) if return_outputs else loss


def qa_kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)) over positions, batch mean."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(student / temperature, -1),
                    F.log_softmax(teacher / temperature, -1), reduction="batchmean",
                    log_target=True) * temperature**2


def _forward_args(model: torch.nn.Module) -> set[str]:
    import inspect

    core = model.module if hasattr(model, "module") else model
    return set(inspect.signature(core.forward).parameters)


def finetune_squad(model_path: str, cfg: Config, seed: int, teacher_qa_path: str | None = None,
                   output_dir: Path | None = None, tokenizer: Any = None) -> dict:
    """SQuAD v1.1: exact match and F1 (%) on the evaluation articles.

    With `teacher_qa_path` (a SQuAD-fine-tuned model), the loss adds the DistilBERT (D)
    distillation term, weighted by `cfg.squad_kd_alpha` at temperature `cfg.temperature`.
    """
    tok = _tokenizer(model_path, tokenizer)
    train, evals, source = squad_splits(cfg, seed)
    feats = train.map(prepare_train_features, batched=True, remove_columns=train.column_names,
                      fn_kwargs=dict(tokenizer=tok, max_len=cfg.squad_max_seq_len,
                                     stride=cfg.squad_doc_stride))
    model = AutoModelForQuestionAnswering.from_pretrained(resolve_model(model_path))
    with tempfile.TemporaryDirectory() as tmp:
        args = _args(cfg, seed, tmp, cfg.squad_epochs,
                     remove_unused_columns=teacher_qa_path is None)
        if teacher_qa_path is None:
            trainer = Trainer(model=model, args=args, train_dataset=feats,
                              data_collator=DataCollatorWithPadding(tok), processing_class=tok)
        else:
            teacher = AutoModelForQuestionAnswering.from_pretrained(resolve_model(teacher_qa_path))
            trainer = QADistillTrainer(model=model, args=args, train_dataset=feats,
                                       data_collator=DataCollatorWithPadding(tok),
                                       processing_class=tok, teacher=teacher,
                                       alpha=cfg.squad_kd_alpha, temperature=cfg.temperature)
        trainer.train()
        eval_feats = evals.map(prepare_eval_features, batched=True,
                               remove_columns=evals.column_names,
                               fn_kwargs=dict(tokenizer=tok, max_len=cfg.squad_max_seq_len,
                                              stride=cfg.squad_doc_stride))
        model_inputs = eval_feats.remove_columns(["example_id", "offset_mapping"])
        if "token_type_ids" not in _forward_args(trainer.model):
            model_inputs = model_inputs.remove_columns(["token_type_ids"])
        start, end = trainer.predict(model_inputs).predictions[:2]
    preds = postprocess(evals, eval_feats, start, end)
    if output_dir is not None:
        from .student import save_model

        save_model(trainer.model, tok, output_dir)
    return {**squad_metrics(preds, list(evals)), "split": source, "n_train": len(train),
            "n_eval": len(evals), "distilled": teacher_qa_path is not None}
