"""Fine-tuning on GLUE with transformers' own `Trainer`, and the Trainer set-up that IMDb and
SQuAD v1.1 (`downstream`) share.

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
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from . import ft_runs
from .artefacts import save_model
from .config import Config, point_trackio_at_runs, runs_dir, trackers
from .devices import check_single_process, gpu_precision, set_tf32
from .hub import data_source, load_split, load_tokenizer, local_files, resolve_model
from .intervals import metric_interval
from .metrics import glue_macro_score, glue_metrics, load_metric, task_score
from .modelcard import card_facts, finetune_results
from .results_files import GLUE_MODEL
from .results_io import atomic_write
from .tasks import (
    GLUE_METRICS,
    TASKS,
    check_glue_task,
    check_task_split,
    duplicate_rows,
    label_kwargs,
)

EVAL_BATCH_SIZE = 64
# what `Trainer.save_metrics` writes, copied beside a saved model (`save_metrics`)
METRICS_FILES = ("train_results.json", "eval_results.json", "all_results.json")


def task_config(cfg: Config, task: str) -> Config:
    """`cfg` with the task's `ft_task_overrides` applied (e.g. full SST-2 train, one epoch)."""
    return dataclasses.replace(cfg, **cfg.ft_task_overrides.get(task, {}))


def subset(ds: Any, n: int | None, seed: int) -> Any:
    """A seeded random `n` rows (all when `n` is None): capped runs stay representative."""
    return ds.shuffle(seed=seed).select(range(n)) if n is not None and len(ds) > n else ds


def tokenizer_for(model_path: str, tokenizer: Any) -> Any:
    return tokenizer if tokenizer is not None else load_tokenizer(model_path)


def training_args(cfg: Config, seed: int, out: str, epochs: float,
                   **kw: Any) -> TrainingArguments:
    """BERT's fine-tuning recipe (AdamW, 10% linear warm-up, weight decay 0.01) with the
    profile's lr / batch size; a checkpoint every `ft_checkpoint_every` steps into `out` (the
    run's folder, `ft_runs.checkpoint_dir`), nothing logged (the suite writes its results)
    unless `cfg.report_to` names trackers (`tracking_kwargs`)."""
    kw = {"save_strategy": "steps", "save_steps": cfg.ft_checkpoint_every,
          "save_total_limit": 1, **device_kwargs(cfg), **tracking_kwargs(cfg, Path(out).name),
          **kw}
    args = TrainingArguments(
        output_dir=out, num_train_epochs=epochs, learning_rate=cfg.ft_lr,
        per_device_eval_batch_size=EVAL_BATCH_SIZE, warmup_steps=0.1, weight_decay=0.01,
        seed=seed, data_seed=seed, eval_strategy="no",
        train_sampling_strategy="group_by_length" if cfg.ft_group_by_length else "random",
        disable_tqdm=os.environ.get("TQDM_DISABLE") == "1", use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, log_level="error", **kw)
    if args.n_gpu > 1:
        # Trainer would wrap the model in nn.DataParallel over every GPU of this one process
        # and silently multiply the batch by their number: one process, one device.
        print(f"[finetune] one process sees {args.n_gpu} GPUs: fine-tuning on {args.device} "
              "only; for all of them run one process per GPU (torchrun --nproc_per_node "
              f"{args.n_gpu} ...), which keeps the batch at ft_batch_size={cfg.ft_batch_size}",
              flush=True)
        args._n_gpu = 1  # what Trainer itself does under model parallelism
    return args


def tracking_kwargs(cfg: Config, run: str) -> dict[str, Any]:
    """Trainer's `report_to` for `cfg.report_to`, logging every `log_every` steps as `run`
    under `runs_dir(cfg)` (TensorBoard: `<runs>/<run>`; trackio: project "finetune" in
    `<runs>/trackio`); nothing logged without trackers."""
    names = trackers(cfg)
    if not names:
        return {"logging_strategy": "no", "report_to": []}
    if "tensorboard" in names:
        # transformers 5 has no logging_dir argument: its TensorBoardCallback reads this
        # variable when the Trainer is made
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(runs_dir(cfg) / run)
    point_trackio_at_runs(cfg)
    return {"logging_strategy": "steps", "logging_steps": cfg.log_every,
            "report_to": list(names), "run_name": run, "project": "finetune"}


