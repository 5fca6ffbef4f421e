"""SQuAD v1.1 pre- and post-processing: question + context windows, answers back to text.

The standard recipe of the transformers question-answering examples, as functions: windows of
`max_len` tokens over the context with a `stride` overlap (so answers near a window edge are
whole in the next window), start/end token labels for training, offset mappings for
evaluation, and an n-best span search that turns logits into answer text cut from the context.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import numpy as np

N_BEST = 20  # start and end candidates per window, as the reference recipe
MAX_ANSWER_TOKENS = 30  # longest answer span considered (SQuAD answers are short)


def _windows(examples: dict[str, list], tokenizer: Any, max_len: int, stride: int) -> Any:
    """Question + context pairs cut into overlapping windows of the context only.

    Questions are left-stripped: a few SQuAD questions start with long runs of spaces that
    would otherwise eat the window.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("SQuAD preprocessing needs a fast tokenizer (offset mappings and "
                        "overflowing windows); load it with AutoTokenizer.from_pretrained")
    questions = [q.lstrip() for q in examples["question"]]
    return tokenizer(questions, examples["context"], truncation="only_second",
                     max_length=max_len, stride=stride, return_overflowing_tokens=True,
                     return_offsets_mapping=True, padding=False)


def _context_range(sequence_ids: list[int | None]) -> tuple[int, int]:
    """First and last token index of the context (sequence 1) in a window."""
    first = sequence_ids.index(1)
    last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return first, last


def answer_token_span(offsets: list[tuple[int, int]], sequence_ids: list[int | None],
                      answer_start: int, answer_end: int) -> tuple[int, int]:
    """Token indices of the first and last answer token in a window, or (0, 0) (= [CLS])
    when the answer [answer_start, answer_end) is not wholly inside the window."""
    ctx_start, ctx_end = _context_range(sequence_ids)
    if offsets[ctx_start][0] > answer_start or offsets[ctx_end][1] < answer_end:
        return 0, 0
    s = ctx_start
    while s <= ctx_end and offsets[s][0] <= answer_start:
        s += 1
    e = ctx_end
    while e >= ctx_start and offsets[e][1] >= answer_end:
        e -= 1
    return s - 1, e + 1


def prepare_train_features(examples: dict[str, list], tokenizer: Any, max_len: int,
                           stride: int) -> dict[str, list]:
    """Tokenise question/context pairs into windows labelled with the answer's token span.

    A batched `datasets.map` function. One example can give several windows; a window that
    does not contain the (first) gold answer is labelled (0, 0), pointing at [CLS], as in
    BERT's recipe.
    """
    enc = _windows(examples, tokenizer, max_len, stride)
    sample_map = enc.pop("overflow_to_sample_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        answers = examples["answers"][sample_map[i]]
        a_start = answers["answer_start"][0]
        s, e = answer_token_span(offsets, enc.sequence_ids(i), a_start,
                                 a_start + len(answers["text"][0]))
        starts.append(s)
        ends.append(e)
    enc.pop("offset_mapping")
    enc["start_positions"], enc["end_positions"] = starts, ends
    return enc


def prepare_eval_features(examples: dict[str, list], tokenizer: Any, max_len: int,
                          stride: int) -> dict[str, list]:
    """Windows for evaluation, with the example id and the context offsets of each token.

    Offsets of question and special tokens are set to None, so post-processing can only pick
    spans inside the context.
    """
    enc = _windows(examples, tokenizer, max_len, stride)
    sample_map = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = []
    for i in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(i)
        enc["example_id"].append(examples["id"][sample_map[i]])
        enc["offset_mapping"][i] = [o if seq[k] == 1 else None
                                    for k, o in enumerate(enc["offset_mapping"][i])]
    return enc


def train_features(dataset: Any, tokenizer: Any, max_len: int, stride: int) -> Any:
    """`prepare_train_features` over a SQuAD `datasets.Dataset` (batched map)."""
    return dataset.map(prepare_train_features, batched=True,
                       remove_columns=dataset.column_names, desc="SQuAD train windows",
                       fn_kwargs=dict(tokenizer=tokenizer, max_len=max_len, stride=stride))


def eval_features(dataset: Any, tokenizer: Any, max_len: int, stride: int) -> Any:
    """`prepare_eval_features` over a SQuAD `datasets.Dataset` (batched map)."""
    return dataset.map(prepare_eval_features, batched=True,
                       remove_columns=dataset.column_names, desc="SQuAD eval windows",
                       fn_kwargs=dict(tokenizer=tokenizer, max_len=max_len, stride=stride))


def _best_span(offsets: list, start_logits: np.ndarray, end_logits: np.ndarray, n_best: int,
               max_answer_len: int) -> tuple[float, tuple[int, int] | None]:
    """(score, (char start, char end)) of the best valid span of one window."""
    best_score, best = -np.inf, None
    n = len(offsets)  # logits may be padded beyond the window's length
    for s in np.argsort(start_logits[:n])[::-1][:n_best]:
        if offsets[s] is None:
            continue
        for e in np.argsort(end_logits[:n])[::-1][:n_best]:
            if offsets[e] is None or e < s or e - s + 1 > max_answer_len:
                continue
            score = float(start_logits[s] + end_logits[e])
            if score > best_score:
                best_score, best = score, (offsets[s][0], offsets[e][1])
    return best_score, best


def postprocess(examples: Any, features: Any, start_logits: np.ndarray, end_logits: np.ndarray,
                n_best: int = N_BEST, max_answer_len: int = MAX_ANSWER_TOKENS) -> dict[str, str]:
    """`{example id: answer text}`: the best-scoring valid span over all windows of each
    example (start ≤ end, inside the context, ≤ max_answer_len tokens), cut from the context.

    Scores are start logit + end logit, compared across windows as in the reference recipe.
    An example with no valid span gets "" (scores 0, like a missing answer).
    """
    by_example: dict[str, list[int]] = collections.defaultdict(list)
    for i, ex_id in enumerate(features["example_id"]):
        by_example[ex_id].append(i)
    all_offsets = list(features["offset_mapping"])
    preds = {}
    for ex in examples:
        best_score, best_text = -np.inf, ""
        for fi in by_example[ex["id"]]:
            score, span = _best_span(all_offsets[fi], start_logits[fi], end_logits[fi],
                                     n_best, max_answer_len)
            if span is not None and score > best_score:
                best_score, best_text = score, ex["context"][span[0]:span[1]]
        preds[ex["id"]] = best_text
    return preds


def article_split(dataset: Any, heldout_frac: float, seed: int) -> tuple[Any, Any]:
    """(train, held out): SQuAD split by article `title`; no article is on both sides.

    Offline there is no SQuAD train split; training on some dev articles and evaluating on
    the others keeps the evaluation honest: questions about the same passage are strongly
    correlated, so a random question-level split would leak answers into training.
    """
    if not 0 < heldout_frac < 1:
        raise ValueError(f"heldout_frac must be in (0, 1), got {heldout_frac}")
    all_titles = dataset["title"]
    titles = sorted(set(all_titles))
    if len(titles) < 2:
        raise ValueError(f"need at least two articles to split by article, got {titles}")
    random.Random(seed).shuffle(titles)
    n_held = min(len(titles) - 1, max(1, round(heldout_frac * len(titles))))
    held = set(titles[:n_held])
    flags = [t in held for t in all_titles]
    train = dataset.select([i for i, f in enumerate(flags) if not f])
    evals = dataset.select([i for i, f in enumerate(flags) if f])
    return train, evals
