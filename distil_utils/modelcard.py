"""Model cards and label names for every model the suite saves, by the Hub's conventions.

A saved model directory is meant to be usable on its own (`from_pretrained`, `pipeline`, the
Hub): it carries a `README.md` written with huggingface_hub's `ModelCard` whose metadata names
its `base_model`, `datasets`, `license`, `pipeline_tag` and a model-index of *this* model's
results (metric ids such as `accuracy` or `pearsonr`, dataset config and split), each with its
95% interval in the text; classifiers also carry the task's real label names, so
`pipeline("text-classification")` answers "positive", not "LABEL_1".

The card is built from the run itself, wherever the model is saved (notebook or command line):
`card_facts` takes the run's settings and measured results, `save_model` writes them beside
the weights as `distil_card.json`, and `add_results` adds a measure taken after saving (the
student's held-out masked-token accuracy). Notebook 07's `refresh_model_cards` rewrites the
cards with the GLUE scores measured downstream.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from .config import ROOT
from .hub import MINILM_HUB
from .results_io import read_json, write_json
from .tasks import CORPORA, DATASETS, GLUE_METRICS, TASKS

PAPER = "https://arxiv.org/abs/1910.01108"
CARD_FACTS = "distil_card.json"
# The suite's metric keys -> the Hub's metric ids (https://huggingface.co/metrics).
METRIC_IDS = {"accuracy": "accuracy", "f1": "f1", "pearson": "pearsonr",
              "spearmanr": "spearmanr", "matthews_correlation": "matthews_correlation",
              "exact_match": "exact_match", "mlm_acc": "accuracy"}
METRIC_NAMES = {"accuracy": "accuracy", "f1": "F1", "pearson": "Pearson r",
                "spearmanr": "Spearman ρ", "matthews_correlation": "Matthews correlation",
                "exact_match": "exact match", "mlm_acc": "held-out masked-token accuracy"}


def git_commit(root: Path = ROOT) -> str | None:
    """The checkout's commit (with "-dirty" when files differ), or None outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty.strip() else "")


def _role(name: str) -> tuple[str, str | None]:
    """(model name, task) from a directory name: "student" -> ("student", None),
    "student_sst2" -> ("student", "sst2"), "teacher_squad" -> ("teacher", "squad")."""
    for task in TASKS:
        if name.endswith(f"_{task}"):
            return name.removesuffix(f"_{task}"), task
    return name, None


def _hub_name(name: str | None) -> str | None:
    """A Hub id for `base_model`, or None (a tiny teacher built here, a local folder)."""
    if name == "minilm":
        return MINILM_HUB
    if not name or name == "tiny" or Path(name).is_absolute() or Path(name).exists():
        return None
    return name


def _corpus_label(name: str) -> str:
    return name if name in CORPORA else Path(name).name  # a local corpus: its name, no path


# ------------------------------------------------------------------------ the run's facts
def card_facts(cfg: Any, task: str | None = None, results: list[dict] | tuple = ()) -> dict:
    """What a model's card says, from the run that made it: profile, teacher, data, seed,
    commit and command, and `results` (`mlm_results`, `finetune_results`)."""
    task = {"squad_d": "squad"}.get(task, task)
    datasets = [DATASETS[CORPORA[c][0]].hub for c in cfg.corpus if c in CORPORA]
    if task:
        datasets.append(DATASETS[TASKS[task].dataset].hub)
    return {"profile": cfg.profile, "teacher": _hub_name(cfg.teacher) or
            _corpus_label(str(cfg.teacher)), "base_model": _hub_name(cfg.teacher),
            "corpus": [_corpus_label(c) for c in cfg.corpus],
            "datasets": sorted(set(datasets)), "task": task, "seed": cfg.seed,
            "commit": git_commit(),
            "command": os.environ.get("DISTIL_COMMAND", "interactive notebook"),
            "results": list(results)}


def _result(task_type: str, dataset: str, name: str, config: str | None, split: str,
            key: str, value: float, interval: Any = None, n: int | None = None,
            label: str | None = None) -> dict:
    low, high = (list(interval) + [None, None])[:2] if interval is not None else (None, None)
    return {"task_type": task_type, "dataset_type": dataset, "dataset_name": name,
            "dataset_config": config, "dataset_split": split, "metric_type": METRIC_IDS[key],
            "metric_name": label or f"{METRIC_NAMES[key]} (%)", "metric_value": float(value),
            "low": low, "high": high, "n": n}


