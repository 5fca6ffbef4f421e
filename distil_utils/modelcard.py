"""Model cards and label names for every model the suite saves.

A saved model directory is meant to be usable on its own (`from_pretrained`, `pipeline`, the
Hub): it carries a `README.md` written with huggingface_hub's `ModelCard` (base model, data,
profile, commit, the metrics its results files hold) and, for classifiers, the task's real
label names so `pipeline("text-classification")` answers "positive", not "LABEL_1".

The card is written when the model is saved, from what is known then, and rewritten by
`refresh_model_cards` (notebook 07) once the later notebooks have measured the model.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from .config import ROOT
from .hub import MINILM_HUB
from .tasks import CORPORA, DATASETS, TASKS

PAPER = "https://arxiv.org/abs/1910.01108"


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


def _profile_dir(model_dir: Path) -> Path | None:
    """`results/<profile>/` above a model directory (`student/`, `finetuned/student_sst2/`)."""
    for parent in list(model_dir.resolve().parents)[:3]:
        if (parent / "PROFILE.json").exists():
            return parent
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("metrics", data)


def _role(name: str) -> tuple[str, str | None]:
    """(model name, task) from a directory name: "student" -> ("student", None),
    "student_sst2" -> ("student", "sst2"), "teacher_squad" -> ("teacher", "squad")."""
    for task in TASKS:
        if name.endswith(f"_{task}"):
            return name.removesuffix(f"_{task}"), task
    return name, None


def model_metrics(model_dir: Path, profile_dir: Path | None) -> dict[str, float]:
    """What the profile's results files say about this model, `{metric name: value}`."""
    if profile_dir is None:
        return {}
    name, task = _role(Path(model_dir).name)
    out: dict[str, float] = {}
    glue = _read(profile_dir / f"glue_{name}.json")
    if task is None:
        for t, v in glue.get("columns", {}).items():
            out[f"GLUE {t} dev (%)"] = v
        if glue.get("score") is not None:
            out[f"GLUE macro, {len(glue.get('columns', {}))} tasks (%)"] = glue["score"]
        distill = _read(profile_dir / "03_distill.json")
        held = {r.get("model"): r for r in distill.get("held_out_mlm", [])}
        held |= {r.get("name"): r for r in distill.get("ablation", [])}
        row = held.get({"student": "student, distilled"}.get(name, name))
        if row:
            out["held-out masked-token accuracy (%)"] = row["mlm_acc"]
        adapted = _read(profile_dir / "teacher_adaptation.json").get("after", {})
        if name == "teacher" and "mlm_acc" in adapted and not row:
            out["held-out masked-token accuracy (%)"] = adapted["mlm_acc"]
    elif task in glue.get("per_task", {}):
        out.update({f"{task} dev {k} (%)": v for k, v in glue["per_task"][task].items()})
    down = _read(profile_dir / "05_downstream.json").get("models", {}).get(name, {})
    if task == "imdb" and "imdb" in down:
        out["IMDb held-out accuracy (%)"] = down["imdb"]
    if task == "squad" and "squad_f1" in down:
        out["SQuAD v1.1 EM (%)"], out["SQuAD v1.1 F1 (%)"] = down["squad_em"], down["squad_f1"]
    return {k: round(float(v), 2) for k, v in out.items() if v is not None}


