"""The recipe: grad_accum and max_steps derived from the global batch and the corpus, and the
`--plan` that prints them without training."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from helpers import ROOT, smoke_config

from distil_utils import data
from distil_utils.config import get_config
from distil_utils.recipe import grad_accum, plan, total_steps
from distil_utils.validation import RecipeError


def test_recipe_derives_accumulation_and_steps(tmp_path, pipeline_corpus, tokenizer):
    paper = get_config("paper")
    assert (paper.global_batch, paper.epochs, paper.lr, paper.warmup_frac) == (4000, 3.0,
                                                                               5e-4, 0.05)
    assert paper.max_steps is None
    from transformers import BertConfig, BertForMaskedLM

    from distil_utils.student import student_from_teacher

    teacher = BertForMaskedLM(BertConfig(num_hidden_layers=12, hidden_size=32,
                                         num_attention_heads=2, intermediate_size=64,
                                         vocab_size=100))
    student = student_from_teacher(teacher, paper.student_layers)  # the 6-of-12 layer map
    assert student.config.to_dict()["distil_teacher_layers"] == [0, 2, 4, 7, 9, 11]
    assert [grad_accum(paper, w) for w in (1, 2, 8)] == [250, 125, 31]
    for w in (1, 2, 8):  # the global batch stays ~4,000 whatever the hardware
        assert abs(grad_accum(paper, w) * 16 * w - 4000) / 4000 < 0.01
    with pytest.raises(RecipeError, match="would train nothing"):
        get_config("paper", explicit_none=("epochs",), epochs=None)
    with pytest.raises(RecipeError, match="would train nothing"):
        get_config("smoke", max_steps=0)
    # epochs -> steps once the corpus is known: prepare_corpus fills them in
    from distil_utils.distill import prepare_corpus

    cfg = smoke_config(tmp_path, pipeline_corpus, preset="sequences",
                       explicit_none=("max_steps",), max_steps=None, epochs=2.0, global_batch=8)
    assert plan(cfg)["total_steps"] is None
    train, _ = prepare_corpus(cfg, tokenizer)
    per_epoch = data.batches_per_epoch(len(train), 4)
    assert cfg.grad_accum == 2 and cfg.max_steps == math.ceil(2 * per_epoch / 2)
    assert cfg.max_steps == total_steps(cfg, len(train), 1)
    fresh = smoke_config(tmp_path, pipeline_corpus, preset="sequences",
                         explicit_none=("max_steps",), max_steps=None, epochs=2.0, global_batch=8)
    assert plan(fresh)["total_steps"] == cfg.max_steps  # the cached corpus has a size now


@pytest.mark.slow  # a fresh interpreter importing the package (~10 s)
def test_plan_command_prints_one_json_object_without_training(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "distil_utils.distill", "--profile", "paper",
                           "--plan", "--world-size", "8", "-p", "results_dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert {"world_size", "per_device_batch", "grad_accum", "global_batch", "epochs",
            "total_steps", "precision", "device"} <= set(out)
    assert (out["world_size"], out["per_device_batch"], out["grad_accum"]) == (8, 16, 31)
    assert out["global_batch"] == 3968 and out["epochs"] == 3.0
    assert out["total_steps"] is None  # the corpus has not been tokenised here
    assert not any(tmp_path.iterdir()), "--plan wrote something"
