"""Fine-tuning on GLUE, IMDb and SQuAD v1.1 with transformers' own `Trainer`.

Any checkpoint the suite produces or loads works: a BERT or DistilBERT masked-LM checkpoint gets
a fresh task head (`AutoModelFor...`), a fine-tuned one keeps its own. The same functions run
on the Hub's data sets or on a local copy in the Hub's schema.

Randomness: the `seed` argument seeds what the paper varies between its 5 runs (head
initialisation, dropout, batch order). Which examples a capped run uses (`ft_max_train`,
`ft_max_eval`, the IMDb hold-out, the SQuAD article split) depends on `cfg.seed` only, so
every seed, teacher and student are trained and scored on the same examples.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from . import ft_runs
from .config import GLUE_TASKS, Config
from .hub import load_split, load_tokenizer, local_files, resolve_model
from .metrics import GLUE_METRICS, glue_macro_score, glue_metrics, squad_metrics, task_score
from .modelcard import label_kwargs
from .paper import GLUE_COLUMNS, TABLE1_GLUE, TABLE2_DOWNSTREAM
from .results_io import write_result
from .squad import article_split, eval_features, postprocess, train_features

# Text columns of each task in the Hub's GLUE schema (second is None for single sentences).
TEXT_KEYS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}
EVAL_SPLITS: dict[str, tuple[str, ...]] = {
    "mnli": ("validation_matched", "validation_mismatched")}
SQUAD_HELDOUT_FRAC = 0.3  # offline: share of SQuAD dev articles kept for evaluation
EVAL_BATCH_SIZE = 64


def num_labels(task: str) -> int:
    """Output units of the task head: 1 for STS-B (regression), 3 for MNLI, else 2."""
    return {"stsb": 1, "mnli": 3}.get(task, 2)


def task_config(cfg: Config, task: str) -> Config:
    """`cfg` with the task's `ft_task_overrides` applied (e.g. full SST-2 train, one epoch)."""
    return dataclasses.replace(cfg, **cfg.ft_task_overrides.get(task, {}))


def _check_task(task: str) -> None:
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; GLUE tasks are {list(GLUE_TASKS)} "
                         "(Hub names: 'sst2', not 'SST-2')")


def _subset(ds: Any, n: int | None, seed: int) -> Any:
    """A seeded random `n` rows (all when `n` is None): capped runs stay representative."""
    return ds.shuffle(seed=seed).select(range(n)) if n is not None and len(ds) > n else ds


def _tokenizer(model_path: str, tokenizer: Any) -> Any:
    return tokenizer if tokenizer is not None else load_tokenizer(model_path)


def _training_args(cfg: Config, seed: int, out: str, epochs: float,
                   **kw: Any) -> TrainingArguments:
    """BERT's fine-tuning recipe (AdamW, 10% linear warm-up, weight decay 0.01) with the
    profile's lr / batch size; a checkpoint every `ft_checkpoint_every` steps into `out` (the
    run's folder, `ft_runs.checkpoint_dir`), nothing logged (the suite writes its results)."""
    kw = {"save_strategy": "steps", "save_steps": cfg.ft_checkpoint_every,
          "save_total_limit": 1, **_device_kwargs(cfg), **kw}
    args = TrainingArguments(
        output_dir=out, num_train_epochs=epochs, learning_rate=cfg.ft_lr,
        per_device_eval_batch_size=EVAL_BATCH_SIZE, warmup_steps=0.1, weight_decay=0.01,
        seed=seed, data_seed=seed, eval_strategy="no",
        train_sampling_strategy="group_by_length" if cfg.ft_group_by_length else "random",
        logging_strategy="no", report_to=[], disable_tqdm=os.environ.get("TQDM_DISABLE") == "1",
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, log_level="error", **kw)
    if args.n_gpu > 1:
        # Trainer would wrap the model in nn.DataParallel over every GPU of this one process
        # and silently multiply the batch by their number: one process, one device.
        print(f"[finetune] one process sees {args.n_gpu} GPUs: fine-tuning on {args.device} "
              "only; for all of them run one process per GPU (torchrun --nproc_per_node "
              f"{args.n_gpu} ...), which keeps the batch at ft_batch_size={cfg.ft_batch_size}",
              flush=True)
        args._n_gpu = 1  # what Trainer itself does under model parallelism
    return args


