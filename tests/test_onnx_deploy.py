"""ONNX export: the exported graph computes the torch model's logits; without onnxruntime the
error names the fix."""

from __future__ import annotations

import sys

import pytest
import torch
from helpers import PAIRS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # exporting a model (~13 s)
def test_onnx_export_matches_torch(classifier_pair, tokenizer, tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install -e .[deploy]")
    from distil_utils.onnx_deploy import OnnxClassifier, export_onnx

    _, models = classifier_pair
    teacher = models["teacher"]  # BERT: token_type_ids are an input too
    onnx = OnnxClassifier(export_onnx(teacher, tokenizer, tmp_path / "t.onnx"))
    assert set(onnx.input_names) == {"input_ids", "attention_mask", "token_type_ids"}
    for batch in (PAIRS[:1], PAIRS):  # batch 1, and 3 padded pairs of another length
        enc = tokenizer([a for a, _ in batch], [b for _, b in batch], return_tensors="pt",
                        padding=True)
        with torch.inference_mode():
            ref = teacher(**enc).logits
        assert torch.allclose(onnx(**enc).logits, ref, atol=1e-4)
    assert onnx.predict(PAIRS).shape == (3, 2)  # with the tokenizer saved beside the file


def test_onnx_without_onnxruntime_names_the_fix(classifier_pair, tokenizer, tmp_path, monkeypatch):
    from distil_utils.onnx_deploy import export_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[deploy\]"):
        export_onnx(classifier_pair[1]["student"], tokenizer, tmp_path / "s.onnx")
