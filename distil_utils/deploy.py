"""A deployable student, beyond the paper's iPhone study: int8 weights and ONNX Runtime.

The paper ran DistilBERT on a phone (71% faster than BERT-base, 207 MB). The CPU analogue:
the fine-tuned student with its linear layers dynamically quantised to int8 (torch), and the
student exported to ONNX and run by onnxruntime (fp32, plus onnxruntime's own int8). Each
variant is scored on the task's dev set and timed at batch size 1 with the same interleaved
protocol as `bench.time_dataset_pass`, against the fp32 teacher.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .hub import load_split, load_tokenizer
from .intervals import difference_interval, paired_ratio
from .results_io import write_result
from .speed import (
    DEV_SPLIT,
    PAIR_KEYS,
    _bar,
    _encode,
    _select,
    accepted_inputs,
    count_parameters,
    model_size,
    task_texts,
    time_dataset_pass,
)

DEPLOY_EXTRA = "pip install -e .[deploy]"
# Text columns tried, in order, when a data set is given without its task name.
TEXT_COLUMNS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                ("question", "sentence"), ("sentence", None), ("text", None))


# ------------------------------------------------------------------------------ int8
def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every `nn.Linear` dynamically quantised to int8 (weights int8,
    activations quantised on the fly): the cheapest compression there is, no calibration data.

    Uses `torch.ao.quantization.quantize_dynamic`, which torch 2.13 still ships and runs but
    announces as deprecated in favour of torchao; its warnings are silenced here, once.
    The embeddings (most of a small model's bytes) stay fp32.
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


# ------------------------------------------------------------------------------ ONNX
def _need_onnx() -> Any:
    """onnxruntime, or an ImportError naming the install command."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(f"ONNX export and inference need onnx, onnxscript and onnxruntime "
                          f"({err.name} is missing): {DEPLOY_EXTRA}") from err
    return onnxruntime


@contextmanager
def _quiet_exporter():
    """The exporter logs a warning per missing torchvision op and several user warnings."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _example_inputs(model: torch.nn.Module, tokenizer: Any) -> dict[str, torch.Tensor]:
    """Two padded sentence pairs: batch 2 and a length > 2 keep both axes symbolic."""
    enc = tokenizer(["a short example.", "a second, somewhat longer example sentence here."],
                    ["with a pair.", "and its partner."], padding=True, return_tensors="pt")
    keys = accepted_inputs(model)
    return {k: v for k, v in enc.items() if k in keys}


def export_onnx(model: torch.nn.Module, tokenizer: Any, path: str | Path, *,
                save_tokenizer: bool = True, atol: float = 1e-4) -> Path:
    """Export a sequence classifier to ONNX with dynamic batch and sequence axes; checked.

    The inputs are the tokenizer outputs the model takes (DistilBERT: no token_type_ids), the
    output is `logits`. The export is run once by onnxruntime and compared with torch (max
    |diff| <= `atol`), so a silently wrong graph is an error here, not a bad accuracy later.
    The tokenizer is saved beside the file, so `OnnxClassifier(path)` is self-contained.
    """
    _need_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = _example_inputs(model, tokenizer)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    with _quiet_exporter():
        torch.onnx.export(model, (), str(path), kwargs=example, input_names=list(example),
                          output_names=["logits"], dynamo=True, verbose=False,
                          dynamic_shapes={k: {0: batch, 1: seq} for k in example})
    if save_tokenizer:
        tokenizer.save_pretrained(path.parent)
    _check_export(model, OnnxClassifier(path, tokenizer=tokenizer), example, atol)
    return path


def _check_export(model: torch.nn.Module, onnx: OnnxClassifier,
                  example: dict[str, torch.Tensor], atol: float) -> None:
    with torch.inference_mode():
        ref = model(**example).logits
    diff = (onnx(**example).logits - ref).abs().max().item()
    if diff > atol:
        raise RuntimeError(f"the ONNX export of {type(model).__name__} differs from torch by "
                           f"{diff:.2e} (> {atol:.0e}) on its example batch: do not deploy it")


def quantize_onnx(path: str | Path, out: str | Path, *, pre_process: bool = True,
                  per_channel: bool = True) -> Path:
    """onnxruntime's dynamic int8 quantisation of an exported model (weights of MatMul/Gemm).

    As onnxruntime recommends: `quant_pre_process` first (shape inference and graph fusion,
    so whole attention and GELU blocks are quantised as units), then one scale per output
    channel instead of one per weight matrix, which keeps the rows of small magnitude that a
    shared scale rounds away. Either step can be switched off to measure what it is worth.
    """
    _need_onnx()
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    out = Path(out)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice goes to the root logger
    try:
        with _quiet_exporter():
            source = Path(path)
            if pre_process:
                import onnx

                # one file first: the exporter keeps weights in a side file that the
                # pre-processor's temporary copies lose (models < 2 GB, as BERT-base is). The
                # symbolic shape pass cannot follow the dynamo export's shapes; onnx's own
                # shape inference and onnxruntime's fusions still run.
                single = out.with_name(out.stem + "-single.onnx")
                onnx.save_model(onnx.load(str(path)), str(single), save_as_external_data=False)
                source = out.with_name(out.stem + "-preprocessed.onnx")
                quant_pre_process(str(single), str(source), skip_symbolic_shape=True)
                single.unlink()
            quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8,
                             per_channel=per_channel)
            if pre_process:
                source.unlink(missing_ok=True)
    finally:
        root.setLevel(level)
    return out


def onnx_size_mb(path: str | Path) -> float:
    """Size of an ONNX model with its external weights (the exporter may write `NAME.data`)."""
    path = Path(path)
    files = {path, path.with_name(path.name + ".data"), path.with_suffix(".data")}
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


class _Out:
    """The `.logits` attribute that callers of a transformers model expect."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class OnnxClassifier:
    """An exported classifier run by onnxruntime, called like a transformers model:
    `m(input_ids=..., attention_mask=...).logits`, or `m.predict(texts)` with its tokenizer.

    `threads` defaults to torch's thread count, so a timing against torch is like for like.
    """

    def __init__(self, path: str | Path, tokenizer: Any = None, threads: int | None = None):
        ort = _need_onnx()
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no ONNX model at {self.path}: run export_onnx first")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = tokenizer

    def __call__(self, **inputs: Any) -> _Out:
        feed = {k: np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v, dtype=np.int64)
                for k, v in inputs.items() if k in self.input_names}
        missing = set(self.input_names) - set(feed)
        if missing:
            raise ValueError(f"ONNX model {self.path.name} needs inputs {sorted(missing)}")
        return _Out(torch.from_numpy(self.session.run(["logits"], feed)[0]))

    forward = __call__

    def predict(self, texts: list, max_length: int = 512) -> np.ndarray:
        """Logits for strings or (a, b) pairs, tokenised with the tokenizer saved beside."""
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(str(self.path.parent))
        return self(**_encode(self.tokenizer, texts, max_length)).logits.numpy()


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
    for i in _bar(range(0, len(first), batch_size), "predicting", progress):
        texts = (list(zip(first[i:i + batch_size], second[i:i + batch_size], strict=True))
                 if second is not None else first[i:i + batch_size])
        enc = _encode(tokenizer, texts, max_length)
        preds.append(_logits(predict_fn(**_select(enc, keys))).argmax(-1))
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
    return 100.0 * float(np.mean(preds == labels))