def mlm_results(cfg: Any, mlm: dict[str, Any]) -> list[dict]:
    """The held-out masked-token accuracy (`heldout.evaluate_mlm`'s dict) as a card result."""
    first = cfg.corpus[0]
    ds = DATASETS[CORPORA[first][0]] if first in CORPORA else None
    corpus = " + ".join(_corpus_label(c) for c in cfg.corpus)
    return [_result("fill-mask", ds.hub if ds else _corpus_label(first),
                    f"{corpus}, {cfg.heldout_docs} held-out documents",
                    ds.config if ds else None, "held-out documents", "mlm_acc", mlm["mlm_acc"],
                    (mlm.get("mlm_acc_low"), mlm.get("mlm_acc_high")), mlm.get("n_masked"))]


def finetune_results(task: str, result: dict[str, Any]) -> list[dict]:
    """A fine-tuning run's dev/test metrics (as `finetune`/`downstream` return them)."""
    if task in GLUE_METRICS:
        out = []
        for split, rec in result.get("dev", {}).items():
            which = split.removeprefix("validation_")
            scored = f"mnli_{which}" if task == "mnli" else task
            for key in GLUE_METRICS[scored]:
                value = result["metrics"].get(f"{key}_{which}" if task == "mnli" else key)
                if value is not None:
                    out.append(_result("text-classification", "nyu-mll/glue",
                                       f"GLUE {TASKS[task].display}", task, split, key, value,
                                       rec.get("intervals", {}).get(key),
                                       len(rec.get("labels", [])) or None))
        return out
    intervals = result.get("intervals", {})
    if task == "imdb":
        split = "test" if result.get("test_source") == "test split" else "train (held out)"
        return [_result("text-classification", DATASETS["imdb"].hub, "IMDb", None, split,
                        "accuracy", result["accuracy"], intervals.get("accuracy"),
                        result.get("n_test"))]
    if task in ("squad", "squad_d"):
        split = "validation" if result.get("split") == "train / validation" else \
            "validation (held-out articles)"
        return [_result("question-answering", DATASETS["squad"].hub, "SQuAD v1.1", None, split,
                        key, result[key], intervals.get(key), result.get("n_eval"))
                for key in ("exact_match", "f1") if key in result]
    raise ValueError(f"no card results for task {task!r}")


