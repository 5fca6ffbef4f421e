"""Uncertainty: seeded bootstrap intervals for dev-set metrics, retention and speed ratios.

A dev set of 872 sentences moves SST-2 accuracy by 0.11 points per sentence, and a timed pass
moves with whatever else the machine does; without its interval a number cannot say whether
two rows differ. The percentile bootstrap is used throughout (resampling examples, or timing
rounds), seeded, and computed by `scipy.stats.bootstrap`: `paired=True` resamples the same
examples for every array it is given (a teacher's and a student's predictions and the labels),
so a ratio or a difference of two models' scores is paired.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

RESAMPLES = 2000
LEVEL = 0.95


def _each_resample(score: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """A vectorized statistic for `scipy.stats.bootstrap` from `score` of one resample.

    scipy hands over all resamples at once, one per row (`axis=-1`); the suite's metrics are
    plain Python functions of one set of predictions, so they are called row by row.
    """
    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = zip(*(np.moveaxis(s, axis, -1) for s in samples), strict=True)
        return np.array([score(*row) for row in rows], dtype=float)

    return statistic


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], *,
               paired: bool, resamples: int, seed: int, level: float) -> tuple[float, float]:
    """The `level` percentile-bootstrap interval of the vectorized `statistic` over `data`."""
    # a ratio whose denominator is 0 on a resample is inf/NaN there (scipy warns; dropped below)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        if min(len(d) for d in data) < 2:  # scipy refuses one observation; each resample is it
            value = float(statistic(*(d[np.newaxis] for d in data), axis=-1)[0])
            return (value, value) if np.isfinite(value) else (float("nan"), float("nan"))
        # scipy.stats.bootstrap does it; default_rng(seed) draws the (resamples, n) example
        # indices that this module drew by hand before, so the intervals are the same numbers
        res = stats.bootstrap(data, statistic, n_resamples=resamples, vectorized=True,
                              paired=paired, axis=-1, confidence_level=level,
                              method="percentile", rng=np.random.default_rng(seed))
    dist = res.bootstrap_distribution
    if np.isfinite(dist).all():
        return float(res.confidence_interval.low), float(res.confidence_interval.high)
    # hand-written: scipy's quantile cannot skip the resamples where a ratio is inf/NaN (its
    # denominator, e.g. the teacher's score, was 0); the others decide, as they always have
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(dist, [tail, 100 - tail])
    return float(lo), float(hi)


def metric_interval(metric: Callable[[np.ndarray, np.ndarray], float], preds: Sequence,
                    labels: Sequence, *, resamples: int = RESAMPLES, seed: int = 0,
                    level: float = LEVEL) -> tuple[float, float]:
    """The `level` interval of `metric(preds, labels)` over resampled dev examples."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    if len(preds) != len(labels) or len(preds) == 0:
        raise ValueError(f"need as many predictions as labels, and some (got {len(preds)} "
                         f"and {len(labels)})")
    return _bootstrap((preds, labels), _each_resample(metric), paired=True,
                      resamples=resamples, seed=seed, level=level)


def mean_interval(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0,
                  level: float = LEVEL) -> tuple[float, float]:
    """The interval of the mean of per-example scores (IMDb correct = 100 / wrong = 0, SQuAD
    exact match and F1 per question), resampling the examples."""
    values = np.asarray(values)
    if len(values) == 0:
        raise ValueError("need as many predictions as labels, and some (got 0 and 0)")
    return _bootstrap((values,), np.mean, paired=False, resamples=resamples, seed=seed,
                      level=level)


def retention_interval(metric: Callable[[np.ndarray, np.ndarray], float],
                       teacher_preds: Sequence, student_preds: Sequence, labels: Sequence, *,
                       resamples: int = RESAMPLES, seed: int = 0,
                       level: float = LEVEL) -> tuple[float, float]:
    """The interval of 100 × student score / teacher score, both on the *same* resamples.

    Pairing matters: the two models err on many of the same hard examples, so their scores
    move together and the ratio is far steadier than two independent intervals suggest.
    """
    t, s, y = np.asarray(teacher_preds), np.asarray(student_preds), np.asarray(labels)
    if not len(t) == len(s) == len(y) > 0:
        raise ValueError("teacher, student and labels must cover the same dev examples")

    def ratio(t: np.ndarray, s: np.ndarray, y: np.ndarray) -> float:
        # numpy division: a resample where the teacher scores 0 gives inf/NaN (dropped), not
        # Python's ZeroDivisionError
        return 100.0 * np.float64(metric(s, y)) / metric(t, y)

    return _bootstrap((t, s, y), _each_resample(ratio), paired=True, resamples=resamples,
                      seed=seed, level=level)


