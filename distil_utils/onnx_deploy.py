"""The student exported to ONNX and run by onnxruntime, fp32 and onnxruntime's own int8.

`deploy.deploy_report` scores and times these beside the torch fp32 and int8 students.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .hub import load_tokenizer
from .model_inputs import accepted_inputs, encode_batch

DEPLOY_EXTRA = "pip install -e .[deploy]"


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
        return self(**encode_batch(self.tokenizer, texts, max_length)).logits.numpy()
