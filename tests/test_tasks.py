"""The task registry: label names as the Hub's datasets name them."""

from __future__ import annotations

import re

import pytest

from distil_utils.tasks import TASKS, label_kwargs


def test_label_kwargs_are_the_hub_label_names():
    kw = label_kwargs("sst2")
    assert kw["id2label"] == {0: "negative", 1: "positive"}
    assert kw["label2id"] == {"negative": 0, "positive": 1}
    assert len(label_kwargs("mnli")["id2label"]) == 3
    assert set(TASKS) >= {"cola", "sst2", "mrpc", "stsb", "rte", "imdb"}


def test_a_split_the_task_cannot_score_is_named_with_its_row_and_the_fix():
    import datasets

    from distil_utils.tasks import check_task_split

    def ds(**cols):
        return datasets.Dataset.from_dict(cols)

    check_task_split("sst2", "validation", ds(sentence=["a", "b"], label=[0, 1]), "f.jsonl")
    check_task_split("stsb", "validation", ds(sentence1=["a"], sentence2=["b"], label=[4.2]), "f")
    cases = [
        ("sst2", ds(sentence=["a", "b", "c"], label=[0, -1, 2]), "row 1 has label -1 (2 such"),
        ("sst2", ds(sentence=["a"], label=["positive"]), "row 0 has label 'positive'"),
        ("rte", ds(sentence1=["a"], label=[0]), "no column(s) ['sentence2']"),
        ("sst2", ds(sentence=[], label=[]), "has no rows"),
        ("stsb", ds(sentence1=["a"], sentence2=["b"], label=[7.5]), "from 0 to 5"),
    ]
    for task, data, match in cases:
        with pytest.raises(ValueError, match=re.escape(match)) as err:
            check_task_split(task, "validation", data, "glue/x/validation.jsonl")
        assert "glue/x/validation.jsonl" in str(err.value) and "data_dir" in str(err.value)


def test_duplicated_rows_are_refused_by_id_and_counted_by_text():
    """Duplicated dev rows (same `idx`) would be scored twice: refused with the row. Rows that
    only repeat a text (the official CoLA dev has 4) are kept and counted."""
    import datasets

    from distil_utils.tasks import check_task_split, duplicate_rows

    dup = datasets.Dataset.from_dict({"sentence": ["a", "b", "a"], "label": [0, 1, 0],
                                      "idx": [0, 1, 0]})
    with pytest.raises(ValueError, match=re.escape("row 2 repeats idx 0 of row 0")):
        check_task_split("sst2", "validation", dup, "glue/sst2/validation.jsonl")
    ok = datasets.Dataset.from_dict({"sentence": ["a", "b", "a"], "label": [0, 1, 0],
                                     "idx": [0, 1, 2]})
    check_task_split("sst2", "validation", ok, "f")
    assert duplicate_rows("sst2", ok) == 1
    pair = datasets.Dataset.from_dict({"sentence1": ["a", "a"], "sentence2": ["b", "c"],
                                       "label": [0, 1]})
    assert duplicate_rows("rte", pair) == 0


def test_a_squad_answer_must_be_in_its_context_at_its_offset():
    import datasets

    from distil_utils.tasks import check_squad_split

    def squad(answers, ids=("q1", "q2")):
        return datasets.Dataset.from_dict({
            "id": list(ids), "question": ["who?", "what?"],
            "context": ["Ada wrote it.", "It was a note."], "answers": answers})

    good = [{"text": ["Ada"], "answer_start": [0]}, {"text": ["a note"], "answer_start": [7]}]
    check_squad_split("validation", squad(good), "squad/validation.jsonl")
    cases = [
        ([good[0], {"text": ["a note"], "answer_start": [3]}], ("q1", "q2"),
         "row 1: answer 'a note' is not in the context at offset 3"),
        (good, ("q1", "q1"), "row 1 repeats id 'q1' of row 0"),
        ([good[0], {"text": [], "answer_start": []}], ("q1", "q2"), "row 1 has answers"),
    ]
    for answers, ids, match in cases:
        with pytest.raises(ValueError, match=re.escape(match)) as err:
            check_squad_split("validation", squad(answers, ids), "squad/validation.jsonl")
        assert "squad/validation.jsonl" in str(err.value) and "data_dir" in str(err.value)


def test_the_official_offline_data_passes_its_checks(data_dir):
    """The checks refuse nothing of the real data (GLUE dev sets, SQuAD dev, IMDb)."""
    from distil_utils.hub import load_split
    from distil_utils.tasks import check_squad_split, check_task_split

    for task in ("cola", "sst2", "stsb", "mrpc", "rte"):
        for split in ("train", *TASKS[task].eval_splits):
            check_task_split(task, split, load_split(f"glue/{task}", split, data_dir), task)
    check_squad_split("validation", load_split("squad", "validation", data_dir), "squad")
