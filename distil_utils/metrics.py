"""GLUE and SQuAD v1.1 metrics exactly as the paper reports them, offline.

`evaluate.load("glue", task)` fetches its script from the Hub and fails offline, so the
metrics are plain functions here, served to `evaluate` as local metric modules
(`load_metric`) for fine-tuning and called directly by the bootstrap intervals: one
implementation. Scores are in percent, as the paper's tables print them.
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

from .tasks import GLUE_METRICS

MODULES = Path(__file__).resolve().parent / "metric_modules"
LOCAL_MODULES = {"glue": MODULES / "glue_local", "squad": MODULES / "squad_local"}


def _check_glue_task(task: str) -> None:
    if task not in GLUE_METRICS:
        raise ValueError(f"unknown GLUE task {task!r}; valid tasks: {sorted(GLUE_METRICS)} "
                         "(Hub names: 'sst2', not 'SST-2' or 'sst-2')")


def accuracy(predictions: Sequence, references: Sequence) -> float:
    """Percent of predictions equal to their reference: cheap enough for a bootstrap's
    thousands of resamples (`intervals`)."""
    return 100.0 * float(np.mean(np.asarray(predictions) == np.asarray(references)))


def glue_metrics(task: str, predictions: Sequence, references: Sequence) -> dict[str, float]:
    """The GLUE metric(s) of `task` in percent: class ids for classification, floats for stsb.

    Percent, so that the numbers print beside the paper's Table 1 without conversion.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    _check_glue_task(task)
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.shape != refs.shape or preds.ndim != 1:
        raise ValueError(f"{task}: predictions {preds.shape} and references {refs.shape} must "
                         "be 1-D and of equal length (one prediction per example)")
    if len(preds) == 0:
        raise ValueError(f"{task}: no predictions to score (empty evaluation set?)")
    if task == "stsb":
        return {"pearson": 100 * float(pearsonr(preds, refs)[0]),
                "spearmanr": 100 * float(spearmanr(preds, refs)[0])}
    if task == "cola":
        return {"matthews_correlation": 100 * float(matthews_corrcoef(refs, preds))}
    acc = {"accuracy": accuracy(preds, refs)}
    if task in ("mrpc", "qqp"):  # F1 of the positive class (1 = paraphrase), as GLUE
        return {"f1": 100 * float(f1_score(refs, preds)), **acc}
    return acc


def task_score(task: str, metrics: dict[str, float]) -> float:
    """One number per task: the mean of its metrics, as the GLUE benchmark does.

    For "mnli", metrics may hold `accuracy_matched` and `accuracy_mismatched` (what
    `finetune.finetune_glue` returns); the task score is then their mean.
    """
    _check_glue_task(task)
    if task == "mnli" and "accuracy" not in metrics:
        names = [m for m in ("accuracy_matched", "accuracy_mismatched") if m in metrics]
    else:
        names = [m for m in GLUE_METRICS[task] if m in metrics]
    if not names:
        raise ValueError(f"{task}: none of its metrics {GLUE_METRICS[task]} is in "
                         f"{sorted(metrics)}")
    return float(np.mean([metrics[m] for m in names]))


def glue_macro_score(per_task: dict[str, dict[str, float]]) -> float:
    """The paper's GLUE score: the mean of the task scores, MNLI counted once.

    MNLI's score is the mean of matched and mismatched whether they come as two entries
    ("mnli_matched", "mnli_mismatched") or as one "mnli" entry holding both accuracies.
    """
    scores: dict[str, list[float]] = {}
    for task, metrics in per_task.items():
        key = "mnli" if task.startswith("mnli") else task
        scores.setdefault(key, []).append(task_score(task, metrics))
    if not scores:
        raise ValueError("no task results to average")
    return float(np.mean([np.mean(v) for v in scores.values()]))


# ---------------------------------------------------------------- SQuAD v1.1 (official)
# A line-by-line port of the official evaluate-v1.1.py, so our EM/F1 are the paper's.
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse white space."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction: str, truth: str) -> float:
    """Bag-of-tokens F1 of the normalised strings (0 when they share no token)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], references: list[dict]) -> dict[str, list[float]]:
    """Per question, exact match and token F1 in percent, each maxed over the gold answers.

    `references` are rows of the Hub's `squad` schema (`id`, `answers` with `text`). A
    question without a prediction scores 0 (with a warning), as in the official v1.1 script;
    predictions for ids not in `references` are ignored, as there too. Kept per question so
    that the scores can be resampled for their intervals.
    """
    if not references:
        raise ValueError("no SQuAD references to score")
    em, f1 = [], []
    missing = 0
    for ref in references:
        golds = list(ref["answers"]["text"])
        if not golds:
            raise ValueError(f"question {ref['id']!r} has no gold answer: SQuAD v1.1 rows "
                             "always have one (is this SQuAD v2 data?)")
        pred = predictions.get(ref["id"])
        missing += pred is None
        em.append(0.0 if pred is None else 100.0 * max(exact_match(pred, g) for g in golds))
        f1.append(0.0 if pred is None else 100.0 * max(token_f1(pred, g) for g in golds))
    if missing:
        warnings.warn(f"{missing} of {len(references)} questions have no prediction and score 0",
                      stacklevel=2)
    return {"exact_match": em, "f1": f1}


def squad_metrics(predictions: dict[str, str], references: list[dict]) -> dict[str, float]:
    """Exact match and token F1 in percent over the questions (`squad_scores`' means)."""
    return {k: sum(v) / len(v) for k, v in squad_scores(predictions, references).items()}


def load_metric(name: str, task: str | None = None) -> Any:
    """`evaluate.load` of our local metric module ("glue" with a task, or "squad").

    Gives the familiar `metric.compute(predictions=..., references=...)` interface without
    the Hub: `evaluate.load` of a directory holding `<dir name>.py` never goes online.
    """
    import evaluate

    if name not in LOCAL_MODULES:
        raise ValueError(f"unknown metric {name!r}; local metrics: {sorted(LOCAL_MODULES)}")
    if name == "glue":
        if task is None:
            raise ValueError(f"load_metric('glue') needs a task, one of {sorted(GLUE_METRICS)}")
        _check_glue_task(task)
    return evaluate.load(str(LOCAL_MODULES[name]), task)