def difference_interval(metric: Callable[[np.ndarray, np.ndarray], float], a_preds: Sequence,
                        b_preds: Sequence, labels: Sequence, *, resamples: int = RESAMPLES,
                        seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """The interval of metric(a) - metric(b) on the same resampled examples (e.g. the points
    an int8 student loses against its fp32 original)."""
    a, b, y = np.asarray(a_preds), np.asarray(b_preds), np.asarray(labels)
    if not len(a) == len(b) == len(y) > 0:
        raise ValueError("both prediction sets and the labels must cover the same examples")
    return _bootstrap((a, b, y), _each_resample(lambda a, b, y: metric(a, y) - metric(b, y)),
                      paired=True, resamples=resamples, seed=seed, level=level)


def share_interval(hits: Sequence[float], totals: Sequence[float], *,
                   resamples: int = RESAMPLES, seed: int = 0,
                   level: float = LEVEL) -> tuple[float, float]:
    """The interval of 100 × Σ hits / Σ totals, resampling whole units (e.g. sequences).

    Masked-token accuracy counts tokens, but the tokens of one sequence are not independent
    draws, so the sequences are resampled, each with its correct and masked counts. With
    `hits` the per-sequence difference of two models' correct counts on the same masked
    positions, this is the paired interval of their accuracy difference.
    """
    h, t = np.asarray(hits, dtype=float), np.asarray(totals, dtype=float)
    if len(h) != len(t) or len(h) == 0:
        raise ValueError(f"need one count per unit for hits and totals, and some (got {len(h)} "
                         f"and {len(t)})")

    def share(h: np.ndarray, t: np.ndarray, axis: int = -1) -> np.ndarray:
        return 100.0 * h.sum(axis) / t.sum(axis)

    return _bootstrap((h, t), share, paired=True, resamples=resamples, seed=seed, level=level)


def paired_ratio(reference: Sequence[float], other: Sequence[float], *,
                 resamples: int = RESAMPLES, seed: int = 0,
                 level: float = LEVEL) -> dict[str, float]:
    """Median of the per-round ratios reference / other (a speed-up), with its interval.

    Rounds are resampled whole, so a drift that slows both models of one round cancels.
    """
    ref, oth = np.asarray(reference, dtype=float), np.asarray(other, dtype=float)
    if len(ref) != len(oth) or len(ref) == 0:
        raise ValueError("need the same number (> 0) of timed rounds for both models")
    ratios = ref / oth
    if len(ratios) == 1:
        return {"median": float(ratios[0]), "low": float("nan"), "high": float("nan"),
                "rounds": 1}

    def median_ratio(ref: np.ndarray, oth: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(ref / oth, axis=axis)

    lo, hi = _bootstrap((ref, oth), median_ratio, paired=True, resamples=resamples, seed=seed,
                        level=level)
    return {"median": float(np.median(ratios)), "low": lo, "high": hi, "rounds": len(ratios)}


def halfwidth(interval: dict[str, float] | tuple[float, float]) -> float:
    """Half the width of an interval (NaN when it could not be computed)."""
    lo, hi = (interval["low"], interval["high"]) if isinstance(interval, dict) else interval
    return (hi - lo) / 2


def macro_retention_interval(tasks: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float],
                                                    Sequence, Sequence, Sequence]], *,
                             resamples: int = RESAMPLES, seed: int = 0,
                             level: float = LEVEL) -> tuple[float, float]:
    """The interval of 100 × student macro / teacher macro over several dev sets.

    `tasks[name] = (task score function, teacher predictions, student predictions, labels)`;
    each dev set is resampled on its own (paired between the two models), the macro score is
    the mean of the task scores, as `metrics.glue_macro_score`.
    """
    if not tasks:
        raise ValueError("no tasks to average")
    sets = [(score, np.asarray(t), np.asarray(s), np.asarray(y))
            for score, t, s, y in tasks.values()]
    # scipy's unpaired samples are each dev set's example indices, resampled on their own from
    # one generator in task order; both models are scored on the same indices (the pairing)
    resampled = [task for task in sets if len(task[3]) > 1]
    # a dev set of one example is that example in every resample (and draws no numbers)
    fixed = [(score(t, y), score(s, y)) for score, t, s, y in sets if len(y) <= 1]

    def macro_ratio(*indices: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = np.moveaxis(indices[0], axis, -1).shape[0] if indices else 1
        per_task = [np.array([[score(t[i], y[i]), score(s[i], y[i])]
                              for i in np.moveaxis(idx, axis, -1)])
                    for (score, t, s, y), idx in zip(resampled, indices, strict=True)]
        per_task += [np.tile(pair, (rows, 1)) for pair in fixed]
        both = np.mean(per_task, axis=0)  # (resamples, 2): teacher and student macro
        return 100.0 * both[:, 1] / both[:, 0]

    if not resampled:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(macro_ratio()[0])
        return (value, value) if np.isfinite(value) else (float("nan"), float("nan"))
    return _bootstrap(tuple(np.arange(len(task[3])) for task in resampled), macro_ratio,
                      paired=False, resamples=resamples, seed=seed, level=level)
