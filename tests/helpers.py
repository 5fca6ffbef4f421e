"""What the tests share: tiny configs, a corpus vocabulary, tiny models, batches and runs.

Imported as `from helpers import ...` (pytest puts `tests/` on `sys.path` with the root
conftest, for `tests/suite/` too); the fixtures built from these live in `conftest.py`.
"""

from __future__ import annotations

import copy
import os
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VOCAB = 30522  # bert-base-uncased's WordPiece vocabulary

# The words every test corpus is drawn from (`write_corpus`).
WORDS = ("the model learns a small student from large teacher by matching its soft predictions "
         "on masked words while cosine loss aligns hidden states alpha beta gamma delta river "
         "mountain city music science history distillation keeps most of runs faster long and "
         "short documents alike reads many pages text smaller to predict same targets").split()

# Sentence pairs for the classifiers (the speed and deployment tests).
PAIRS = [("a man is playing a guitar.", "a person plays music."),
         ("the cat sleeps.", "a dog barks loudly at night."),
         ("stocks fell today.", "markets were down.")]

# Settings over the smoke profile, by what the tests run (`smoke_config(..., preset=...)`).
PRESETS: dict[str, dict[str, Any]] = {
    # the tokenisation pipeline: sequences of 5..32 tokens, 20 held-out documents
    "sequences": dict(heldout_docs=20, max_seq_len=32, min_seq_len=5, batch_size=4,
                      max_steps=4),
    # the distillation loop: 8 steps of a 4-layer teacher, a checkpoint every 4, no adaptation
    "distill": dict(heldout_docs=10, max_seq_len=32, min_seq_len=4, batch_size=4, max_steps=8,
                    checkpoint_every=4, log_every=1, adapt_steps=0, tiny_layers=4,
                    tiny_hidden=32),
    # a whole small run: a 2-layer teacher adapted 2 steps, 2 distillation steps
    "small": dict(heldout_docs=10, max_seq_len=32, min_seq_len=4, batch_size=4, adapt_steps=2,
                  max_steps=2, checkpoint_every=1, log_every=1, eval_batches=1, tiny_layers=2,
                  tiny_hidden=32, tiny_intermediate=64),
    # fine-tuning slices: 48 training and 16 dev examples, a Trainer checkpoint every 2 steps
    "finetune": dict(ft_max_train=48, ft_max_eval=16, ft_batch_size=8, ft_epochs=1.0,
                     ft_checkpoint_every=2, ft_task_overrides={}),
}


def smoke_config(results_dir: str | Path | None = None, corpus: str | Path | None = None, *,
                 data_dir: str | Path | None = None, preset: str | None = None, **overrides):
    """The smoke profile writing under `results_dir`, on the text file `corpus` (all of it)
    and the data mirror `data_dir`, with a `PRESETS` entry; `overrides` win over all."""
    from distil_utils.config import get_config

    base: dict[str, Any] = {}
    if results_dir is not None:
        base["results_dir"] = str(results_dir)
    if corpus is not None:
        base.update(corpus=(str(corpus),), corpus_max_docs=None)
    if data_dir is not None:
        base["data_dir"] = str(data_dir)
    if preset is not None:
        base.update(copy.deepcopy(PRESETS[preset]))
    return get_config("smoke", **{**base, **overrides})


def write_corpus(path, words, docs: int, min_words: int, max_words: int, seed: int):
    """A text corpus at `path`: `docs` lines of `min_words`..`max_words` random `words`."""
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(
        min_words, max_words))) for _ in range(docs)) + "\n")
    return path


def make_tiny_bert(layers: int = 4, hidden: int = 32, vocab: int = VOCAB, seed: int = 0):
    """A randomly initialised `BertForMaskedLM` small enough for unit tests: the package's
    `tiny_teacher` without dropout, 2 heads, 128 positions, in eval mode."""
    from distil_utils.teacher import tiny_teacher

    return tiny_teacher(vocab, layers=layers, hidden=hidden, heads=2, intermediate=2 * hidden,
                        max_positions=128, seed=seed, dropout=0.0).eval()


