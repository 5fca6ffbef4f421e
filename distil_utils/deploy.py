"""A deployable student, beyond the paper's iPhone study: int8 weights and ONNX Runtime.

The paper ran DistilBERT on a phone (71% faster than BERT-base, 207 MB). The CPU analogue:
the fine-tuned student with its linear layers dynamically quantised to int8 (torch), and the
student exported to ONNX and run by onnxruntime (fp32, plus onnxruntime's own int8; the
export is `onnx_deploy`). Each variant is scored on the task's dev set and timed at batch
size 1 with the interleaved protocol of `speed.time_dataset_pass`, against the fp32 teacher.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .hub import load_split, load_tokenizer
from .intervals import difference_interval, paired_ratio
from .metrics import accuracy
from .model_inputs import (
    accepted_inputs,
    encode_batch,
    has_classifier_head,
    model_size,
    progress_bar,
    select_inputs,
    task_texts,
)
from .onnx_deploy import OnnxClassifier, export_onnx, onnx_size_mb, quantize_onnx
from .results_files import (
    DEPLOY,
    DEPLOY_ONNX,
    DEPLOY_ONNX_INT8,
    DEPLOY_ONNX_TEACHER,
    DEPLOY_STUDENT,
    DEPLOY_TEACHER,
    DEPLOY_TORCH_INT8,
)
from .speed import time_dataset_pass
from .student import count_parameters
from .tasks import GLUE_TASKS, TASKS, TEXT_COLUMNS


# ------------------------------------------------------------------------------ int8
def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every `nn.Linear` dynamically quantised to int8 (weights int8,
    activations quantised on the fly): the cheapest compression there is, no calibration data.

    `torch.ao.quantization.quantize_dynamic` is deprecated in favour of torchao; its warnings
    are silenced here. The embeddings (most of a small model's bytes) stay fp32.
    """
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as err:
        raise ImportError(
            f"this torch ({torch.__version__}) no longer ships torch.ao.quantization."
            "quantize_dynamic; pin torch<=2.13 or port quantize_int8 to torchao "
            "(quantize_(model, Int8DynamicActivationInt8WeightConfig()))") from err
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                dtype=torch.qint8)


# ------------------------------------------------------------------------------ accuracy
def _text_columns(columns: list[str]) -> tuple[str, str | None]:
    for a, b in TEXT_COLUMNS:
        if a in columns and (b is None or b in columns):
            return a, b
    raise ValueError(f"no text column among {columns}; expected one of "
                     f"{[c for c in TEXT_COLUMNS]}")


def _logits(out: Any) -> np.ndarray:
    out = getattr(out, "logits", out)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


@torch.inference_mode()
def predictions(predict_fn: Callable[..., Any], tokenizer: Any, dataset: Any,
                batch_size: int = 32, max_length: int = 128,
                progress: bool = True) -> np.ndarray:
    """Argmax class of `predict_fn(**tokenised_batch)` for every row of `dataset`.

    `predict_fn` is a transformers model, an `OnnxClassifier`, or any callable taking tokenizer
    outputs and returning logits (or an object with `.logits`).
    """
    columns = list(dataset.column_names if hasattr(dataset, "column_names") else dataset)
    a, b = _text_columns(columns)
    keys = accepted_inputs(predict_fn)
    first, second = list(dataset[a]), (list(dataset[b]) if b else None)
    preds = []
    for i in progress_bar(range(0, len(first), batch_size), "predicting", progress):
        texts = (list(zip(first[i:i + batch_size], second[i:i + batch_size], strict=True))
                 if second is not None else first[i:i + batch_size])
        enc = encode_batch(tokenizer, texts, max_length)
        preds.append(_logits(predict_fn(**select_inputs(enc, keys))).argmax(-1))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=int)


def classification_accuracy(predict_fn: Callable[..., Any], tokenizer: Any, dataset: Any,
                            batch_size: int = 32) -> float:
    """Accuracy (%) on a labelled data set (a `datasets.Dataset` or a dict of columns)."""
    labels = np.asarray(dataset["label"])
    if labels.size == 0:
        raise ValueError("empty data set: nothing to score")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels are {labels.dtype}, not class ids: accuracy needs a "
                         "classification task (STS-B is a regression; use sst2, mrpc, ...)")
    preds = predictions(predict_fn, tokenizer, dataset, batch_size)
    return accuracy(preds, labels)


