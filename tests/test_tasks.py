"""The task registry: label names as the Hub's datasets name them."""

from __future__ import annotations

from distil_utils.tasks import TASKS, label_kwargs


def test_label_kwargs_are_the_hub_label_names():
    kw = label_kwargs("sst2")
    assert kw["id2label"] == {0: "negative", 1: "positive"}
    assert kw["label2id"] == {"negative": 0, "positive": 1}
    assert len(label_kwargs("mnli")["id2label"]) == 3
    assert set(TASKS) >= {"cola", "sst2", "mrpc", "stsb", "rte", "imdb"}