def _device_kwargs(cfg: Config) -> dict[str, Any]:
    """Precision and the per-device batch: bf16 autocast on GPUs that have it, else fp16
    with loss scaling (`gpu_mixed_precision`), TF32; under torchrun (one process per GPU,
    DDP) each process takes ft_batch_size / processes, so the recipe's batch is kept."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.ft_batch_size % world:
        raise ValueError(f"ft_batch_size {cfg.ft_batch_size} does not split over {world} "
                         "processes: choose a multiple of the process count")
    out: dict[str, Any] = {"per_device_train_batch_size": cfg.ft_batch_size // world}
    if torch.cuda.is_available():
        amp = cfg.gpu_mixed_precision
        bf16 = amp and torch.cuda.is_bf16_supported()
        ampere = torch.cuda.get_device_capability()[0] >= 8  # TF32 exists from Ampere on
        out.update(bf16=bf16, fp16=amp and not bf16, tf32=(cfg.tf32 and ampere) or None)
    return out


def _trainer(model: torch.nn.Module, tok: Any, args: TrainingArguments, train: Any,
             cls: type[Trainer] = Trainer, **kw: Any) -> Trainer:
    return cls(model=model, args=args, train_dataset=train,
               data_collator=DataCollatorWithPadding(tok), processing_class=tok, **kw)


def predict_in_order(trainer: Trainer, ds: Any) -> Any:
    """`trainer.predict(ds).predictions`, row i for example i.

    transformers 5.x's `train_sampling_strategy="group_by_length"` (`ft_group_by_length`) also
    groups *evaluation* batches by length (`Trainer._get_eval_sampler`), which returns the
    predictions shuffled against the labels: silently wrong scores. Evaluation is therefore
    made sequential once training is done.
    """
    trainer.args.train_sampling_strategy = "sequential"
    return trainer.predict(ds).predictions


def _finish(trainer: Trainer, tok: Any, output_dir: Path | None, cfg: Config, rid: str,
            stamp: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Save the model (with `output_dir`) and the run's record, both stamped; `result`."""
    if output_dir is not None:
        from .student import save_model  # atomic save_pretrained of model + tokenizer

        save_model(trainer.model, tok, output_dir, stamp)
    ft_runs.record(cfg, rid, stamp, result)
    return result


def _train(trainer: Trainer, resume: str | None) -> None:
    """`trainer.train()`, from the run's last checkpoint when a killed run left one."""
    if resume:
        print(f"[fine-tune] resuming from {Path(resume).name}", flush=True)
    trainer.train(resume_from_checkpoint=resume)


# ------------------------------------------------------------------------------ GLUE
def glue_splits(task: str, cfg: Config) -> tuple[Any, dict[str, Any]]:
    """(train, {dev split name: dev set}) of a GLUE task, capped by the profile.

    Raises the loader's FileNotFoundError (offline copy lacks the split, e.g. qnli/mnli/qqp
    have no train split offline) or ConnectionError (Hub unreachable), both naming the fix.
    """
    _check_task(task)
    train = _subset(load_split(f"glue/{task}", "train", cfg.data_dir), cfg.ft_max_train,
                    cfg.seed)
    evals = {s: _subset(load_split(f"glue/{task}", s, cfg.data_dir), cfg.ft_max_eval, cfg.seed)
             for s in EVAL_SPLITS.get(task, ("validation",))}
    return train, evals


def missing_glue_data(task: str, cfg: Config) -> str | None:
    """Why `task` cannot run (the loader's message), or None when its splits are reachable."""
    _check_task(task)
    for split in ("train", *EVAL_SPLITS.get(task, ("validation",))):
        try:
            if cfg.data_dir:
                local_files(f"glue/{task}", split, cfg.data_dir)  # no need to parse the file
            else:
                load_split(f"glue/{task}", split, None)
        except (FileNotFoundError, ConnectionError) as err:
            return str(err)
    return None


def _glue_encoder(tok: Any, task: str, max_len: int):
    a, b = TEXT_KEYS[task]

    def encode(batch: dict) -> dict:
        return tok(batch[a], batch[b] if b else None, truncation=True, max_length=max_len)

    return encode