def build_card(model_dir: str | Path, config: Any) -> Any:
    """A `ModelCard` for the model saved (or being saved) in `model_dir`."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model_dir = Path(model_dir)
    name = model_dir.name.strip(".").removesuffix(".tmp")
    profile_dir = _profile_dir(model_dir)
    marker = _read(profile_dir / "PROFILE.json") if profile_dir else {}
    profile, teacher = marker.get("profile", "unknown"), marker.get("teacher")
    _, task = _role(name)
    metrics = model_metrics(model_dir.with_name(name), profile_dir)
    cfg_file = profile_dir / "config" / "01_teacher.json" if profile_dir else None
    corpus = _read(cfg_file).get("config", {}).get("corpus", []) if cfg_file else []
    datasets = [DATASETS[CORPORA[c][0]].hub if c in CORPORA else c for c in corpus]
    if task:
        datasets.append(DATASETS[TASKS[task].dataset].hub)
    layers = getattr(config, "distil_teacher_layers", None)
    base = teacher if teacher and teacher not in ("tiny",) else None
    evals = [EvalResult(task_type="text-classification" if task != "squad" else
                        "question-answering", dataset_type=DATASETS[TASKS[task].dataset].hub,
                        dataset_name=task or "glue", metric_type=k, metric_value=v)
             for k, v in metrics.items()] if task else None
    data = ModelCardData(
        library_name="transformers", license="apache-2.0", language="en",
        base_model=_hub_name(base), datasets=sorted(set(datasets)) or None,
        pipeline_tag=_pipeline_tag(config, task), tags=["distilbert", "distillation",
                                                         f"profile-{profile}"],
        model_name=f"{name} ({profile} profile)", eval_results=evals)
    arch = (config.architectures or [type(config).__name__])[0]
    lines = [
        f"# {name} — DistilBERT reproduction, `{profile}` profile", "",
        f"Made by the DistilBERT reproduction suite (Sanh et al., 2019, [{PAPER}]({PAPER})).",
        f"This is the `{profile}` profile's `{name}`: a `{arch}` with {_n_layers(config)} "
        f"layers, {_width(config)} wide"
        + (f", initialised from teacher layers {list(layers)}" if layers else "") + ".",
        "", "| | |", "|---|---|",
        f"| teacher | {teacher or 'unknown'} |",
        f"| data | {', '.join(datasets) or 'unknown'} |",
        f"| profile | `{profile}` (settings in `distil_utils/config.py`) |",
        f"| commit | {git_commit() or 'unknown'} |",
        f"| command | `{os.environ.get('DISTIL_COMMAND', 'interactive notebook')}` |",
    ]
    if getattr(config, "id2label", None) and task:
        lines.append(f"| labels | {', '.join(f'{i}: {n}' for i, n in config.id2label.items())} |")
    lines += ["", "## Metrics (from the profile's results files)", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in metrics.items()]
    else:
        lines.append("Not measured yet: notebooks 03-05 write them, notebook 07 copies them here.")
    lines += ["", "These are measurements at this profile's scale, not the paper's numbers."]
    if teacher == "tiny":
        lines[-1] += (" The teacher is a tiny BERT trained for a few steps from random weights: "
                      "this model shows that the code runs, not what distillation achieves.")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def _hub_name(name: str | None) -> str | None:
    if name == "minilm":
        return MINILM_HUB
    return name if name and not Path(name).is_absolute() else None


def _n_layers(config: Any) -> Any:
    return getattr(config, "num_hidden_layers", getattr(config, "n_layers", "?"))


def _width(config: Any) -> Any:
    return getattr(config, "hidden_size", getattr(config, "dim", "?"))


def _pipeline_tag(config: Any, task: str | None) -> str:
    if task == "squad":
        return "question-answering"
    if task:
        return "text-classification"
    return "fill-mask"


def write_model_card(model_dir: str | Path, config: Any) -> Path:
    """Write `<model_dir>/README.md`; returns its path."""
    path = Path(model_dir) / "README.md"
    build_card(model_dir, config).save(path)
    return path


def refresh_model_cards(profile_out: str | Path) -> list[Path]:
    """Rewrite the card of every model saved under `results/<profile>/` with its metrics."""
    from transformers import AutoConfig

    written = []
    out = Path(profile_out)
    for cfg_file in sorted(out.glob("*/config.json")) + sorted(out.glob("*/*/config.json")):
        model_dir = cfg_file.parent
        if model_dir.name.startswith(".") or "checkpoints" in model_dir.parts:
            continue
        written.append(write_model_card(model_dir, AutoConfig.from_pretrained(model_dir)))
    return written
