"""The task registry: every data set and downstream task the suite knows, in one table.

Where a data set lives (Hub id and config, folder in the offline mirror), which split a corpus
reads, and for each task its text columns, dev splits, label names (so the number of labels),
metrics and display name. Loading, fine-tuning, metrics, timing, deployment, model cards and
figures all read these tables; a new GLUE-like task is one `Task` line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataSet:
    hub: str  # Hub repository
    config: str | None  # Hub configuration
    folder: str | None  # folder in the offline mirror (../shared/data); None: Hub only


DATASETS: dict[str, DataSet] = {
    **{f"glue/{t}": DataSet("nyu-mll/glue", t, f"glue/{t}") for t in
       ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli")},
    "imdb": DataSet("stanfordnlp/imdb", None, "imdb"),
    "squad": DataSet("rajpurkar/squad", None, "squad"),
    "wikitext": DataSet("Salesforce/wikitext", "wikitext-2-raw-v1", "wikitext-2-raw-v1"),
    # the paper's corpus: not mirrored offline
    "wikipedia": DataSet("wikimedia/wikipedia", "20231101.en", None),
    "bookcorpus": DataSet("bookcorpus/bookcorpus", None, None),
}
# corpus name -> (data set, split) of the distillation corpus; anything else must be a path
CORPORA: dict[str, tuple[str, str]] = {
    "wikitext": ("wikitext", "test"), "imdb": ("imdb", "unsupervised"),
    "wikipedia": ("wikipedia", "train"), "bookcorpus": ("bookcorpus", "train"),
}


@dataclass(frozen=True)
class Task:
    name: str  # the Hub's name ("sst2", not "SST-2")
    display: str  # as the paper's tables print it
    dataset: str  # key of DATASETS
    text: tuple[str, str | None]  # text columns; the second is None for single sentences
    labels: tuple[str, ...]  # the Hub data set's label names by id (STS-B: one regression unit)
    metrics: tuple[str, ...]  # what the paper reports, headline first
    eval_splits: tuple[str, ...] = ("validation",)  # the first is the one timed and deployed on
    glue: bool = True

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def dev_split(self) -> str:
        return self.eval_splits[0]


_PAIR = ("sentence1", "sentence2")
TASKS: dict[str, Task] = {t.name: t for t in (
    Task("cola", "CoLA", "glue/cola", ("sentence", None), ("unacceptable", "acceptable"),
         ("matthews_correlation",)),
    Task("mnli", "MNLI", "glue/mnli", ("premise", "hypothesis"),
         ("entailment", "neutral", "contradiction"), ("accuracy",),
         ("validation_matched", "validation_mismatched")),
    Task("mrpc", "MRPC", "glue/mrpc", _PAIR, ("not_equivalent", "equivalent"), ("f1", "accuracy")),
    Task("qnli", "QNLI", "glue/qnli", ("question", "sentence"), ("entailment", "not_entailment"),
         ("accuracy",)),
    Task("qqp", "QQP", "glue/qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
         ("f1", "accuracy")),
    Task("rte", "RTE", "glue/rte", _PAIR, ("entailment", "not_entailment"), ("accuracy",)),
    Task("sst2", "SST-2", "glue/sst2", ("sentence", None), ("negative", "positive"),
         ("accuracy",)),
    Task("stsb", "STS-B", "glue/stsb", _PAIR, ("similarity",), ("pearson", "spearmanr")),
    Task("wnli", "WNLI", "glue/wnli", _PAIR, ("not_entailment", "entailment"), ("accuracy",)),
    Task("imdb", "IMDb", "imdb", ("text", None), ("negative", "positive"), ("accuracy",),
         ("test",), glue=False),
    Task("squad", "SQuAD", "squad", ("question", "context"), (), ("exact_match", "f1"),
         glue=False),
)}
GLUE_TASKS: tuple[str, ...] = tuple(t for t, task in TASKS.items() if task.glue)
# the metrics per GLUE task, and per MNLI dev set ("mnli" alone means one of them)
GLUE_METRICS: dict[str, tuple[str, ...]] = {
    **{t: TASKS[t].metrics for t in GLUE_TASKS},
    **{s.replace("validation", "mnli"): TASKS["mnli"].metrics
       for s in TASKS["mnli"].eval_splits},
}
# Text columns tried, in order, when a data set comes without its task name: the pairs first
# (a pair's columns would otherwise be mistaken for a single sentence), then the single
# sentences, then IMDb's "text".
TEXT_COLUMNS: tuple[tuple[str, str | None], ...] = (
    *dict.fromkeys(TASKS[t].text for t in GLUE_TASKS if TASKS[t].text[1] is not None),
    *dict.fromkeys(TASKS[t].text for t in GLUE_TASKS if TASKS[t].text[1] is None),
    TASKS["imdb"].text)


def check_glue_task(task: str, setting: str = "task") -> str:
    """`task` if it is a GLUE task, else a ValueError naming the setting and the valid names."""
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r} in {setting}; GLUE tasks are "
                         f"{list(GLUE_TASKS)} (Hub names: 'sst2', not 'SST-2' or 'sst-2')")
    return task


def label_kwargs(task: str) -> dict[str, dict]:
    """`id2label` / `label2id` for `from_pretrained` of a `task` classifier."""
    names = TASKS[task].labels
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


DATA_FIX = "fix the file, or point data_dir at a copy in the Hub's column schema"


def _check_columns_and_rows(ds: Any, need: list[str], what: str) -> None:
    """Refuse a split without the columns `need` or without rows, naming it (`what`)."""
    missing = [c for c in need if c not in ds.column_names]
    if missing:
        raise ValueError(f"{what} has no column(s) {missing} (it has {ds.column_names}): "
                         f"{DATA_FIX}")
    if len(ds) == 0:
        raise ValueError(f"{what} has no rows: {DATA_FIX}")


def check_task_split(task: str, split: str, ds: Any, where: str) -> None:
    """Refuse a split a task cannot be scored on: a missing text or label column, no rows, or
    a label outside the task's (ids 0..n-1; STS-B's similarity 0..5). `where` names the file
    (or Hub repository) in the error, with the row and the fix."""
    spec = TASKS[task]
    _check_columns_and_rows(ds, [c for c in (*spec.text, "label") if c],
                            f"{where}: {spec.display} {split}")
    labels = ds["label"]
    if spec.num_labels == 1:  # regression: STS-B's 0..5 similarity
        bad = [i for i, y in enumerate(labels) if isinstance(y, bool)
               or not isinstance(y, (int, float)) or not 0 <= y <= 5]
        allowed = "a number from 0 to 5"
    else:
        bad = [i for i, y in enumerate(labels) if isinstance(y, bool) or not isinstance(y, int)
               or not 0 <= y < spec.num_labels]
        allowed = "one of " + ", ".join(f"{i} ({n})" for i, n in enumerate(spec.labels))
    if bad:
        raise ValueError(f"{where}: {spec.display} {split} row {bad[0]} has label "
                         f"{labels[bad[0]]!r} ({len(bad)} such rows); a label is {allowed}: "
                         f"{DATA_FIX}")
    _check_unique_ids(ds, f"{where}: {spec.display} {split}")


def _check_unique_ids(ds: Any, what: str) -> None:
    """A repeated example id (GLUE's `idx`, SQuAD's `id`) means rows were duplicated: each
    would be scored twice. The official splits have none."""
    col = "idx" if "idx" in ds.column_names else "id" if "id" in ds.column_names else None
    if col is None:
        return
    seen: dict[Any, int] = {}
    for row, key in enumerate(ds[col]):
        if key in seen:
            raise ValueError(f"{what} row {row} repeats {col} {key!r} of row {seen[key]}: "
                             f"duplicated rows would be scored twice; {DATA_FIX}")
        seen[key] = row


def duplicate_rows(task: str, ds: Any) -> int:
    """How many rows repeat an earlier row's text (all text columns alike). The official dev
    sets have a few (CoLA 4, STS-B 2, MNLI mismatched 1), so they are kept, counted and
    recorded beside the scores rather than refused."""
    cols = [c for c in TASKS[task].text if c]
    keys = list(zip(*(ds[c] for c in cols), strict=True))
    return len(keys) - len(set(keys))


def check_squad_split(split: str, ds: Any, where: str) -> None:
    """Refuse a SQuAD split that cannot be scored: missing columns, no rows, repeated ids, or
    an answer that is not in its context at its `answer_start` (offsets are what the training
    labels are made from; the official v1.1 splits have no such row)."""
    _check_columns_and_rows(ds, ["id", "question", "context", "answers"],
                            f"{where}: SQuAD {split}")
    _check_unique_ids(ds, f"{where}: SQuAD {split}")
    for row, (context, answers) in enumerate(zip(ds["context"], ds["answers"], strict=True)):
        texts, starts = answers.get("text") or [], answers.get("answer_start") or []
        if not texts or len(texts) != len(starts):
            raise ValueError(f"{where}: SQuAD {split} row {row} has answers {answers!r}: each "
                             f"question needs its answer texts and as many starts; {DATA_FIX}")
        for text, start in zip(texts, starts, strict=True):
            if context[start:start + len(text)] != text:
                raise ValueError(
                    f"{where}: SQuAD {split} row {row}: answer {text!r} is not in the context "
                    f"at offset {start} (found {context[start:start + len(text)]!r}); {DATA_FIX}")