def finetune_glue(model_path: str, task: str, cfg: Config, seed: int,
                  output_dir: Path | None = None, tokenizer: Any = None) -> dict[str, float]:
    """Fine-tune on one GLUE task's train split; the task's metrics (%) on its dev split(s).

    MNLI is scored on both dev sets: keys `accuracy_matched` and `accuracy_mismatched`.
    With `output_dir`, the fine-tuned model and tokenizer are saved there (save_pretrained),
    e.g. for the speed and deployment notebooks. `glue_run` also returns the dev predictions
    and each metric's interval.
    """
    return glue_run(model_path, task, cfg, seed, output_dir, tokenizer)["metrics"]


def glue_run(model_path: str, task: str, cfg: Config, seed: int,
             output_dir: Path | None = None, tokenizer: Any = None) -> dict[str, Any]:
    """`{"metrics": finetune_glue's dict, "dev": {split: predictions, labels, intervals}}`;
    done once per model, task, seed and settings (`ft_runs`)."""
    cfg = task_config(cfg, task)
    stamp, rid, done = ft_runs.lookup(cfg, model_path, task, seed, output_dir)
    if done is not None:  # scored before under exactly these settings: not run again
        return done
    train, evals = glue_splits(task, cfg)  # checks the task, surfaces missing splits
    tok = _tokenizer(model_path, tokenizer)
    encode = _glue_encoder(tok, task, cfg.ft_max_seq_len)
    regression = task == "stsb"
    if regression:
        import datasets

        train = train.cast_column("label", datasets.Value("float32"))
    train = train.map(encode, batched=True, desc=f"tokenise {task}",
                      remove_columns=[c for c in train.column_names if c != "label"])
    set_seed(seed)  # before the model: the fresh head's initialisation is part of the seed
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(model_path), num_labels=num_labels(task), **label_kwargs(task),
        problem_type="regression" if regression else "single_label_classification")
    out: dict[str, float] = {}
    dev: dict[str, dict[str, Any]] = {}
    folder, resume = ft_runs.checkpoint_dir(cfg, rid, stamp)
    trainer = _trainer(model, tok, _training_args(cfg, seed, str(folder), cfg.ft_epochs), train)
    _train(trainer, resume)
    for split, ds in evals.items():
        enc = ds.map(encode, batched=True, remove_columns=ds.column_names)
        logits = predict_in_order(trainer, enc)
        preds = logits[:, 0] if regression else logits.argmax(-1)
        labels = list(ds["label"])
        scored = task
        if task == "mnli":
            which = split.removeprefix("validation_")  # matched / mismatched
            scored = f"mnli_{which}"
            out[f"accuracy_{which}"] = glue_metrics(scored, preds, labels)["accuracy"]
        else:
            out.update(glue_metrics(task, preds, labels))
        dev[split] = dev_record(scored, preds, labels, cfg.seed)
    return _finish(trainer, tok, output_dir, cfg, rid, stamp, {"metrics": out, "dev": dev})


def dev_record(task: str, preds: Any, labels: list, seed: int) -> dict[str, Any]:
    """What a score needs to carry its uncertainty: the dev predictions and labels (for the
    paired retention intervals of `summary`) and each metric's 95% bootstrap interval."""
    from .intervals import metric_interval

    preds = np.asarray(preds)
    names = GLUE_METRICS[task]
    return {"predictions": preds.tolist(), "labels": list(labels),
            "intervals": {k: list(metric_interval(
                lambda p, y, k=k: glue_metrics(task, p, y)[k], preds, labels, seed=seed))
                for k in names}}


