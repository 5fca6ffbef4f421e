"""The training step and loop: a micro-step runs where DDP moved its inputs and never syncs
(checked on `meta`), gradient accumulation averages micro-batches (and why it divides the
float32 gradients, not the fp16 loss), non-finite losses stop the run, mixed precision trains,
host memory stays flat over many steps."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import (
    confident_pair,
    id_batch,
    make_tiny_bert,
    prepared_run,
    random_sequences,
    smoke_config,
)
from torch.distributed.utils import _to_kwargs

from benchmarks.bench_distill import rss_mb
from distil_utils.config import get_config
from distil_utils.distill import make_distill_loss, make_mlm_loss
from distil_utils.masking import masking_weights
from distil_utils.student import random_student, student_from_teacher
from distil_utils.training import TrainStep, make_accelerator, make_optimizer, train_loop


@pytest.fixture(scope="module")
def pair():
    """A teacher with confident predictions and a random student (so that the KL term is far
    from 0)."""
    return confident_pair(layers=4, hidden=32, scale=40.0)


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
    batch = id_batch([12, 12, 12])
    for last in (False, True):
        out = step.micro_step(batch, last=last)
        assert out["loss"].device.type == "meta" and out["loss"].shape == ()
    grads = [p.grad for p in step.model.parameters() if p.grad is not None]
    assert grads and all(g.device.type == "meta" for g in grads)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step()`")
def test_gradient_accumulation_averages_the_micro_batches(tokenizer, weights):
    """The mean over micro-batches is taken after accumulation (training.TrainStep): the
    gradient is the mean of each micro-batch's own gradient."""
    teacher = make_tiny_bert(layers=2)
    student = student_from_teacher(teacher)
    cfg = get_config("smoke", grad_accum=3, max_grad_norm=1e9, distill_fused_head=False)
    fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    batches = [id_batch([10, 7], seed=i) for i in range(3)]
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


@pytest.mark.slow  # ~5 s
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
    batch = id_batch([64] * 4)
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


def test_non_finite_loss_stops_the_run_before_anything_is_saved(tmp_path, corpus):
    from distil_utils.distill import run_distillation
    from distil_utils.training import NonFiniteLossError

    cfg = smoke_config(tmp_path, corpus, preset="small", adapt_steps=0)
    tok, train, _, teacher, _, _ = prepared_run(cfg)
    with torch.no_grad():
        teacher.bert.encoder.layer[0].output.dense.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"distil student: .*(ce|cos)=nan.* at step 1"):
        run_distillation(cfg, teacher, tok, train)
    assert not (cfg.out / "student").exists()
    assert not (cfg.out / "checkpoints" / "student.pt").exists()



def _seqs(n=300, seed=0, vocab=30000):
    return random_sequences(n, seed, vocab)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_in_the_loop(tmp_path, pair, weights, tokenizer, amp):
    teacher, _ = pair
    cfg = smoke_config(batch_size=4, distill_autocast=amp, checkpoint_every=100, log_every=1)
    fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    hist = train_loop(student_from_teacher(teacher), fn, _seqs(40), cfg=cfg, max_steps=3,
                      lr=1e-3, ckpt_path=tmp_path / "amp.pt", fingerprint={}, pad_id=0,
                      fp16_scaling=amp == "fp16")
    assert len(hist) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)


def _live_rss_mb() -> float:
    """RSS after a garbage collection and `malloc_trim`: memory the process still holds.

    Without the trim, glibc keeps freed blocks of the varying batch shapes and RSS swings by
    tens of MB from step to step without any leak."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: raw RSS
        pass
    return rss_mb()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # 200 steps (~20 s)
def test_host_memory_stays_flat_over_many_steps(tmp_path, tokenizer):
    """200 steps of the real loop (fused head, length-grouped batches of varying shape):
    after warm-up, resident memory must stay flat (the reference's users report host
    memory growing over long runs). Small vocabulary, so the 200 steps take seconds."""
    vocab = 2000
    teacher = make_tiny_bert(layers=2, hidden=32, vocab=vocab)
    weights = masking_weights(None, tokenizer.all_special_ids, vocab)
    cfg = smoke_config(batch_size=4, checkpoint_every=10_000, log_every=1, seed=3)
    fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, vocab)
    rss: dict[int, float] = {}
    raw: list[float] = []

    def on_log(rec):
        raw.append(rss_mb())
        if rec["step"] % 10 == 0 and rec["step"] < 200:
            rss[rec["step"]] = _live_rss_mb()

    train_loop(random_student(teacher, 2, seed=1), fn, _seqs(vocab=vocab), cfg=cfg,
               max_steps=200, lr=1e-3, ckpt_path=tmp_path / "mem.pt", fingerprint={}, pad_id=0,
               on_log=on_log)
    assert len(raw) == 200
    after_warmup = [v for k, v in sorted(rss.items()) if k >= 40]
    growth = max(after_warmup) - after_warmup[0]
    print(f"live RSS at step 40 {after_warmup[0]:.1f} MB, max after {max(after_warmup):.1f} MB "
          f"(+{growth:.1f}); raw RSS steps 40-199: {min(raw[40:-1]):.0f}-{max(raw[40:-1]):.0f} MB")
    assert growth < 50, f"RSS grew {growth:.1f} MB over 160 steps: {after_warmup}"