# ------------------------------------------------------------------------------ report
def _load_classifier(path: str, role: str) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    from .speed import _has_classifier_head

    if not _has_classifier_head(str(path)):
        raise ValueError(f"the {role} at {path} is not a fine-tuned sequence classifier (no "
                         "*ForSequenceClassification architecture in its config): fine-tune it "
                         "first (notebook 04, or finetune.finetune_glue(..., output_dir=...))")
    return AutoModelForSequenceClassification.from_pretrained(str(path)).eval()


def _check_task(task: Any) -> None:
    if not isinstance(task, str):
        raise TypeError(f"task must be a task name such as 'sst2', got {type(task).__name__}. "
                        "The signature is deploy_report(student_dir, teacher_dir, cfg, task, "
                        "tokenizer=...)")
    if task not in PAIR_KEYS or task == "stsb":
        raise ValueError(f"deploy_report scores accuracy: choose a classification task among "
                         f"{sorted(set(PAIR_KEYS) - {'stsb'})}, not {task!r}")


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
    models: dict[str, Any] = {"teacher fp32": teacher, "student fp32": student,
                              "student int8 (torch)": quantize_int8(student)}
    sizes = {k: model_size(m) for k, m in models.items()}
    errors: dict[str, str] = {}
    try:
        path = export_onnx(student, tokenizer, work / "student.onnx")
    except ImportError as err:
        errors["onnx"] = str(err)
        return models, sizes, errors
    models["student ONNX fp32"] = OnnxClassifier(path, tokenizer)
    sizes["student ONNX fp32"] = {"disk_mb": onnx_size_mb(path), "format": "onnx"}
    try:  # the teacher under ONNX Runtime too: the speed-up with less Python per call
        t_path = export_onnx(teacher, tokenizer, work / "teacher.onnx", save_tokenizer=False)
        models["teacher ONNX fp32"] = OnnxClassifier(t_path, tokenizer)
        sizes["teacher ONNX fp32"] = {"disk_mb": onnx_size_mb(t_path), "format": "onnx"}
    except Exception as err:  # an optional extra row: record why it is missing, keep the rest
        errors["onnx_teacher"] = f"{type(err).__name__}: {err}"
    try:
        q = quantize_onnx(path, work / "student-int8.onnx")
        models["student ONNX int8"] = OnnxClassifier(q, tokenizer)
        sizes["student ONNX int8"] = {"disk_mb": onnx_size_mb(q), "format": "onnx int8"}
    except Exception as err:  # an optional extra row: record why it is missing, keep the rest
        errors["onnx_int8"] = f"{type(err).__name__}: {err}"
    return models, sizes, errors


