"""Distillation step benchmark: the reference algorithm and our fast step compute the same
losses and gradients; throughput counts real tokens only; host memory stays flat over many
steps; the command line runs on the smoke profile."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from conftest import make_tiny_bert

from benchmarks.bench_distill import (
    LOSS_RTOL,
    compare_losses,
    main,
    rss_mb,
    time_steps,
)
from benchmarks.reference_distiller import reference_loss
from distil_utils.config import get_config
from distil_utils.data import collate
from distil_utils.distill import make_distill_loss
from distil_utils.masking import masking_weights
from distil_utils.student import random_student, student_from_teacher
from distil_utils.training import train_loop


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP threads spinning against other
    jobs make tiny steps many times slower. These tests check correctness, not speed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pair():
    """A tiny teacher with confident predictions and a random student (so that the KL term
    is far from 0)."""
    teacher = make_tiny_bert(layers=4, hidden=32)
    with torch.no_grad():
        teacher.cls.predictions.decoder.weight.mul_(40.0)
    return teacher, random_student(teacher, 2, seed=1)


@pytest.fixture(scope="module")
def weights(tokenizer):
    return masking_weights(None, tokenizer.all_special_ids, len(tokenizer))


def _batch(lengths, seed=0):
    rng = random.Random(seed)
    seqs = [[101] + [rng.randrange(1000, 30000) for _ in range(n - 2)] + [102] for n in lengths]
    return collate(seqs, pad_id=0)


def _cfg(**kw):
    return get_config("smoke", **kw)


@pytest.mark.parametrize("masked_only", [False, True])
def test_reference_and_ours_give_equal_losses_at_step_0(pair, weights, tokenizer, masked_only):
    teacher, student = pair
    batch = _batch([20, 13, 7, 20])  # padding in three of four rows
    cfg = _cfg(ce_on_masked_only=masked_only)
    res = compare_losses(teacher, student, batch, {
        "reference": cfg, "ours": cfg,
        "ours_plain": _cfg(ce_on_masked_only=masked_only, distill_fused_head=False),
        "ours_small_chunks": _cfg(ce_on_masked_only=masked_only, distill_chunk_rows=5),
    }, weights, tokenizer.mask_token_id, len(tokenizer))
    ref = res["losses"]["reference"]
    assert ref["ce"] > 0.01 and ref["mlm"] > 1 and ref["cos"] > 0  # every term is exercised
    for name, diff in res["max_rel_diff"].items():
        assert diff < LOSS_RTOL, (name, res["losses"][name], ref)


def test_fused_head_gives_the_plain_gradients(pair, weights, tokenizer):
    teacher, student = pair
    batch = _batch([20, 9, 16])
    grads = {}
    for name, cfg in {"plain": _cfg(distill_fused_head=False),
                      "fused": _cfg(distill_chunk_rows=7)}.items():
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


def test_bf16_autocast_stays_close_to_float32(pair, weights, tokenizer):
    teacher, student = pair
    res = compare_losses(teacher, student, _batch([20, 11]), {
        "ours": _cfg(), "bf16": _cfg(distill_autocast="bf16")}, weights,
        tokenizer.mask_token_id, len(tokenizer), reference="ours")
    assert res["max_rel_diff"]["bf16"] < 2e-2


def test_throughput_counts_only_real_tokens(pair, weights, tokenizer):
    teacher, student = pair
    lengths = [[12, 5, 9], [7, 7, 3]]
    batches = [_batch(ls, seed=i) for i, ls in enumerate(lengths)]
    for algo in (make_distill_loss, reference_loss):
        fn = algo(teacher, _cfg(), weights, tokenizer.mask_token_id, len(tokenizer))
        res = time_steps(student_from_teacher(teacher), fn, batches, _cfg())
        assert res["real_tokens"] == sum(map(sum, lengths)) == 43
        assert res["padded_tokens"] == 3 * 12 + 3 * 7 == 57
        assert len(res["step_seconds"]) == 2 and all(s > 0 for s in res["step_seconds"])
        assert res["real_tokens_per_s"] == pytest.approx(43 / res["seconds_total"])
        assert 0 < res["real_tokens_per_s"] < res["padded_tokens_per_s"]
        assert res["rss_peak_mb"] >= res["rss_start_mb"] > 0


def test_bad_speed_settings_are_errors():
    with pytest.raises(ValueError, match="distill_autocast"):
        get_config("smoke", distill_autocast="int8")
    with pytest.raises(ValueError, match="distill_chunk_rows"):
        get_config("smoke", distill_chunk_rows=0)


def _seqs(n=300, seed=0, vocab=30000):
    import datasets

    rng = random.Random(seed)
    seqs = [[101] + [rng.randrange(1000, vocab) for _ in range(rng.randint(4, 30))] + [102]
            for _ in range(n)]
    return datasets.Dataset.from_dict({"input_ids": seqs, "length": [len(s) for s in seqs]}
                                      ).with_format("python")


@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_in_the_loop(tmp_path, pair, weights, tokenizer, amp):
    teacher, _ = pair
    cfg = _cfg(batch_size=4, distill_autocast=amp, checkpoint_every=100, log_every=1)
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


def test_host_memory_stays_flat_over_many_steps(tmp_path, tokenizer):
    """200 steps of the real loop (fused head, length-grouped batches of varying shape):
    after warm-up, resident memory must stay flat (the reference's users report host
    memory growing over long runs). Small vocabulary, so the 200 steps take seconds."""
    vocab = 2000
    teacher = make_tiny_bert(layers=2, hidden=32, vocab=vocab)
    weights = masking_weights(None, tokenizer.all_special_ids, vocab)
    cfg = _cfg(batch_size=4, checkpoint_every=10_000, log_every=1, seed=3)
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


@pytest.mark.slow  # the whole command line with its matmul peaks (minutes without AVX-512 bf16)
def test_command_line_smoke_profile(tmp_path, capsys, data_dir):  # reads the IMDb mirror
    res = main(["--profile", "smoke", "--steps", "2", "--rounds", "1", "--batch-size", "4",
                "--tokenize-docs", "40", "-p", "results_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "real tok/s" in out and "tokenise IMDb" in out
    written = json.loads((tmp_path / "smoke" / "bench_distill.json").read_text())
    assert written["provenance"]["profile"] == "smoke"
    bench = written["metrics"]["bench"]
    assert {"reference", "ours", "ours_no_grouping", "ours_fused_head_off", "ours_attn_eager",
            "ours_bf16", "reference_grouped"} <= set(bench["variants"])
    for name, row in bench["variants"].items():
        assert row["real_tokens_per_s_median"] > 0, name
        assert row["rss_peak_mb_max"] > 0, name
    assert bench["step0_losses"]["max_rel_diff"]["ours"] < LOSS_RTOL
    assert res["tokenize"]["runs"][0]["tokens_per_s"] > 0
