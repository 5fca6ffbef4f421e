"""`python -m benchmarks.ft_epochs`: do the last fine-tuning epochs still move the
GLUE dev score?

Epochs that no longer move the score beyond the dev set's noise are time to save. A task is
fine-tuned as `finetune.glue_run` does it, but the dev set is scored N times per epoch, each
score with its 95% interval and paired difference from the final one; only this tool's JSON
is written. A point inside a longer schedule answers "would stopping here have changed the
score?", not what a shorter run (with its own decay) would give.

    python -m benchmarks.ft_epochs --profile cpu --model PATH --task stsb [--task cola]
        [--evals-per-epoch 2] [--epochs E] [--seed S] [--results-dir DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import AutoModelForSequenceClassification, Trainer, TrainerCallback, set_seed
from transformers.trainer_utils import IntervalStrategy

from distil_utils import finetune as ft
from distil_utils.artefacts import provenance
from distil_utils.config import Config, get_config
from distil_utils.hub import resolve_model
from distil_utils.intervals import difference_interval, metric_interval
from distil_utils.metrics import glue_metrics, task_score
from distil_utils.results_io import write_json
from distil_utils.tasks import GLUE_TASKS, TASKS, label_kwargs


class _InOrderTrainer(Trainer):
    """Evaluation in dataset order, and without touching the training's random stream."""

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        # transformers 5.x length-groups eval batches too under group_by_length: the paired
        # differences need example i in row i at every point
        return SequentialSampler(eval_dataset)

    def evaluate(self, *args: Any, **kw: Any) -> dict[str, float]:
        # an eval DataLoader draws its base seed from torch's global RNG; unforked, each
        # evaluation would shift the later batches and dropout away from the suite's run
        with torch.random.fork_rng():
            return super().evaluate(*args, **kw)


class _Plan(TrainerCallback):
    """Evaluate at exactly the planned steps, and note the epoch and step of each point."""

    def __init__(self, steps: list[int], max_steps: int) -> None:
        self.steps, self.max_steps, self.at = set(steps), max_steps, []  # at: (epoch, step)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.max_steps != self.max_steps:  # e.g. under torchrun: the plan would be wrong
            raise RuntimeError(f"planned {self.max_steps} steps, the Trainer runs "
                               f"{state.max_steps}: run ft_epochs as one process")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # an integer eval_steps drifts when N does not divide the steps per epoch, and the
        # Trainer adds a point at the last step: the plan decides, not the modulus
        control.should_evaluate = state.global_step in self.steps

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.at.append((float(state.epoch), int(state.global_step)))


def plan(n_train: int, batch: int, accum: int, epochs: float,
         per_epoch: int) -> tuple[int, int, list[int]]:
    """(steps per epoch, total steps, evaluation steps) as the Trainer counts its steps."""
    per = math.ceil(math.ceil(n_train / batch) / accum)  # no drop_last: the last batch counts
    total = math.ceil(epochs * per)
    points = max(1, math.ceil(per_epoch * epochs - 1e-9))
    steps = {min(total, max(1, round(k * per / per_epoch))) for k in range(1, points + 1)}
    return per, total, sorted(steps | {total})