def deploy_report(fp32_student_cls_dir: str | Path, teacher_cls_dir: str | Path, cfg: Config,
                  task: str = "sst2", *, tokenizer: Any = None,
                  out_dir: str | Path | None = None, verbose: bool = True) -> dict[str, Any]:
    """Accuracy and batch-1 speed of fp32 / int8 / ONNX students against the fp32 teacher.

    Both directories hold classifiers fine-tuned on `task` (notebook 06 saves them under
    `finetuned/`). Accuracy is on the task's dev split (capped by `cfg.ft_max_eval`), with
    each variant's agreement with the fp32 student; timing uses `cfg.bench_max_examples`
    dev examples, `cfg.bench_repeats` interleaved repeats, tokenisation excluded; every
    ratio is against the fp32 teacher. Written to `deploy.json` in `out_dir` (default
    `cfg.out`); the ONNX files go to its `deploy/` folder.
    """
    _check_task(task)
    student = _load_classifier(str(fp32_student_cls_dir), "student")
    teacher = _load_classifier(str(teacher_cls_dir), "teacher")
    _check_pair(student, teacher)
    tok = tokenizer if tokenizer is not None else load_tokenizer(str(fp32_student_cls_dir))
    out = Path(out_dir) if out_dir is not None else cfg.out
    models, sizes, errors = _variants(student, teacher, tok, out / "deploy")
    dev = load_split(f"glue/{task}", DEV_SPLIT.get(task, "validation"), cfg.data_dir)
    if cfg.ft_max_eval is not None:
        dev = dev.select(range(min(len(dev), cfg.ft_max_eval)))
    preds = {k: predictions(m, tok, dev) for k, m in models.items()}
    labels = np.asarray(dev["label"])
    texts = task_texts(task, cfg)
    timing = time_dataset_pass(models, tok, texts, batch_size=1, include_tokenization=False,
                               repeats=cfg.bench_repeats, warmup=min(10, len(texts)))
    rows = {k: _row(k, preds, labels, timing, sizes) for k in models}
    for k, row in rows.items():  # points lost against the fp32 student, paired on dev examples
        row["accuracy_drop"] = rows["student fp32"]["accuracy"] - row["accuracy"]
        row["accuracy_drop_interval"] = list(difference_interval(
            _accuracy, preds["student fp32"], preds[k], labels, seed=cfg.seed))
    onnx_speedup = None
    if {"teacher ONNX fp32", "student ONNX fp32"} <= set(models):
        t = timing["models"]
        onnx_speedup = paired_ratio(t["teacher ONNX fp32"]["times"],
                                    t["student ONNX fp32"]["times"])
    report = {"task": task, "split": DEV_SPLIT.get(task, "validation"),
              "examples_accuracy": len(labels), "examples_timing": len(texts),
              "reference": "teacher fp32", "threads": timing["threads"], "models": rows,
              "onnx_error": errors.get("onnx"), "onnx_int8_error": errors.get("onnx_int8"),
              "onnx_teacher_error": errors.get("onnx_teacher"),
              "onnx_fp32_speedup": onnx_speedup,
              "timing": timing, "student": str(fp32_student_cls_dir),
              "teacher": str(teacher_cls_dir)}
    report["path"] = str(write_result(out / "deploy.json", report, cfg,
                                      student=str(fp32_student_cls_dir),
                                      teacher=str(teacher_cls_dir)))
    if verbose:
        print(format_deploy(report))
    return report


def _accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(preds == labels))


def _row(name: str, preds: Mapping[str, np.ndarray], labels: np.ndarray, timing: dict,
         sizes: Mapping[str, dict]) -> dict[str, Any]:
    t, ref = timing["models"][name], sizes["teacher fp32"]["disk_mb"]
    return {"accuracy": 100.0 * float(np.mean(preds[name] == labels)),
            "agreement_with_student_fp32": 100.0 * float(np.mean(preds[name] ==
                                                                 preds["student fp32"])),
            "seconds": t["seconds_median"], "seconds_min": t["seconds_min"],
            "seconds_max": t["seconds_max"], "time_per_example_ms": t["time_per_example_ms"],
            "time_ratio_vs_teacher":
            t["time_ratio_vs_first"], "speedup_vs_teacher": t["speedup_vs_first"],
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
