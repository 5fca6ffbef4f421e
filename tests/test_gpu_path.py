"""The GPU path, checked on the CPU by the nearest stand-ins (no CUDA needed).

* DDP with `device_ids` moves every tensor of its inputs to its GPU before the wrapped module
  runs; a stand-in applies DDP's own input-moving function (`torch.distributed.utils._to_kwargs`)
  towards the `meta` device, with the models on `meta` too. A micro-step that still did host
  work inside the forward (masking with CPU weights and a CPU generator) mixes devices there.
* On `meta` every data-dependent host synchronisation (`.item()`, `bool(t)`, `nonzero`, a
  boolean index) raises: a micro-step that runs there synchronises nothing with the device.
* The precision follows a stand-in compute capability (sm75 -> fp16, sm80+ -> bf16), and
  TF32 is set in one place, in a way that leaves torch 2.13's flag readers working.
* fp16 with a long accumulation: gradients of the triple loss at paper-sized per-row
  magnitudes, with the loss scale of 2^16, against float32.
"""

from __future__ import annotations

import copy
import random
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import make_tiny_bert
from torch.distributed.utils import _to_kwargs

from distil_utils import devices, finetune, recipe
from distil_utils.config import get_config
from distil_utils.data import collate
from distil_utils.distill import make_distill_loss, make_mlm_loss
from distil_utils.masking import mask_tokens, masking_weights
from distil_utils.student import student_from_teacher
from distil_utils.training import TrainStep, make_accelerator, make_optimizer


@pytest.fixture()
def weights(tokenizer):
    return masking_weights(None, tokenizer.all_special_ids, len(tokenizer))


def _batch(lengths, seed=0):
    rng = random.Random(seed)
    return collate([[101] + [rng.randrange(1000, 30000) for _ in range(n - 2)] + [102]
                    for n in lengths], pad_id=0)


