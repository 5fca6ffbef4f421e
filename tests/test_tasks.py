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
