"""Precision of the GPU code path, checked on the CPU.

A CUDA run uses, by default, the plain MLM heads (the fused head is CPU-only) under bf16
autocast (fp16 with loss scaling on GPUs without bf16): that very branch of
`make_distill_loss` is compared here with `losses.triple_loss` in float32 on the same
masked batch, losses and gradients. The fused head, where it runs under fp16, must keep
the gradient entries that fp16 would flush to zero.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from conftest import make_tiny_bert

from distil_utils.config import get_config
from distil_utils.data import collate
from distil_utils.distill import make_distill_loss
from distil_utils.fused_head import can_fuse
from distil_utils.losses import triple_loss
from distil_utils.masking import mask_tokens, masking_weights
from distil_utils.recipe import precision
from distil_utils.student import random_student


@pytest.fixture(scope="module")
def pair():
    teacher = make_tiny_bert(layers=4, hidden=64)
    with torch.no_grad():
        teacher.cls.predictions.decoder.weight.mul_(30.0)  # confident: L_ce far from 0
    return teacher, random_student(teacher, 2, seed=1)


@pytest.fixture(scope="module")
def weights(tokenizer):
    return masking_weights(None, tokenizer.all_special_ids, len(tokenizer))


def _batch(lengths):
    rng = random.Random(0)
    return collate([[101] + [rng.randrange(1000, 30000) for _ in range(n - 2)] + [102]
                    for n in lengths], pad_id=0)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _float32_triple_loss(teacher, student, batch, weights, tokenizer, cfg):
    """`losses.triple_loss` on full logits in float32, on the masking the step draws."""
    masked, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], weights,
                                 tokenizer.mask_token_id, len(tokenizer), cfg.mlm_prob,
                                 torch.Generator().manual_seed(1))
    am = batch["attention_mask"]
    with torch.no_grad():
        t = teacher(input_ids=masked, attention_mask=am, output_hidden_states=True)
    s = student(input_ids=masked, attention_mask=am, output_hidden_states=True)
    return triple_loss(s.logits, t.logits, s.hidden_states[-1], t.hidden_states[-1], labels, am,
                       temperature=cfg.temperature, alpha_ce=cfg.alpha_ce,
                       alpha_mlm=cfg.alpha_mlm, alpha_cos=cfg.alpha_cos)


def test_the_gpu_default_path_under_bf16_matches_float32_triple_loss(pair, weights,
                                                                     tokenizer):
    teacher, student = pair
    batch = _batch([40, 23, 31, 12])
    ref_cfg = get_config("smoke")
    ref_model = copy.deepcopy(student).train()
    torch.manual_seed(0)
    ref = _float32_triple_loss(teacher, ref_model, batch, weights, tokenizer, ref_cfg)
    ref["loss"].backward()
    ref_g = _grads(ref_model)
    # what a CUDA run does by default: plain heads, bf16 autocast
    cfg = get_config("smoke", distill_fused_head=False, distill_autocast="bf16")
    assert precision(get_config("smoke"), "cpu") is None  # CPUs stay float32 by default
    model = copy.deepcopy(student).train()
    fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    torch.manual_seed(0)
    out = fn(model, batch, torch.Generator().manual_seed(1))
    out["loss"].backward()
    for k in ("loss", "ce", "mlm", "cos"):
        rel = abs(float(out[k].detach()) - float(ref[k].detach())) / abs(float(ref[k].detach()))
        assert rel < 2e-2, (k, float(out[k]), float(ref[k]))
    assert float(ref["ce"]) > 0.05 and float(ref["mlm"]) > 1
    g = _grads(model)
    assert g.keys() == ref_g.keys()
    for n, r in ref_g.items():
        if r.norm() < 1e-6:
            continue
        cos = torch.nn.functional.cosine_similarity(g[n].flatten().float(), r.flatten(), dim=0)
        assert cos > 0.98, (n, float(cos))


@pytest.mark.filterwarnings("ignore:In CPU autocast")
def test_fused_head_under_fp16_keeps_the_float32_gradient(pair, weights, tokenizer):
    teacher, student = pair
    batch = _batch([60, 44, 52])
    grads = {}
    for name, amp in (("fp32", None), ("fp16", "fp16")):
        # small loss weights stand in for a paper-sized step (16 x 512 rows): each gradient
        # entry is alpha / rows x a probability, ~1e-8, below fp16's smallest subnormal
        cfg = get_config("smoke", distill_autocast=amp, distill_chunk_rows=32, alpha_ce=0.01,
                         alpha_mlm=0.01, alpha_cos=0.0)
        model = copy.deepcopy(student).train()
        fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
        torch.manual_seed(0)
        fn(model, batch, torch.Generator().manual_seed(1))["loss"].backward()
        grads[name] = _grads(model)
    # the decoder weight is tied to the word embeddings (one parameter)
    for n in ("vocab_projector.bias", "distilbert.embeddings.word_embeddings.weight",
              "vocab_transform.weight"):
        ref, got = grads["fp32"][n], grads["fp16"][n]
        assert (got != 0).sum() >= 0.99 * (ref != 0).sum(), f"{n}: entries flushed to zero"
        err = (got - ref).norm() / ref.norm()
        assert err < 3e-2, (n, float(err))


def test_the_fused_head_is_a_cpu_path(pair):
    teacher, student = pair
    assert can_fuse(teacher, student)
    on_meta = copy.deepcopy(student).to("meta")  # any non-CPU device takes the plain heads
    assert not can_fuse(teacher, on_meta)