def run_task(model_path: str, task: str, cfg: Config, seed: int, per_epoch: int,
             workdir: str) -> dict[str, Any]:
    """Fine-tune `model_path` on `task` as the suite does, scoring the dev set on the way."""
    train, evals = ft.glue_splits(task, cfg)
    split, dev = next(iter(evals.items()))  # MNLI: the matched dev set
    scored = "mnli_matched" if task == "mnli" else task
    labels = np.asarray(dev["label"])
    tok = ft.tokenizer_for(model_path, None)
    encode = ft._glue_encoder(tok, task, cfg.ft_max_seq_len)
    regression = task == "stsb"
    if regression:  # MSE needs float32 targets, as in glue_run
        from datasets import Value

        train, dev = (d.cast_column("label", Value("float32")) for d in (train, dev))
    train, dev = (d.map(encode, batched=True, desc=f"tokenise {task}", remove_columns=[
        c for c in d.column_names if c != "label"]) for d in (train, dev))
    set_seed(seed)  # before the model: the fresh head's initialisation is part of the seed
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(model_path), num_labels=TASKS[task].num_labels, **label_kwargs(task),
        problem_type="regression" if regression else "single_label_classification")
    args = ft.training_args(cfg, seed, workdir, cfg.ft_epochs, save_strategy="no")
    per, total, steps = plan(len(train), args.per_device_train_batch_size,
                             args.gradient_accumulation_steps, cfg.ft_epochs, per_epoch)
    # not dataclasses.replace: it re-runs __post_init__, undoing training_args' args._n_gpu = 1
    args.eval_strategy, args.eval_steps = IntervalStrategy.STEPS, max(1, per // per_epoch)

    def score(p: np.ndarray, y: np.ndarray) -> float:
        return task_score(scored, glue_metrics(scored, p, y))

    preds: list[np.ndarray] = []  # one per point, dataset order

    def compute_metrics(ev: Any) -> dict[str, float]:
        logits = np.asarray(ev.predictions)
        p = logits[:, 0] if regression else logits.argmax(-1)
        if not np.allclose(np.asarray(ev.label_ids, dtype=float), labels, atol=1e-5):
            raise RuntimeError(f"{task}: dev predictions came back out of dataset order")
        preds.append(p)
        return {"score": score(p, labels)}

    at = _Plan(steps, total)  # the Trainer's evaluation, at the planned steps
    ft.make_trainer(model, tok, args, train, cls=_InOrderTrainer, eval_dataset=dev,
                    compute_metrics=compute_metrics, callbacks=[at]).train()
    final, points = preds[-1], []
    for (epoch, step), p in zip(at.at, preds, strict=True):
        lo, hi = difference_interval(score, p, final, labels, seed=cfg.seed)
        points.append({"epoch": epoch, "step": step, "score": score(p, labels),
                       "metrics": glue_metrics(scored, p, labels),
                       "interval": list(metric_interval(score, p, labels, seed=cfg.seed)),
                       "diff_vs_final": score(p, labels) - score(final, labels),
                       "diff_interval": [lo, hi], "resolvable": bool(lo > 0 or hi < 0)})
    # the earliest point from which on none differs: one lucky early point is no reason to stop
    calm = next(i for i in range(len(points)) if not any(q["resolvable"] for q in points[i:]))
    return {"provenance": provenance(cfg, model=model_path), "profile": cfg.profile,
            "seed": seed, "model": model_path, "task": task, "dev_split": split,
            "train_size": len(train), "dev_size": len(dev), "epochs": cfg.ft_epochs,
            "evals_per_epoch": per_epoch, "steps_per_epoch": per, "total_steps": total,
            "points": points, "earliest_within_noise": points[calm]["epoch"]}


def report(res: dict[str, Any]) -> None:
    """One line per evaluation point, then the point from which stopping is within noise."""
    t = res["task"]
    for q in res["points"]:
        (lo, hi), (dlo, dhi) = q["interval"], q["diff_interval"]
        print(f"[ft_epochs] {t} epoch {q['epoch']:5.2f} step {q['step']:>6}  score "
              f"{q['score']:6.2f} [{lo:6.2f}, {hi:6.2f}]  Δ vs final {q['diff_vs_final']:+6.2f} "
              f"[{dlo:+6.2f}, {dhi:+6.2f}]{'  resolvable' if q['resolvable'] else ''}")
    print(f"[ft_epochs] {t}: from epoch {res['earliest_within_noise']:.2f} on, no point "
          f"differs resolvably from the final score (epoch {res['epochs']:g})", flush=True)


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Parse `argv`, check every setting, then fine-tune and score each task; the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--model", required=True, help="checkpoint folder (or 'minilm')")
    ap.add_argument("--task", action="append", required=True, help="GLUE task; repeatable")
    ap.add_argument("--evals-per-epoch", type=int, default=2)
    ap.add_argument("--epochs", type=float, help="default: the task's epochs")
    ap.add_argument("--seed", type=int, help="default: the profile's first fine-tuning seed")
    ap.add_argument("--results-dir", help="the Trainer's folder (default: a temporary one)")
    ap.add_argument("--out", help="default: ft_epochs_<task>.json here; several tasks: _<task>")
    a = ap.parse_args(argv)
    try:  # every bad setting is named before any work
        bad = [t for t in a.task if t not in GLUE_TASKS]
        if bad:
            raise ValueError(f"--task {bad[0]!r} is not a GLUE task; GLUE tasks are "
                             f"{list(GLUE_TASKS)} (Hub names: 'sst2', not 'SST-2')")
        if not Path(resolve_model(a.model)).is_dir():
            raise ValueError(f"--model {a.model!r}: no such model folder")
        if a.evals_per_epoch < 1 or (a.epochs is not None and a.epochs <= 0):
            raise ValueError("--evals-per-epoch must be >= 1 and --epochs > 0")
        cfg = get_config(a.profile)
        for t in a.task:
            if (why := ft.missing_glue_data(t, cfg)) is not None:
                raise ValueError(f"--task {t}: {why}")
    except ValueError as err:
        ap.exit(2, f"error: {err}\n")
    seed = cfg.ft_seeds[0] if a.seed is None else a.seed
    results = {}
    for task in a.task:
        tcfg = ft.task_config(cfg, task)  # the task's overrides, then --epochs over them
        tcfg = dataclasses.replace(tcfg, ft_epochs=a.epochs or tcfg.ft_epochs)
        with tempfile.TemporaryDirectory(prefix="ft_epochs_") as tmp:
            work = str(Path(a.results_dir) / f"ft_epochs_{task}") if a.results_dir else tmp
            res = run_task(a.model, task, tcfg, seed, a.evals_per_epoch, work)
        report(res)
        out = Path(a.out or f"ft_epochs_{task}.json")  # several tasks: one file each
        write_json(out.with_name(f"{out.stem}_{task}{out.suffix}") if a.out and len(a.task) > 1
                   else out, res)
        results[task] = res
    return results


if __name__ == "__main__":
    main()