def run_glue(model_path: str, cfg: Config, name: str, tokenizer: Any = None,
             tasks: tuple[str, ...] | None = None, save_first_seed: bool = True) -> dict:
    """Every task × seed of the profile; the median over seeds per metric and the macro score.

    The paper reports the median of 5 runs; the median resists the odd diverged run that
    small GLUE tasks (RTE, MRPC, CoLA) produce. Tasks whose data is not reachable (offline
    copies lack some train splits) are skipped and recorded with the reason, never silently
    dropped. Writes `results/<profile>/glue_<name>.json` (with `seed_ranges`, the range across
    seeds, and `dev`, each run's dev predictions, labels and 95% bootstrap intervals); the
    first seed's model of each task is saved under `finetuned/<name>_<task>`.
    """
    tasks = tuple(tasks or cfg.glue_tasks)
    for t in tasks:
        _check_task(t)
    skipped = {t: why for t in tasks if (why := missing_glue_data(t, cfg)) is not None}
    runnable = [t for t in tasks if t not in skipped]
    if not runnable:  # before anything is written: a good earlier file stays as it is
        raise FileNotFoundError(
            f"none of the GLUE tasks {list(tasks)} can run: " + "; ".join(skipped.values()))
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in runnable}
    devs: dict[str, list[dict[str, Any]]] = {t: [] for t in runnable}  # per seed, as runs
    with tqdm(total=len(runnable) * len(cfg.ft_seeds), desc=f"GLUE {name}") as bar:
        for task in runnable:
            for i, seed in enumerate(cfg.ft_seeds):
                bar.set_postfix(task=task, seed=seed)
                save = (cfg.out / "finetuned" / f"{name}_{task}"
                        if i == 0 and save_first_seed else None)
                run = glue_run(model_path, task, cfg, seed, save, tokenizer)
                runs[task].append(run["metrics"])
                devs[task].append(run["dev"])
                bar.update()
    # the paper's median over seeds, beside the range across seeds
    per_task = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                for t, rs in runs.items()}
    ranges = {t: {k: [min(r[k] for r in rs), max(r[k] for r in rs)] for k in rs[0]}
              for t, rs in runs.items()}
    result = {"model": model_path, "per_task": per_task,
              "columns": {t: task_score(t, m) for t, m in per_task.items()},
              "score": glue_macro_score(per_task) if per_task else None,
              "seed_ranges": ranges, "runs": runs, "dev": devs, "seeds": list(cfg.ft_seeds),
              "tasks": list(tasks),
              "skipped": skipped}
    write_result(cfg.out / f"glue_{name}.json", result, cfg, model=model_path, name=name,
                 tasks=list(tasks), seeds=list(cfg.ft_seeds))
    return result


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
    return _subset(train, cap, cfg.seed), _subset(test, cfg.ft_max_eval, cfg.seed), source


def finetune_imdb(model_path: str, cfg: Config, seed: int, tokenizer: Any = None,
                  output_dir: Path | None = None) -> dict:
    """IMDb sentiment: test accuracy (%) after fine-tuning on train (the paper's Table 2).

    Returns `accuracy`, `test_source` (the test split, or the held-out part of train
    offline) and the example counts, so the number is never mistaken for the full test set.
    """
    stamp, rid, done = ft_runs.lookup(cfg, model_path, "imdb", seed, output_dir)
    if done is not None:
        return done
    train, test, source = imdb_splits(cfg)
    tok = _tokenizer(model_path, tokenizer)

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
    trainer = _trainer(model, tok, _training_args(cfg, seed, str(folder), cfg.ft_epochs), train)
    _train(trainer, resume)
    preds = predict_in_order(trainer, enc_test).argmax(-1)
    return _finish(trainer, tok, output_dir, cfg, rid, stamp,
                   {"accuracy": glue_metrics("sst2", preds, list(test["label"]))["accuracy"],
                    "test_source": source, "n_train": len(train), "n_test": len(test)})


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
    return (_subset(train, cfg.squad_max_train, cfg.seed),
            _subset(evals, cfg.squad_max_eval, cfg.seed), source)


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
    if teacher_qa_path is not None:
        _check_qa_teacher(resolve_model(teacher_qa_path))
    what = "squad" if teacher_qa_path is None else "squad_d"
    stamp, rid, done = ft_runs.lookup(cfg, model_path, what, seed, output_dir,
                                      teacher_qa=teacher_qa_path)
    if done is not None:
        return done
    tok = _tokenizer(model_path, tokenizer)
    train, evals, source = squad_splits(cfg)
    feats = train_features(train, tok, cfg.squad_max_seq_len, cfg.squad_doc_stride)
    eval_feats = eval_features(evals, tok, cfg.squad_max_seq_len, cfg.squad_doc_stride)
    set_seed(seed)
    model = AutoModelForQuestionAnswering.from_pretrained(resolve_model(model_path))
    folder, resume = ft_runs.checkpoint_dir(cfg, rid, stamp)
    args = _training_args(cfg, seed, str(folder), cfg.squad_epochs,
                          remove_unused_columns=teacher_qa_path is None)
    if teacher_qa_path is None:
        trainer = _trainer(model, tok, args, feats)
    else:
        teacher = AutoModelForQuestionAnswering.from_pretrained(resolve_model(teacher_qa_path))
        trainer = _trainer(model, tok, args, feats, QADistillTrainer, teacher=teacher,
                           alpha=cfg.squad_kd_alpha, temperature=cfg.temperature)
    _train(trainer, resume)
    keep = {"input_ids", "attention_mask", "token_type_ids"} & _forward_args(trainer.model)
    model_inputs = eval_feats.remove_columns([c for c in eval_feats.column_names
                                              if c not in keep])
    start, end = predict_in_order(trainer, model_inputs)[:2]
    preds = postprocess(evals, eval_feats, start, end)
    return _finish(trainer, tok, output_dir, cfg, rid, stamp,
                   {**squad_metrics(preds, list(evals)), "split": source, "n_train": len(train),
                    "n_train_features": len(feats), "n_eval": len(evals),
                    "distilled": teacher_qa_path is not None})