def device_kwargs(cfg: Config) -> dict[str, Any]:
    """Precision and the batch: on a GPU bf16 autocast where it is native, else fp16 with
    loss scaling (`gpu_mixed_precision`, `devices.gpu_precision`), TF32 from Ampere on
    (`devices.set_tf32`, not Trainer's `tf32`: see there). One process
    (`devices.check_single_process`): fine-tuning never runs under torchrun."""
    check_single_process("fine-tuning")
    out: dict[str, Any] = {"per_device_train_batch_size": cfg.ft_batch_size}
    if torch.cuda.is_available():
        amp = cfg.gpu_mixed_precision
        bf16 = amp and gpu_precision() == "bf16"
        set_tf32(cfg.tf32, torch.device("cuda", torch.cuda.current_device()))
        out.update(bf16=bf16, fp16=amp and not bf16)
    return out


def make_trainer(model: torch.nn.Module, tok: Any, args: TrainingArguments, train: Any,
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


def finish(trainer: Trainer, tok: Any, output_dir: Path | None, cfg: Config, rid: str,
            stamp: dict[str, Any], result: dict[str, Any], train: dict[str, float] | None = None,
            evaluated: dict[str, float] | None = None) -> dict[str, Any]:
    """Save the model (with `output_dir`, beside its `train` and `evaluated` metrics) and the
    run's record, both stamped; `result`. The evaluation also goes to the run's trackers."""
    evaluated = {f"eval_{k}": v for k, v in (evaluated or {}).items()}
    if trainer.args.report_to:
        trainer.log(dict(evaluated))  # a copy: log() adds the epoch to it
    if output_dir is not None:
        what = stamp["settings"]["what"]
        save_model(trainer.model, tok, output_dir, stamp,
                   card=card_facts(cfg, what, finetune_results(what, result)))
        save_metrics(trainer, output_dir, train or {}, evaluated)
    ft_runs.record(cfg, rid, stamp, result)  # last: a recorded run has all of the above
    return result


def save_metrics(trainer: Trainer, folder: Path, train: dict[str, float],
                 evaluated: dict[str, float]) -> None:
    """Trainer's train_results.json, eval_results.json and all_results.json in `folder`:
    `trainer.save_metrics` writes them into the run's own folder, each is copied in with one
    rename (as every file of the suite)."""
    trainer.save_metrics("train", train)
    trainer.save_metrics("eval", evaluated)
    run = Path(trainer.args.output_dir)
    for name in METRICS_FILES:
        atomic_write(folder / name, lambda tmp, name=name: shutil.copyfile(run / name, tmp))


def train_run(trainer: Trainer, resume: str | None) -> dict[str, float]:
    """`trainer.train()`, from the run's last checkpoint when a killed run left one; its
    metrics (`train_loss`, `train_runtime`, ...)."""
    if resume:
        print(f"[fine-tune] resuming from {Path(resume).name}", flush=True)
    return trainer.train(resume_from_checkpoint=resume).metrics


# ------------------------------------------------------------------------------ GLUE
def glue_splits(task: str, cfg: Config) -> tuple[Any, dict[str, Any]]:
    """(train, {dev split name: dev set}) of a GLUE task, capped by the profile.

    Raises the loader's FileNotFoundError (offline copy lacks the split, e.g. qnli/mnli/qqp
    have no train split offline) or ConnectionError (Hub unreachable), both naming the fix.
    """
    check_glue_task(task)
    train = subset(load_split(f"glue/{task}", "train", cfg.data_dir), cfg.ft_max_train,
                    cfg.seed)
    evals = {s: subset(load_split(f"glue/{task}", s, cfg.data_dir), cfg.ft_max_eval, cfg.seed)
             for s in TASKS[task].eval_splits}
    for split, ds in {"train": train, **evals}.items():  # before any tokenising or training
        check_task_split(task, split, ds, data_source(f"glue/{task}", split, cfg.data_dir))
    return train, evals


def missing_glue_data(task: str, cfg: Config) -> str | None:
    """Why `task` cannot run (the loader's message), or None when its splits are reachable."""
    check_glue_task(task)
    for split in ("train", *TASKS[task].eval_splits):
        try:
            if cfg.data_dir:
                local_files(f"glue/{task}", split, cfg.data_dir)  # no need to parse the file
            else:
                load_split(f"glue/{task}", split, None)
        except (FileNotFoundError, ConnectionError) as err:
            return str(err)
    return None


def _glue_encoder(tok: Any, task: str, max_len: int):
    a, b = TASKS[task].text

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
    check_single_process("fine-tuning")  # before anything is read or written
    cfg = task_config(cfg, task)
    stamp, rid, done = ft_runs.lookup(cfg, model_path, task, seed, output_dir)
    if done is not None:  # scored before under exactly these settings: not run again
        return {**done, "found": rid}
    train, evals = glue_splits(task, cfg)  # checks the task, surfaces missing splits
    tok = tokenizer_for(model_path, tokenizer)
    encode = _glue_encoder(tok, task, cfg.ft_max_seq_len)
    regression = task == "stsb"
    if regression:
        import datasets

        train = train.cast_column("label", datasets.Value("float32"))
    train = train.map(encode, batched=True, desc=f"tokenise {task}",
                      remove_columns=[c for c in train.column_names if c != "label"])
    set_seed(seed)  # before the model: the fresh head's initialisation is part of the seed
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(model_path), num_labels=TASKS[task].num_labels, **label_kwargs(task),
        problem_type="regression" if regression else "single_label_classification")
    out: dict[str, float] = {}
    dev: dict[str, dict[str, Any]] = {}
    folder, resume = ft_runs.checkpoint_dir(cfg, rid, stamp)
    trainer = make_trainer(model, tok, training_args(cfg, seed, str(folder), cfg.ft_epochs), train)
    trained = train_run(trainer, resume)
    for split, ds in evals.items():
        enc = ds.map(encode, batched=True, remove_columns=ds.column_names)
        logits = predict_in_order(trainer, enc)
        preds = logits[:, 0] if regression else logits.argmax(-1)
        labels = list(ds["label"])
        which = split.removeprefix("validation_")  # MNLI's two dev sets: matched, mismatched
        scored = f"mnli_{which}" if task == "mnli" else task
        scores = load_metric("glue", scored).compute(predictions=preds, references=labels)
        out.update({f"accuracy_{which}": scores["accuracy"]} if task == "mnli" else scores)
        dev[split] = dev_record(scored, preds, labels, cfg.seed)
        if (repeated := duplicate_rows(task, ds)):  # kept, as the official data has them
            dev[split]["duplicate_rows"] = repeated
            print(f"[fine-tune] {task} {split}: {repeated} rows repeat an earlier row's text "
                  "(kept and scored, as in the official data; counted in the results file)",
                  flush=True)
    return finish(trainer, tok, output_dir, cfg, rid, stamp, {"metrics": out, "dev": dev},
                  trained, out)