# ------------------------------------------------------------------------------ report
def _load_classifier(path: str, role: str) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    if not has_classifier_head(str(path)):
        raise ValueError(f"the {role} at {path} is not a fine-tuned sequence classifier (no "
                         "*ForSequenceClassification architecture in its config): fine-tune it "
                         "first (notebook 04, or finetune.finetune_glue(..., output_dir=...))")
    return AutoModelForSequenceClassification.from_pretrained(str(path)).eval()


def _check_task(task: Any) -> None:
    if not isinstance(task, str):
        raise TypeError(f"task must be a task name such as 'sst2', got {type(task).__name__}. "
                        "The signature is deploy_report(student_dir, teacher_dir, cfg, task, "
                        "tokenizer=...)")
    if task not in GLUE_TASKS or task == "stsb":
        raise ValueError(f"deploy_report scores accuracy: choose a classification task among "
                         f"{sorted(set(GLUE_TASKS) - {'stsb'})}, not {task!r}")


def _check_pair(student: torch.nn.Module, teacher: torch.nn.Module) -> None:
    if student.config.num_labels != teacher.config.num_labels:
        raise ValueError(f"the student has {student.config.num_labels} labels, the teacher "
                         f"{teacher.config.num_labels}: they were not fine-tuned on one task")
    if count_parameters(student) > count_parameters(teacher):
        warnings.warn("the 'student' is larger than the 'teacher': are the arguments swapped? "
                      "deploy_report(student_dir, teacher_dir, cfg, ...)", stacklevel=3)


def _variants(student: torch.nn.Module, teacher: torch.nn.Module, tokenizer: Any,
              work: Path) -> tuple[dict[str, Any], dict[str, dict], dict[str, str]]:
    """Every deployable form of the student, the fp32 teacher first (the timing reference)."""
    models: dict[str, Any] = {DEPLOY_TEACHER: teacher, DEPLOY_STUDENT: student,
                              DEPLOY_TORCH_INT8: quantize_int8(student)}
    sizes = {k: model_size(m) for k, m in models.items()}
    errors: dict[str, str] = {}
    try:
        path = export_onnx(student, tokenizer, work / "student.onnx")
    except ImportError as err:
        errors["onnx"] = str(err)
        return models, sizes, errors
    models[DEPLOY_ONNX] = OnnxClassifier(path, tokenizer)
    sizes[DEPLOY_ONNX] = {"disk_mb": onnx_size_mb(path), "format": "onnx"}
    try:  # the teacher under ONNX Runtime too: the speed-up with less Python per call
        t_path = export_onnx(teacher, tokenizer, work / "teacher.onnx", save_tokenizer=False)
        models[DEPLOY_ONNX_TEACHER] = OnnxClassifier(t_path, tokenizer)
        sizes[DEPLOY_ONNX_TEACHER] = {"disk_mb": onnx_size_mb(t_path), "format": "onnx"}
    except Exception as err:  # an optional extra row: record why it is missing, keep the rest
        errors["onnx_teacher"] = f"{type(err).__name__}: {err}"
    try:
        q = quantize_onnx(path, work / "student-int8.onnx")
        models[DEPLOY_ONNX_INT8] = OnnxClassifier(q, tokenizer)
        sizes[DEPLOY_ONNX_INT8] = {"disk_mb": onnx_size_mb(q), "format": "onnx int8"}
    except Exception as err:  # an optional extra row: record why it is missing, keep the rest
        errors["onnx_int8"] = f"{type(err).__name__}: {err}"
    return models, sizes, errors