# ----------------------------------------------------------------------------- tables
def _retention(rows: dict[str, dict[str, float | None]], teacher: str, student: str,
               columns: list[str]) -> dict[str, Any]:
    """student / teacher × 100 per column (None where either is missing or teacher is 0)."""
    out: dict[str, Any] = {"model": f"retention % ({student} / {teacher})"}
    for c in columns:
        t, s = rows[teacher].get(c), rows[student].get(c)
        out[c] = 100.0 * s / t if t not in (None, 0) and s is not None else None
    return out


def glue_table(our_rows: dict[str, dict[str, float]], teacher: str = "teacher",
               student: str = "student") -> pd.DataFrame:
    """Our GLUE rows, the student's retention of the teacher, then the paper's Table 1 rows.

    `our_rows[name]` maps task → task score (e.g. `run_glue(...)["columns"]` plus "score").
    Only the columns we ran are shown. When we ran fewer than the nine tasks, our "score"
    averages fewer tasks than the paper's, so a column "score (our tasks)" gives the paper's
    rows averaged over our tasks too: that is the like-for-like comparison.
    """
    for who in (teacher, student):
        if who not in our_rows:
            raise KeyError(f"no row {who!r} in our_rows (rows: {sorted(our_rows)})")
    cols = [c for c in GLUE_COLUMNS if any(r.get(c) is not None for r in our_rows.values())]
    tasks = [c for c in cols if c != "score"]
    subset = "score (our tasks)"
    partial = bool(tasks) and len(tasks) < len(GLUE_COLUMNS) - 1
    rows = []
    for name, vals in our_rows.items():
        row = {"model": name, **{c: vals.get(c) for c in cols}}
        if partial:
            row[subset] = vals.get("score")
        rows.append(row)
    ours = {r["model"]: r for r in rows}
    rows.append(_retention(ours, teacher, student, cols + ([subset] if partial else [])))
    for name, vals in TABLE1_GLUE.items():
        row = {"model": name, **{c: vals.get(c) for c in cols}}
        if partial:
            row[subset] = float(np.mean([vals[t] for t in tasks]))
        rows.append(row)
    return pd.DataFrame(rows)


def _downstream_row(vals: dict[str, Any]) -> dict[str, float | None]:
    """Flatten one model's results: floats as they are, or the dicts that `finetune_imdb`
    (key "imdb") and `finetune_squad` (key "squad") return."""
    imdb, squad = vals.get("imdb"), vals.get("squad")
    return {"imdb": imdb["accuracy"] if isinstance(imdb, dict) else imdb,
            "squad_em": squad["exact_match"] if squad else vals.get("squad_em"),
            "squad_f1": squad["f1"] if squad else vals.get("squad_f1")}


def downstream_table(results: dict[str, dict], teacher: str = "teacher") -> pd.DataFrame:
    """Our IMDb / SQuAD rows, each other model's retention of the teacher, the paper's Table 2.

    `results[name]` holds "imdb" (accuracy or finetune_imdb's dict) and "squad"
    (finetune_squad's dict) or the flat keys "squad_em" / "squad_f1".
    """
    cols = ["imdb", "squad_em", "squad_f1"]
    ours = {name: {"model": name, **_downstream_row(v)} for name, v in results.items()}
    rows = list(ours.values())
    if teacher in ours:
        rows += [_retention(ours, teacher, name, cols) for name in ours if name != teacher]
    rows += [{"model": name, **{c: v.get(c) for c in cols}}
             for name, v in TABLE2_DOWNSTREAM.items()]
    return pd.DataFrame(rows)