class MovesInputsLikeDDP(torch.nn.Module):
    """What `DistributedDataParallel(device_ids=[i])` does before its module's forward: its
    own `_to_kwargs` moves every tensor of the inputs to the device (here `meta`)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.module, self.device = module, device

    def forward(self, *inputs, **kwargs):
        inputs, kwargs = _to_kwargs(inputs, kwargs, self.device, False)
        return self.module(*inputs[0], **kwargs[0])


def _step_on_meta(loss_kind: str, tokenizer, weights, grad_accum: int = 2) -> TrainStep:
    teacher = make_tiny_bert(layers=2)
    cfg = get_config("smoke", grad_accum=grad_accum)
    if loss_kind == "distill":
        model = student_from_teacher(teacher)
        fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    else:  # the teacher's masked-LM adaptation
        model = teacher
        fn = make_mlm_loss(cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    teacher.to("meta")
    model.to("meta")
    opt, sched = make_optimizer([{"params": list(model.parameters())}], cfg, 1e-4, 10)
    step = TrainStep(model.train(), fn, make_accelerator(cfg, torch.device("cpu")), opt, sched,
                     cfg)
    step.wrapped = MovesInputsLikeDDP(step.wrapped, torch.device("meta"))
    return step


@pytest.mark.parametrize("loss_kind", ["distill", "adapt"])
def test_a_micro_step_runs_where_ddp_moved_its_inputs_and_never_syncs(loss_kind, tokenizer,
                                                                      weights):
    step = _step_on_meta(loss_kind, tokenizer, weights)
    # full-length sequences, as the paper's 512-token batches: no padding (masking.encoder_mask)
    batch = _batch([12, 12, 12])
    for last in (False, True):
        out = step.micro_step(batch, last=last)
        assert out["loss"].device.type == "meta" and out["loss"].shape == ()
    grads = [p.grad for p in step.model.parameters() if p.grad is not None]
    assert grads and all(g.device.type == "meta" for g in grads)


def test_the_masks_are_still_drawn_on_the_host_from_the_step_seed(tokenizer, weights):
    """Moving the masking out of the forward keeps the per-step masks (exact resume)."""
    cfg = get_config("smoke")
    fn = make_distill_loss(make_tiny_bert(layers=2), cfg, weights, tokenizer.mask_token_id,
                           len(tokenizer))
    batch = _batch([20, 9, 16])
    prepared = fn.prepare(batch, torch.Generator().manual_seed(7))
    masked, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], weights,
                                 tokenizer.mask_token_id, len(tokenizer), cfg.mlm_prob,
                                 torch.Generator().manual_seed(7))
    assert torch.equal(prepared["input_ids"], masked) and torch.equal(prepared["labels"], labels)
    assert all(v.device.type == "cpu" for v in prepared.values() if torch.is_tensor(v))
    assert torch.equal(prepared["mlm_index"], (labels.reshape(-1) != -100).nonzero()[:, 0])
    assert torch.equal(prepared["ce_index"],
                       batch["attention_mask"].reshape(-1).nonzero()[:, 0])
    assert prepared["padded"] is True and _batch([5, 5])["attention_mask"].all()
    assert fn.prepare(_batch([5, 5]), torch.Generator().manual_seed(0))["padded"] is False


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step()`")
def test_gradient_accumulation_averages_the_micro_batches(tokenizer, weights):
    """The mean over micro-batches is taken after accumulation (training.TrainStep): the
    gradient is the mean of each micro-batch's own gradient."""
    teacher = make_tiny_bert(layers=2)
    student = student_from_teacher(teacher)
    cfg = get_config("smoke", grad_accum=3, max_grad_norm=1e9, distill_fused_head=False)
    fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    batches = [_batch([10, 7], seed=i) for i in range(3)]
    model = copy.deepcopy(student).train()
    opt, sched = make_optimizer([{"params": list(model.parameters())}], cfg, 0.0, 10)
    step = TrainStep(model, fn, make_accelerator(cfg, torch.device("cpu")), opt, sched, cfg)
    step.aopt.step = lambda *a, **k: None  # keep the gradient: compare it, do not apply it
    step.aopt.zero_grad = lambda *a, **k: None
    losses, tokens, _ = step(0, iter(batches))
    assert tokens == 3 * 17
    # the same three micro-batches one by one, with the same step seeds
    from distil_utils.training import step_seed

    want, each = None, []
    ref = copy.deepcopy(student).train()
    torch.manual_seed(step_seed(cfg.seed, 0, 0))
    gen = torch.Generator().manual_seed(step_seed(cfg.seed + 1, 0, 0))
    for b in batches:
        ref.zero_grad()
        out = fn(ref, b, gen)
        out["loss"].backward()
        each.append(float(out["loss"].detach()))
        g = {n: p.grad.clone() for n, p in ref.named_parameters() if p.grad is not None}
        want = g if want is None else {n: want[n] + g[n] for n in g}
    assert losses["loss"] == pytest.approx(sum(each) / 3, rel=1e-5)
    for n, p in model.named_parameters():
        if n in want:
            torch.testing.assert_close(p.grad, want[n] / 3, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize(("cap", "want"), [((7, 0), "fp16"), ((7, 5), "fp16"),
                                           ((8, 0), "bf16"), ((8, 6), "bf16"),
                                           ((9, 0), "bf16")])
def test_precision_follows_what_the_gpu_really_has(monkeypatch, cap, want):
    # a stand-in GPU: torch 2.13's is_bf16_supported() says yes on sm75 (emulated bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
    monkeypatch.setattr(torch.version, "hip", None)
    assert devices.gpu_precision() == want
    assert recipe.precision(get_config("paper"), "cuda") == want
    assert recipe.precision(get_config("paper"), torch.device("cuda", 0)) == want
    assert recipe.precision(get_config("paper", gpu_mixed_precision=False), "cuda") is None
    tf32 = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(finetune, "set_tf32", lambda on, dev: tf32.append((on, dev.type)))
    kw = finetune.device_kwargs(get_config("smoke"))
    assert (kw["bf16"], kw["fp16"]) == (want == "bf16", want == "fp16")
    assert "tf32" not in kw and tf32 == [(True, "cuda")]  # devices.set_tf32, not Trainer's


TF32 = textwrap.dedent("""
    import torch
    from transformers.utils.import_utils import enable_tf32
    from distil_utils import devices

    def read():  # what cuBLAS, cuDNN and inductor read; each raises after a mix of the APIs
        return (torch.backends.cuda.matmul.fp32_precision,
                torch.backends.cudnn.conv.fp32_precision, torch.get_float32_matmul_precision(),
                torch.backends.mkldnn.matmul.fp32_precision)

    torch.cuda.get_device_capability = lambda device=None: (7, 5)  # a T4: no TF32
    devices.set_tf32(True, torch.device("cuda", 0))
    assert read()[2] == "highest"
    torch.cuda.get_device_capability = lambda device=None: (8, 0)  # a stand-in A100
    devices.set_tf32(True, torch.device("cuda", 0))
    assert read() == ("tf32", "tf32", "high", "ieee"), read()  # CPU matmuls stay float32
    enable_tf32.__wrapped__(False)  # Trainer(tf32=False) later in the same kernel
    assert read()[2] == "high"
    print("ok")
""")


def test_tf32_leaves_every_reader_of_the_flags_working():
    # a fresh interpreter: the flags are process-wide
    proc = subprocess.run([sys.executable, "-c", TF32], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.filterwarnings("ignore:In CPU autocast")
def test_fp16_gradients_at_grad_accum_250_keep_what_float32_keeps(tokenizer, weights):
    """The measurement behind where `TrainStep` divides by grad_accum.

    A paper micro-batch has 16 x 512 rows; each row's gradient of the vocabulary logits is
    alpha / rows x a probability. The loss weights are scaled by rows / 8192 so that this
    tiny batch's per-row gradients have the paper's size, and the MLM heads are sharpened
    so that, as in a trained model, most probabilities are tiny. Under fp16 autocast with
    the scaler's initial scale 2^16, dividing the *loss* by 250 (the accumulation of one
    GPU) before the backward moves every fp16 gradient 250x deeper into the subnormal range;
    dividing the accumulated float32 gradients instead keeps them where one micro-batch puts
    them. Measured here (tiny BERT, 256 rows; also printed): vocabulary-bias entries more than
    10% off float32: 3.3% dividing the loss, 0.4% dividing the gradients; word embeddings
    7.3% and 1.4%. AdamW normalises each entry, so an entry's error is its update's error.
    """
    teacher = make_tiny_bert(layers=2, hidden=64)
    student = student_from_teacher(teacher)
    with torch.no_grad():  # logits spread like a trained model's (std ~ 8, not ~ 0.2)
        teacher.cls.predictions.transform.LayerNorm.weight.mul_(60.0)
        student.vocab_layer_norm.weight.mul_(48.0)
        student.vocab_layer_norm.bias.add_(0.1)
    batch = _batch([64] * 4)
    k = 4 * 64 / (16 * 512)
    accum, scale = 250, 2.0**16

    def grads(amp: str | None, divide: str) -> dict[str, torch.Tensor]:
        cfg = get_config("smoke", distill_autocast=amp, distill_fused_head=False,
                         alpha_ce=5.0 * k, alpha_mlm=2.0 * k, alpha_cos=1.0 * k)
        model = copy.deepcopy(student).train()
        fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
        torch.manual_seed(0)
        loss = fn(model, batch, torch.Generator().manual_seed(1))["loss"]
        if divide == "loss":  # scaler.scale(loss / accum).backward(), then unscale
            (loss / accum * scale).backward()
            return {n: p.grad / scale for n, p in model.named_parameters()}
        (loss * scale).backward()  # ours: scale(loss).backward(), grads / accum, unscale
        return {n: p.grad / accum / scale for n, p in model.named_parameters()}

    ref = grads(None, "grads")
    off = {}
    for divide in ("loss", "grads"):
        got = grads("fp16", divide)
        for n in ("vocab_projector.bias", "distilbert.embeddings.word_embeddings.weight"):
            r, g = ref[n], got[n]
            nz = r != 0
            flushed = float(((g == 0) & nz).sum() / nz.sum())
            off[divide, n] = float((((g - r).abs() / r.abs())[nz] > 0.1).float().mean())
            print(f"\n[fp16, divide the {divide}] {n}: {100 * off[divide, n]:.2f}% of entries "
                  f"more than 10% off float32, {100 * flushed:.3f}% flushed to zero")
            if divide == "grads":
                assert flushed < 1e-4, (n, flushed)
                assert off[divide, n] < 0.03, (n, off[divide, n])
                assert float((g - r).norm() / r.norm()) < 1e-2
    for n in ("vocab_projector.bias", "distilbert.embeddings.word_embeddings.weight"):
        assert off["grads", n] < off["loss", n], n
