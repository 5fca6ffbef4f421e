"""Uncertainty: seeded bootstrap intervals for dev-set metrics, retention and speed ratios.

A dev set of 872 sentences moves SST-2 accuracy by 0.11 points per sentence, and a timed pass
moves with whatever else the machine does; without its interval a number cannot say whether
two rows differ. The percentile bootstrap is used throughout (resampling examples, or timing
rounds), seeded. It is written here in numpy because `scipy.stats.bootstrap` cannot resample
two models' predictions *paired* for a ratio of their scores, which retention needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def metric_interval(metric: Callable[[np.ndarray, np.ndarray], float], preds: Sequence,
                    labels: Sequence, *, resamples: int = RESAMPLES, seed: int = 0,
                    level: float = LEVEL) -> tuple[float, float]:
    """The `level` interval of `metric(preds, labels)` over resampled dev examples."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    if len(preds) != len(labels) or len(preds) == 0:
        raise ValueError(f"need as many predictions as labels, and some (got {len(preds)} "
                         f"and {len(labels)})")
    idx = _indices(len(labels), resamples, seed)
    return _interval(np.array([metric(preds[i], labels[i]) for i in idx]), level)


def mean_interval(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0,
                  level: float = LEVEL) -> tuple[float, float]:
    """The interval of the mean of per-example scores (IMDb correct = 100 / wrong = 0, SQuAD
    exact match and F1 per question), resampling the examples."""
    return metric_interval(lambda v, _: float(np.mean(v)), values, np.zeros(len(values)),
                           resamples=resamples, seed=seed, level=level)


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
    idx = _indices(len(y), resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        # numpy division: a resample where the teacher scores 0 gives inf/NaN (dropped), not
        # Python's ZeroDivisionError
        ratios = np.array([100.0 * np.float64(metric(s[i], y[i])) / metric(t[i], y[i])
                           for i in idx])
    return _interval(ratios, level)


def difference_interval(metric: Callable[[np.ndarray, np.ndarray], float], a_preds: Sequence,
                        b_preds: Sequence, labels: Sequence, *, resamples: int = RESAMPLES,
                        seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """The interval of metric(a) - metric(b) on the same resampled examples (e.g. the points
    an int8 student loses against its fp32 original)."""
    a, b, y = np.asarray(a_preds), np.asarray(b_preds), np.asarray(labels)
    if not len(a) == len(b) == len(y) > 0:
        raise ValueError("both prediction sets and the labels must cover the same examples")
    idx = _indices(len(y), resamples, seed)
    return _interval(np.array([metric(a[i], y[i]) - metric(b[i], y[i]) for i in idx]), level)


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
    idx = _indices(len(h), resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _interval(100.0 * h[idx].sum(1) / t[idx].sum(1), level)


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
    idx = _indices(len(ratios), resamples, seed)
    lo, hi = _interval(np.median(ratios[idx], axis=1), level)
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
    rng = np.random.default_rng(seed)
    per_task = []
    for score, t, s, y in tasks.values():
        t, s, y = np.asarray(t), np.asarray(s), np.asarray(y)
        idx = rng.integers(0, len(y), size=(resamples, len(y)))
        per_task.append(np.array([[score(t[i], y[i]), score(s[i], y[i])] for i in idx]))
    both = np.mean(per_task, axis=0)  # (resamples, 2): teacher and student macro
    with np.errstate(divide="ignore", invalid="ignore"):
        return _interval(100.0 * both[:, 1] / both[:, 0], level)