def smoke_teacher(tokenizer, cfg):
    """The teacher a config's `tiny_*` settings describe (512 positions, dropout 0.1), in
    eval mode."""
    from distil_utils.teacher import tiny_teacher

    return tiny_teacher(len(tokenizer), cfg.tiny_layers, cfg.tiny_hidden, 2, 64, seed=0).eval()


def confident_pair(layers: int, hidden: int, scale: float, vocab: int = VOCAB):
    """A tiny teacher whose MLM decoder is scaled by `scale` (confident predictions, so that
    L_ce is far from 0) and a random 2-layer student of it (seed 1)."""
    import torch

    from distil_utils.student import random_student

    teacher = make_tiny_bert(layers=layers, hidden=hidden, vocab=vocab)
    with torch.no_grad():
        teacher.cls.predictions.decoder.weight.mul_(scale)
    return teacher, random_student(teacher, 2, seed=1)


def id_batch(lengths, seed: int = 0):
    """A padded batch of [CLS] random-ids [SEP] rows of the given lengths."""
    from distil_utils.data import collate

    rng = random.Random(seed)
    return collate([[101] + [rng.randrange(1000, 30000) for _ in range(n - 2)] + [102]
                    for n in lengths], pad_id=0)


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


def prepared_run(cfg):
    """Tokenizer, corpus and (adapted, cached) teacher of `cfg`, as `distill` prepares them:
    (tokenizer, train, held-out, teacher, teacher folder, adaptation report)."""
    from distil_utils.distill import prepare_corpus, prepare_teacher
    from distil_utils.teacher import prepare_tokenizer

    tok = prepare_tokenizer(cfg)
    train, held = prepare_corpus(cfg, tok)
    teacher, path, report = prepare_teacher(cfg, tok, train, held)
    return tok, train, held, teacher, path, report


def distill_cli(results: Path, corpus: Path, steps: int) -> list[str]:
    """`python -m distil_utils.distill` on the smoke profile and a text corpus."""
    return [sys.executable, "-m", "distil_utils.distill", "--profile", "smoke",
            "-p", "results_dir", str(results), "-p", "corpus", f"('{corpus}',)",
            "-p", "corpus_max_docs", "None", "-p", "heldout_docs", "10",
            "-p", "max_seq_len", "32", "-p", "batch_size", "4", "-p", "adapt_steps", "0",
            "-p", "max_steps", str(steps), "-p", "checkpoint_every", "2"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: the checkout importable, one OpenMP thread,
    offline, no progress bars."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", **extra}


def kill_after_first_checkpoint(proc, ckpt, *, timeout_s: float, max_delay_s: float, kill):
    """Wait for `proc` to write `ckpt` (or to end), then `kill()` it at a random point up to
    `max_delay_s` later, and wait for it to exit."""
    import time

    deadline = time.time() + timeout_s
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, max_delay_s))
    kill()
    proc.wait()


# Fixture notebooks for the runner (tests/test_reproduce.py, tests/suite/test_runner.py).
WRITE_FILE = """import os
from pathlib import Path
Path(RESULTS_DIR, f"{NAME}_{PROFILE}_{X}.txt").write_text(os.environ["DISTIL_COMMAND"])"""


def write_notebook(path: Path, body: str,
                   params: str = "PROFILE = None\nRESULTS_DIR = None\nX = 1",
                   name: str | None = None) -> Path:
    """A notebook: a title, a `parameters` cell (`params` and NAME), then `body`."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params + f"\nNAME = {name or path.stem[:2]!r}")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), cell,
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def random_sequences(n: int = 300, seed: int = 0, vocab: int = 30000):
    """`n` tokenised sequences ([CLS] 4-30 random ids [SEP]) as `prepare_sequences` returns
    them: a python-formatted Dataset with `input_ids` and `length`."""
    import datasets

    rng = random.Random(seed)
    seqs = [[101] + [rng.randrange(1000, vocab) for _ in range(rng.randint(4, 30))] + [102]
            for _ in range(n)]
    return datasets.Dataset.from_dict({"input_ids": seqs, "length": [len(s) for s in seqs]}
                                      ).with_format("python")
