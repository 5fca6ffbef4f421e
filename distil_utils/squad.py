"""SQuAD v1.1 pre- and post-processing: question + context windows, answers back to text.

The standard recipe of the transformers question-answering examples, as functions: windows of
`max_len` tokens over the context with a `stride` overlap, start/end token labels for training,
offset mappings for evaluation, and n-best span search to turn logits into answer text.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import numpy as np


def prepare_train_features(examples: dict[str, list], tokenizer: Any, max_len: int,
                           stride: int) -> dict[str, list]:
    """Tokenise question/context pairs into windows labelled with the answer's token span.

    A window that does not contain the answer is labelled (0, 0), pointing at [CLS].
    """
    questions = [q.lstrip() for q in examples["question"]]
    enc = tokenizer(questions, examples["context"], truncation="only_second", max_length=max_len,
                    stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding=False)
    sample_map = enc.pop("overflow_to_sample_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        answers = examples["answers"][sample_map[i]]
        a_start = answers["answer_start"][0]
        a_end = a_start + len(answers["text"][0])
        seq = enc.sequence_ids(i)
        ctx_start = seq.index(1)
        ctx_end = len(seq) - 1 - seq[::-1].index(1)
        if offsets[ctx_start][0] > a_start or offsets[ctx_end][1] < a_end:
            starts.append(0)
            ends.append(0)
            continue
        s = ctx_start
        while s <= ctx_end and offsets[s][0] <= a_start:
            s += 1
        e = ctx_end
        while e >= ctx_start and offsets[e][1] >= a_end:
            e -= 1
        starts.append(s - 1)
        ends.append(e + 1)
    enc.pop("offset_mapping")
    enc["start_positions"], enc["end_positions"] = starts, ends
    return enc


def prepare_eval_features(examples: dict[str, list], tokenizer: Any, max_len: int,
                          stride: int) -> dict[str, list]:
    """Windows for evaluation, with the example id and the context offsets of each token."""
    questions = [q.lstrip() for q in examples["question"]]
    enc = tokenizer(questions, examples["context"], truncation="only_second", max_length=max_len,
                    stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding=False)
    sample_map = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = []
    for i in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(i)
        enc["example_id"].append(examples["id"][sample_map[i]])
        enc["offset_mapping"][i] = [o if seq[k] == 1 else None
                                    for k, o in enumerate(enc["offset_mapping"][i])]
    return enc


def postprocess(examples: Any, features: Any, start_logits: np.ndarray, end_logits: np.ndarray,
                n_best: int = 20, max_answer_len: int = 30) -> dict[str, str]:
    """The best-scoring valid span (start ≤ end, inside the context, ≤ max_answer_len tokens)
    over all windows of each example, as text cut from the context."""
    by_example = collections.defaultdict(list)
    for i, ex_id in enumerate(features["example_id"]):
        by_example[ex_id].append(i)
    preds = {}
    for ex in examples:
        best, best_score = "", -np.inf
        for fi in by_example[ex["id"]]:
            offsets = features[fi]["offset_mapping"]
            s_log, e_log = start_logits[fi], end_logits[fi]
            s_idx = np.argsort(s_log)[-1:-n_best - 1:-1]
            e_idx = np.argsort(e_log)[-1:-n_best - 1:-1]
            for s in s_idx:
                for e in e_idx:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None \
                            or offsets[e] is None or e < s or e - s + 1 > max_answer_len:
                        continue
                    score = s_log[s] + e_log[e]
                    if score > best_score:
                        best_score = score
                        best = ex["context"][offsets[s][0]:offsets[e][1]]
        preds[ex["id"]] = best
    return preds


def article_split(dataset: Any, heldout_frac: float, seed: int) -> tuple[Any, Any]:
    """Split SQuAD by article title: no article's questions land on both sides.

    Offline there is no SQuAD train split; training on some dev articles and evaluating on
    the others keeps the evaluation honest (no passage seen in training).
    """
    if not 0 < heldout_frac < 1:
        raise ValueError(f"heldout_frac must be in (0, 1), got {heldout_frac}")
    titles = sorted(set(dataset["title"]))
    if len(titles) < 2:
        raise ValueError("need at least two articles to split by article")
    random.Random(seed).shuffle(titles)
    n_held = max(1, round(heldout_frac * len(titles)))
    held = set(titles[:n_held])
    flags = [t in held for t in dataset["title"]]
    train = dataset.select([i for i, f in enumerate(flags) if not f])
    evals = dataset.select([i for i, f in enumerate(flags) if f])
    return train, evals
