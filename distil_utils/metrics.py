"""GLUE and SQuAD v1.1 metrics exactly as the paper reports them, offline.

`evaluate.load("glue", task)` fetches its metric script from the Hub at run time and fails
offline, so the metrics live here as plain functions (checked against scikit-learn, SciPy and
hand-worked SQuAD cases in the tests) and are also served to `evaluate` as local metric
modules (`load_metric`), which `evaluate.load` reads from a path without the Hub.
Scores are in percent, as the paper's tables print them.
"""

from __future__ import annotations

import re
import string
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",), "qnli": ("accuracy",), "rte": ("accuracy",), "wnli": ("accuracy",),
    "mnli": ("accuracy",), "mnli_matched": ("accuracy",), "mnli_mismatched": ("accuracy",),
    "mrpc": ("f1", "accuracy"), "qqp": ("f1", "accuracy"),
    "stsb": ("pearson", "spearmanr"),
}
MODULES = Path(__file__).resolve().parent / "metric_modules"


def glue_metrics(task: str, predictions: Sequence, references: Sequence) -> dict[str, float]:
    """The GLUE metric(s) of `task` in percent: class ids for classification, floats for stsb."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if task not in GLUE_METRICS:
        raise ValueError(f"unknown GLUE task {task!r}; valid tasks: {sorted(GLUE_METRICS)}")
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.shape != refs.shape or preds.ndim != 1:
        raise ValueError(f"{task}: predictions {preds.shape} and references {refs.shape} must "
                         "be 1-D and of equal length")
    if len(preds) == 0:
        raise ValueError(f"{task}: no predictions to score")
    if task == "stsb":
        return {"pearson": 100 * float(pearsonr(preds, refs)[0]),
                "spearmanr": 100 * float(spearmanr(preds, refs)[0])}
    out = {"accuracy": 100 * float(accuracy_score(refs, preds))}
    if task == "cola":
        return {"matthews_correlation": 100 * float(matthews_corrcoef(refs, preds))}
    if task in ("mrpc", "qqp"):
        return {"f1": 100 * float(f1_score(refs, preds)), **out}
    return out


def task_score(task: str, metrics: dict[str, float]) -> float:
    """One number per task: the mean of its metrics, as the GLUE benchmark does."""
    names = [m for m in GLUE_METRICS[task] if m in metrics]
    if not names:
        raise ValueError(f"{task}: none of {GLUE_METRICS[task]} in {sorted(metrics)}")
    return float(np.mean([metrics[m] for m in names]))


def glue_macro_score(per_task: dict[str, dict[str, float]]) -> float:
    """The paper's GLUE score: the mean of the task scores (MNLI = mean of m and mm)."""
    scores = {}
    for task, metrics in per_task.items():
        key = "mnli" if task.startswith("mnli") else task
        scores.setdefault(key, []).append(task_score(task, metrics))
    if not scores:
        raise ValueError("no task results to average")
    return float(np.mean([np.mean(v) for v in scores.values()]))


# ---------------------------------------------------------------- SQuAD v1.1 (official)
def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse white space."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict[str, str], references: list[dict]) -> dict[str, float]:
    """Exact match and token F1 in percent, each maxed over the gold answers.

    `references` are rows of the Hub's `squad` schema (`id`, `answers` with `text`). A
    question without a prediction scores 0, as in the official v1.1 script.
    """
    if not references:
        raise ValueError("no SQuAD references to score")
    em = f1 = 0.0
    missing = 0
    for ref in references:
        golds = list(ref["answers"]["text"])
        if ref["id"] not in predictions:
            missing += 1
            continue
        pred = predictions[ref["id"]]
        em += max(exact_match(pred, g) for g in golds)
        f1 += max(token_f1(pred, g) for g in golds)
    if missing:
        warnings.warn(f"{missing} of {len(references)} questions have no prediction and score 0",
                      stacklevel=2)
    n = len(references)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def load_metric(name: str, task: str | None = None) -> Any:
    """`evaluate.load` of our local metric module ("glue" or "squad"), no Hub needed."""
    import evaluate

    modules = {"glue": MODULES / "glue_local", "squad": MODULES / "squad_local"}
    if name not in modules:
        raise ValueError(f"unknown metric {name!r}; local metrics: {sorted(modules)}")
    return evaluate.load(str(modules[name] / f"{name}_local.py"), task)