def deploy_report(fp32_student_cls_dir: str | Path, teacher_cls_dir: str | Path, cfg: Config,
                  task: str = "sst2", *, tokenizer: Any = None,
                  out_dir: str | Path | None = None, verbose: bool = True) -> dict[str, Any]:
    """Accuracy and batch-1 speed of fp32 / int8 / ONNX students against the fp32 teacher.

    Both directories hold classifiers fine-tuned on `task`. Accuracy is on the task's dev
    split, with each variant's agreement with the fp32 student; timing uses
    `cfg.bench_max_examples` examples and `cfg.bench_repeats` interleaved repeats without
    tokenisation. Written to `deploy.json` in `out_dir` (default `cfg.out`), the ONNX files
    to its `deploy/` folder.
    """
    _check_task(task)
    student = _load_classifier(str(fp32_student_cls_dir), "student")
    teacher = _load_classifier(str(teacher_cls_dir), "teacher")
    _check_pair(student, teacher)
    tok = tokenizer if tokenizer is not None else load_tokenizer(str(fp32_student_cls_dir))
    out = Path(out_dir) if out_dir is not None else cfg.out
    models, sizes, errors = _variants(student, teacher, tok, out / "deploy")
    dev = load_split(f"glue/{task}", TASKS[task].dev_split, cfg.data_dir)
    if cfg.ft_max_eval is not None:
        dev = dev.select(range(min(len(dev), cfg.ft_max_eval)))
    preds = {k: predictions(m, tok, dev) for k, m in models.items()}
    labels = np.asarray(dev["label"])
    texts = task_texts(task, cfg)
    timing = time_dataset_pass(models, tok, texts, batch_size=1, include_tokenization=False,
                               repeats=cfg.bench_repeats, warmup=min(10, len(texts)))
    rows = {k: _row(k, preds, labels, timing, sizes) for k in models}
    for k, row in rows.items():  # points lost against the fp32 student, paired on dev examples
        row["accuracy_drop"] = rows[DEPLOY_STUDENT]["accuracy"] - row["accuracy"]
        row["accuracy_drop_interval"] = list(difference_interval(
            accuracy, preds[DEPLOY_STUDENT], preds[k], labels, seed=cfg.seed))
    onnx_speedup = None
    if {DEPLOY_ONNX_TEACHER, DEPLOY_ONNX} <= set(models):
        t = timing["models"]
        onnx_speedup = paired_ratio(t[DEPLOY_ONNX_TEACHER]["times"],
                                    t[DEPLOY_ONNX]["times"])
    report = {"task": task, "split": TASKS[task].dev_split,
              "examples_accuracy": len(labels), "examples_timing": len(texts),
              "reference": DEPLOY_TEACHER, "threads": timing["threads"], "models": rows,
              "onnx_error": errors.get("onnx"), "onnx_int8_error": errors.get("onnx_int8"),
              "onnx_teacher_error": errors.get("onnx_teacher"),
              "onnx_fp32_speedup": onnx_speedup,
              "timing": timing, "student": str(fp32_student_cls_dir),
              "teacher": str(teacher_cls_dir)}
    report["path"] = str(DEPLOY.write(report, cfg, out=out, student=str(fp32_student_cls_dir),
                                      teacher=str(teacher_cls_dir)))
    if verbose:
        print(format_deploy(report))
    return report


def _row(name: str, preds: Mapping[str, np.ndarray], labels: np.ndarray, timing: dict,
         sizes: Mapping[str, dict]) -> dict[str, Any]:
    t, ref = timing["models"][name], sizes[DEPLOY_TEACHER]["disk_mb"]
    return {"accuracy": accuracy(preds[name], labels),
            "agreement_with_student_fp32": accuracy(preds[name], preds[DEPLOY_STUDENT]),
            "seconds": t["seconds_median"], "seconds_min": t["seconds_min"],
            "seconds_max": t["seconds_max"], "time_per_example_ms": t["time_per_example_ms"],
            "time_ratio_vs_teacher":
            t["time_ratio_vs_first"], "speedup_vs_teacher": t["speedup_vs_first"],
            # rounds paired with the fp32 teacher's (time_dataset_pass: the first model)
            "speedup_paired": t["paired_speedup_median"],
            "speedup_interval": t["paired_speedup_interval"],
            "params_m": sizes[name].get("params_m"), "disk_mb": sizes[name]["disk_mb"],
            "disk_ratio_vs_teacher": sizes[name]["disk_mb"] / ref,
            "size_format": sizes[name].get("format")}


def format_deploy(report: dict[str, Any]) -> str:
    """One line per variant: accuracy, agreement, speed and size against the fp32 teacher."""
    lines = [f"{report['task']} {report['split']}: accuracy on {report['examples_accuracy']} "
             f"examples, batch-1 timing on {report['examples_timing']}, {report['threads']} "
             "threads; ratios vs the fp32 teacher",
             f"{'':22} {'acc %':>7} {'agree %':>8} {'pass (s)':>9} {'speedup':>8} "
             f"{'disk MB':>8} {'disk ratio':>10}"]
    for k, r in report["models"].items():
        lines.append(f"{k:22} {r['accuracy']:7.1f} {r['agreement_with_student_fp32']:8.1f} "
                     f"{r['seconds']:9.3f} {r['speedup_vs_teacher']:8.2f} {r['disk_mb']:8.1f} "
                     f"{r['disk_ratio_vs_teacher']:10.2f}")
    for key in ("onnx_error", "onnx_int8_error", "onnx_teacher_error"):
        if report.get(key):
            lines.append(f"{key}: {report[key]}")
    return "\n".join(lines)