def read_facts(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / CARD_FACTS
    return read_json(path) if path.is_file() else {}


# ------------------------------------------------------------------------------ the card
def build_card(model_dir: str | Path, config: Any, facts: dict | None = None,
               downstream: dict[str, float] | None = None) -> Any:
    """A `ModelCard` for the model saved (or being saved) in `model_dir`, from `facts`
    (default: its `distil_card.json`) and, for a pre-trained model, `downstream` GLUE
    scores of the models fine-tuned from it."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model_dir = Path(model_dir)
    name = model_dir.name.strip(".").removesuffix(".tmp")
    facts = read_facts(model_dir) if facts is None else facts
    profile, teacher = facts.get("profile", "unknown"), facts.get("teacher")
    task = facts.get("task") or _role(name)[1]
    results = facts.get("results", [])
    layers = getattr(config, "distil_teacher_layers", None)
    evals = [EvalResult(task_type=r["task_type"], dataset_type=r["dataset_type"],
                        dataset_name=r["dataset_name"], dataset_config=r["dataset_config"],
                        dataset_split=r["dataset_split"], metric_type=r["metric_type"],
                        metric_name=r["metric_name"], metric_value=round(r["metric_value"], 4))
             for r in results] or None
    data = ModelCardData(
        library_name="transformers", license="apache-2.0", language="en",
        base_model=facts.get("base_model"), datasets=facts.get("datasets") or None,
        pipeline_tag=_pipeline_tag(task),
        tags=["distilbert", "distillation", "knowledge-distillation", f"profile-{profile}"],
        model_name=f"{name}-{profile}", eval_results=evals)
    arch = (config.architectures or [type(config).__name__])[0]
    lines = [
        f"# {name} — DistilBERT reproduction, `{profile}` profile", "",
        f"Made by the DistilBERT reproduction suite (Sanh et al., 2019, [{PAPER}]({PAPER})).",
        f"This is the `{profile}` profile's `{name}`: a `{arch}` with {_n_layers(config)} "
        f"layers, {_width(config)} wide"
        + (f", initialised from teacher layers {list(layers)}" if layers else "") + ".",
        "", "| | |", "|---|---|",
        f"| teacher | {teacher or 'unknown'} |",
        f"| data | {', '.join(facts.get('datasets') or facts.get('corpus') or []) or 'unknown'} |",
        f"| profile | `{profile}` (settings in `distil_utils/config.py`), seed "
        f"{facts.get('seed', 'unknown')} |",
        f"| commit | {facts.get('commit') or 'unknown'} |",
        f"| command | `{facts.get('command', 'unknown')}` |",
    ]
    if getattr(config, "id2label", None) and task:
        lines.append(f"| labels | {', '.join(f'{i}: {n}' for i, n in config.id2label.items())} |")
    lines += ["", "## Results of this model (95% bootstrap intervals)", ""]
    if results:
        lines += ["| data set | split | metric | value | 95% interval | examples |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['dataset_name']} | {r['dataset_split']} | {r['metric_name']} | "
                  f"{r['metric_value']:.2f} | {_interval(r)} | {r.get('n') or ''} |"
                  for r in results]
    else:
        lines.append("Not measured by the run that saved it.")
    if downstream:
        lines += ["", "## Fine-tuned from this model (notebook 04: GLUE dev, median over seeds)",
                  "", "| task | score (%) |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in downstream.items()]
    lines += ["", "These are measurements at this profile's scale, not the paper's numbers."]
    if teacher == "tiny":
        lines[-1] += (" The teacher is a tiny BERT trained for a few steps from random weights: "
                      "this model shows that the code runs, not what distillation achieves.")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def _interval(r: dict) -> str:
    return f"[{r['low']:.2f}, {r['high']:.2f}]" if r.get("low") is not None else "—"


def _n_layers(config: Any) -> Any:
    return getattr(config, "num_hidden_layers", getattr(config, "n_layers", "?"))


def _width(config: Any) -> Any:
    return getattr(config, "hidden_size", getattr(config, "dim", "?"))


def _pipeline_tag(task: str | None) -> str:
    if task in ("squad", "squad_d"):
        return "question-answering"
    if task:
        return "text-classification"
    return "fill-mask"


def write_model_card(model_dir: str | Path, config: Any, facts: dict | None = None,
                     downstream: dict[str, float] | None = None) -> Path:
    """Write `<model_dir>/README.md` (and, with `facts`, `distil_card.json`); its path."""
    model_dir = Path(model_dir)
    if facts is not None:
        write_json(model_dir / CARD_FACTS, facts)
    path = model_dir / "README.md"
    card = build_card(model_dir, config, facts, downstream)
    tmp = path.with_name(f".{path.name}.tmp")
    card.save(tmp)
    os.replace(tmp, path)  # a card is whole or absent
    return path


def _config(model_dir: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_dir)


def add_results(model_dir: str | Path, results: list[dict]) -> Path:
    """Add results measured after saving (same data set, split and metric: replaced)."""
    model_dir = Path(model_dir)
    facts = read_facts(model_dir)
    key = ("dataset_type", "dataset_split", "metric_type", "metric_name")
    new = {tuple(r[k] for k in key) for r in results}
    facts["results"] = [r for r in facts.get("results", [])
                        if tuple(r[k] for k in key) not in new] + list(results)
    return write_model_card(model_dir, _config(model_dir), facts)


def _downstream(profile_out: Path, name: str) -> dict[str, float]:
    path = profile_out / f"glue_{name}.json"
    if not path.is_file():
        return {}
    glue = read_json(path).get("metrics", {})
    out = {TASKS[t].display if t in TASKS else t: v
           for t, v in glue.get("columns", {}).items() if v is not None}
    if glue.get("score") is not None:
        out[f"macro, {len(glue.get('columns', {}))} tasks"] = glue["score"]
    return out


def refresh_model_cards(profile_out: str | Path) -> list[Path]:
    """Rewrite the card of every model saved under `results/<profile>/`, adding to each
    pre-trained model the GLUE scores of the models fine-tuned from it."""
    written = []
    out = Path(profile_out)
    for cfg_file in sorted(out.glob("*/config.json")) + sorted(out.glob("*/*/config.json")):
        model_dir = cfg_file.parent
        if model_dir.name.startswith(".") or "checkpoints" in model_dir.parts:
            continue
        name, task = _role(model_dir.name)
        written.append(write_model_card(model_dir, _config(model_dir), None,
                                        None if task else _downstream(out, name)))
    return written


def card_numbers(card_path: str | Path) -> list[dict[str, Any]]:
    """The model-index of a saved card as huggingface_hub parses it (for checks and tests)."""
    from huggingface_hub import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    meta = metadata_load(card_path) or {}
    if "model-index" not in meta:
        return []
    _, results = model_index_to_eval_results(meta["model-index"])
    return [json.loads(json.dumps(r.__dict__, default=str)) for r in results]
