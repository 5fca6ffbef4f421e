"""A deployable student, beyond the paper's iPhone study: int8 and ONNX Runtime.

Dynamic int8 quantisation of the linear layers (torch's `quantize_dynamic`) and an ONNX export
run with onnxruntime (fp32, and int8 through onnxruntime's own dynamic quantiser), each timed
with the same interleaved protocol as `bench` and scored on a GLUE dev set.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bench import _encode, model_size, task_texts, time_dataset_pass
from .config import Config
from .hub import load_split


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every `nn.Linear` dynamically quantised to int8."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch announces a future move of this API to torchao
        return quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                dtype=torch.qint8)


def _need_onnx() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError("ONNX export needs onnx, onnxscript and onnxruntime: "
                          "pip install -e .[deploy]") from err
    return onnxruntime


def export_onnx(model: torch.nn.Module, path: str | Path) -> Path:
    """Export a sequence classifier to ONNX with dynamic batch and sequence axes."""
    _need_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (ids, mask), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
                          dynamo=True, verbose=False)
    return path


def quantize_onnx(path: str | Path, out: str | Path) -> Path:
    """onnxruntime's dynamic int8 quantisation of an exported model."""
    _need_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8)
    return Path(out)


def onnx_size_mb(path: Path) -> float:
    """Size of an ONNX model with its external weight file (the exporter writes `.data`)."""
    files = [path, *path.parent.glob(f"{path.name}.data"), *path.parent.glob(f"{path.stem}.data")]
    return sum(f.stat().st_size for f in set(files) if f.exists()) / 1e6


class OnnxClassifier:
    """Call an ONNX sequence classifier like a transformers model: `m(input_ids=, ...)`."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = _need_onnx()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        logits = self.session.run(None, {"input_ids": input_ids.numpy(),
                                         "attention_mask": attention_mask.numpy()})[0]
        return _Out(torch.from_numpy(logits))

    __call__ = forward


class _Out:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


@torch.inference_mode()
def classification_accuracy(model: Any, tokenizer: Any, texts: list, labels: list[int],
                            batch_size: int = 32) -> float:
    """Accuracy (%) of a classifier (torch or ONNX) on `texts`."""
    from .bench import accepted_inputs

    keys = accepted_inputs(model)
    preds = []
    for i in range(0, len(texts), batch_size):
        enc = _encode(tokenizer, texts[i:i + batch_size])
        logits = model(**{k: v for k, v in enc.items() if k in keys}).logits
        preds.extend(logits.argmax(-1).tolist())
    return 100.0 * float(np.mean(np.asarray(preds) == np.asarray(labels)))


def deploy_report(teacher_cls: str, student_cls: str, cfg: Config, tokenizer: Any,
                  task: str = "sst2", work_dir: str | Path | None = None) -> dict[str, Any]:
    """Accuracy and batch-1 speed of fp32 teacher, fp32 / int8 / ONNX students on a task.

    `teacher_cls` and `student_cls` are classifiers fine-tuned on `task` (notebook 04 saves
    them under `finetuned/`). Speed ratios are against the fp32 teacher.
    """
    from transformers import AutoModelForSequenceClassification

    work = Path(work_dir or cfg.out / "deploy")
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_cls).eval()
    student = AutoModelForSequenceClassification.from_pretrained(student_cls).eval()
    variants: dict[str, Any] = {"teacher fp32": teacher, "student fp32": student,
                                "student int8 (torch)": quantize_int8(student)}
    sizes = {k: model_size(v) for k, v in variants.items() if k != "student int8 (torch)"}
    try:
        onnx_path = export_onnx(student, work / "student.onnx")
        int8_path = quantize_onnx(onnx_path, work / "student-int8.onnx")
        variants["student ONNX fp32"] = OnnxClassifier(onnx_path)
        variants["student ONNX int8"] = OnnxClassifier(int8_path)
        sizes["student ONNX fp32"] = {"disk_mb": onnx_size_mb(onnx_path)}
        sizes["student ONNX int8"] = {"disk_mb": onnx_size_mb(int8_path)}
        onnx_error = None
    except ImportError as err:
        onnx_error = str(err)
    dev = load_split(f"glue/{task}", "validation", cfg.data_dir)
    if cfg.ft_max_eval is not None:
        dev = dev.select(range(min(len(dev), cfg.ft_max_eval)))
    texts, labels = task_texts_from(dev, task), list(dev["label"])
    acc = {k: classification_accuracy(m, tokenizer, texts, labels) for k, m in variants.items()}
    speed_texts = task_texts(task, cfg)
    timing = time_dataset_pass(variants, tokenizer, speed_texts, batch_size=1,
                               repeats=cfg.bench_repeats)
    rows = {}
    for k in variants:
        rows[k] = {"accuracy": acc[k], "seconds": timing["models"][k]["median"],
                   "speedup_vs_teacher": timing["models"][k]["speedup_vs_first"],
                   "accuracy_vs_student_fp32": acc[k] - acc["student fp32"], **sizes.get(k, {})}
    return {"task": task, "examples_accuracy": len(texts), "examples_timing": len(speed_texts),
            "models": rows, "onnx_error": onnx_error, "threads": timing["threads"]}


def task_texts_from(ds: Any, task: str) -> list:
    from .bench import PAIR_KEYS

    a, b = PAIR_KEYS[task]
    return [(x, y) for x, y in zip(ds[a], ds[b], strict=True)] if b else list(ds[a])