def dev_record(task: str, preds: Any, labels: list, seed: int) -> dict[str, Any]:
    """What a score needs to carry its uncertainty: the dev predictions and labels (for the
    paired retention intervals of `summary`) and each metric's 95% bootstrap interval."""
    preds = np.asarray(preds)
    names = GLUE_METRICS[task]
    return {"predictions": preds.tolist(), "labels": list(labels),
            "intervals": {k: list(metric_interval(
                lambda p, y, k=k: glue_metrics(task, p, y)[k], preds, labels, seed=seed))
                for k in names}}


def run_glue(model_path: str, cfg: Config, name: str, tokenizer: Any = None,
             tasks: tuple[str, ...] | None = None, save_first_seed: bool = True) -> dict:
    """Every task × seed of the profile; the median over seeds per metric and the macro score.

    The paper reports the median of 5 runs, which resists the odd diverged run of the small
    tasks (RTE, MRPC, CoLA). Tasks whose data is unreachable are skipped and recorded with the
    reason. Writes `glue_<name>.json` (with seed ranges and each run's dev predictions and
    intervals); the first seed's model of each task goes to `finetuned/<name>_<task>`.
    """
    check_single_process("fine-tuning")
    tasks = tuple(tasks or cfg.glue_tasks)
    for t in tasks:
        check_glue_task(t)
    skipped = {t: why for t in tasks if (why := missing_glue_data(t, cfg)) is not None}
    runnable = [t for t in tasks if t not in skipped]
    if not runnable:  # before anything is written: a good earlier file stays as it is
        raise FileNotFoundError(
            f"none of the GLUE tasks {list(tasks)} can run: " + "; ".join(skipped.values()))
    found: list[str] = []  # runs found again in ft_runs/ (said by notebook 04, not stored)
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in runnable}
    devs: dict[str, list[dict[str, Any]]] = {t: [] for t in runnable}  # per seed, as runs
    with tqdm(total=len(runnable) * len(cfg.ft_seeds), desc=f"GLUE {name}") as bar:
        for task in runnable:
            for i, seed in enumerate(cfg.ft_seeds):
                bar.set_postfix(task=task, seed=seed)
                save = (cfg.out / "finetuned" / f"{name}_{task}"
                        if i == 0 and save_first_seed else None)
                run = glue_run(model_path, task, cfg, seed, save, tokenizer)
                found += [run["found"]] if "found" in run else []
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
    GLUE_MODEL.write(result, cfg, fields={"name": name}, model=model_path, name=name,
                     tasks=list(tasks), seeds=list(cfg.ft_seeds))
    return {**result, "found": found}
