"""The text columns and dev splits of each GLUE task in the Hub's schema: one table.

Fine-tuning (`finetune`), timing (`speed`) and deployment (`deploy`) all read it; it imports
nothing, so timing a model does not pull in the Trainer stack to know a task's columns.
"""

from __future__ import annotations

# Text columns of each task (second is None for single sentences).
TEXT_KEYS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None), "sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}
# The one dev split a task is timed and deployed on; fine-tuning scores every split below.
DEV_SPLIT: dict[str, str] = {"mnli": "validation_matched"}
EVAL_SPLITS: dict[str, tuple[str, ...]] = {
    "mnli": ("validation_matched", "validation_mismatched")}
# Text columns tried, in order, when a data set comes without its task name: the pairs first
# (a pair's columns would otherwise be mistaken for a single sentence), then the single
# sentences, then IMDb's "text".
TEXT_COLUMNS: tuple[tuple[str, str | None], ...] = (
    *dict.fromkeys(k for k in TEXT_KEYS.values() if k[1] is not None),
    *dict.fromkeys(k for k in TEXT_KEYS.values() if k[1] is None),
    ("text", None))


def dev_split(task: str) -> str:
    """The dev split a task is timed and deployed on ("validation", MNLI's matched one)."""
    return DEV_SPLIT.get(task, "validation")
