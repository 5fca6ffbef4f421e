"""The fused MLM head: the triple loss in value and gradients, chunked; under fp16 it keeps the
gradient entries fp16 would flush to zero; it is the CPU path only."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import confident_pair, id_batch, smoke_config

from distil_utils.config import get_config
from distil_utils.distill import make_distill_loss
from distil_utils.fused_head import can_fuse, fused_triple_loss
from distil_utils.losses import triple_loss

FUSED_VOCAB = 300


@pytest.fixture(scope="module")
def tiny_pair():
    """A tiny random BERT teacher (confident, so L_ce is far from 0) and a random student."""
    teacher, student = confident_pair(layers=2, hidden=32, scale=20.0, vocab=FUSED_VOCAB)
    return teacher, student.eval()


@pytest.fixture(scope="module")
def pair():
    """A 4-layer x 64 teacher (confident: L_ce far from 0) and a random 2-layer student."""
    return confident_pair(layers=4, hidden=64, scale=30.0)


@pytest.fixture(scope="module")
def bench_pair():
    """A teacher with confident predictions and a random student (so that the KL term is far
    from 0): the distillation benchmark's pair."""
    return confident_pair(layers=4, hidden=32, scale=40.0)


def _masked_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, FUSED_VOCAB, (3, 11), generator=g)
    am = torch.ones_like(ids)
    am[1, 7:] = 0
    am[2, 4:] = 0
    labels = torch.where((torch.rand(ids.shape, generator=g) < 0.3) & am.bool(), ids, -100)
    labels[0, 2] = ids[0, 2]  # at least one masked token
    masked = torch.where(labels != -100, torch.full_like(ids, 3), ids)
    return masked, am, labels


def _student_grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("ce_on_masked_only", [False, True])
@pytest.mark.parametrize("alphas", [(5.0, 2.0, 1.0), (0.0, 2.0, 1.0), (5.0, 0.0, 1.0),
                                    (5.0, 2.0, 0.0)])
def test_fused_head_is_triple_loss_in_value_and_gradients(tiny_pair, ce_on_masked_only,
                                                          alphas):
    import copy

    teacher, student = tiny_pair
    masked, am, labels = _masked_batch()
    kw = dict(temperature=2.0, alpha_ce=alphas[0], alpha_mlm=alphas[1], alpha_cos=alphas[2],
              ce_on_masked_only=ce_on_masked_only)
    plain_model, fused_model = copy.deepcopy(student), copy.deepcopy(student)
    with torch.no_grad():
        t = teacher(input_ids=masked, attention_mask=am, output_hidden_states=True)
    s = plain_model(input_ids=masked, attention_mask=am, output_hidden_states=True)
    plain = triple_loss(s.logits, t.logits, s.hidden_states[-1], t.hidden_states[-1], labels,
                        am, **kw)
    plain["loss"].backward()
    fused = fused_triple_loss(teacher, fused_model, masked, am, labels, chunk_rows=5, **kw)
    fused["loss"].backward()
    terms = {k: float(v.detach()) for k, v in plain.items()}
    assert terms["ce"] > 0.01 and terms["mlm"] > 1 and terms["cos"] > 0  # all exercised
    for k in ("loss", "ce", "mlm", "cos"):
        assert torch.allclose(fused[k], plain[k], rtol=1e-5, atol=1e-6), (k, fused[k], plain[k])
    g_plain, g_fused = _student_grads(plain_model), _student_grads(fused_model)
    assert g_plain.keys() == g_fused.keys() and g_plain
    for n, g in g_plain.items():
        err = (g - g_fused[n]).norm() / g.norm().clamp(min=1e-6)
        # k_lin.bias has an exactly-zero true gradient: both are rounding noise
        assert err < 1e-4 or g.abs().max() < 1e-9, (n, float(err))
    assert all(p.grad is None for p in teacher.parameters())


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.filterwarnings("ignore:In CPU autocast")
def test_fused_head_under_fp16_keeps_the_float32_gradient(pair, weights, tokenizer):
    teacher, student = pair
    batch = id_batch([60, 44, 52])
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


@pytest.mark.usefixtures("one_thread")
def test_fused_head_gives_the_plain_gradients(bench_pair, weights, tokenizer):
    teacher, student = bench_pair
    batch = id_batch([20, 9, 16])
    grads = {}
    for name, cfg in {"plain": smoke_config(distill_fused_head=False),
                      "fused": smoke_config(distill_chunk_rows=7)}.items():
        model = copy.deepcopy(student).train()
        fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
        torch.manual_seed(0)
        fn(model, batch, torch.Generator().manual_seed(1))["loss"].backward()
        grads[name] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads["plain"].keys() == grads["fused"].keys()
    for n, g in grads["plain"].items():
        err = (g - grads["fused"][n]).norm() / g.norm().clamp(min=1e-6)
        # k_lin.bias has an exactly-zero true gradient: both are rounding noise (~1e-12)
        assert err < 1e-4 or g.abs().max() < 1e-9, (n, float(err))
    assert all(teacher_p.grad is None for teacher_p in teacher.parameters())
