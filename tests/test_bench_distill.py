"""Distillation step benchmark: the reference algorithm and our fast step compute the same
losses; throughput counts real tokens only; the command line runs on the smoke profile.

(The loop's mixed precision and flat host memory: tests/test_training.py; the fused head's
gradients: tests/test_fused_head.py.)"""

from __future__ import annotations

import json

import pytest
from helpers import confident_pair, id_batch, smoke_config

from benchmarks.bench_distill import LOSS_RTOL, compare_losses, main, time_steps
from benchmarks.reference_distiller import reference_loss
from distil_utils.distill import make_distill_loss
from distil_utils.student import student_from_teacher

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair():
    """A teacher with confident predictions and a random student (so that the KL term
    is far from 0)."""
    return confident_pair(layers=4, hidden=32, scale=40.0)


@pytest.mark.parametrize("masked_only", [False, True])
def test_reference_and_ours_give_equal_losses_at_step_0(pair, weights, tokenizer, masked_only):
    teacher, student = pair
    batch = id_batch([20, 13, 7, 20])  # padding in three of four rows
    cfg = smoke_config(ce_on_masked_only=masked_only)
    res = compare_losses(teacher, student, batch, {
        "reference": cfg, "ours": cfg,
        "ours_plain": smoke_config(ce_on_masked_only=masked_only, distill_fused_head=False),
        "ours_small_chunks": smoke_config(ce_on_masked_only=masked_only, distill_chunk_rows=5),
    }, weights, tokenizer.mask_token_id, len(tokenizer))
    ref = res["losses"]["reference"]
    assert ref["ce"] > 0.01 and ref["mlm"] > 1 and ref["cos"] > 0  # every term is exercised
    for name, diff in res["max_rel_diff"].items():
        assert diff < LOSS_RTOL, (name, res["losses"][name], ref)


def test_bf16_autocast_stays_close_to_float32(pair, weights, tokenizer):
    teacher, student = pair
    res = compare_losses(teacher, student, id_batch([20, 11]), {
        "ours": smoke_config(), "bf16": smoke_config(distill_autocast="bf16")}, weights,
        tokenizer.mask_token_id, len(tokenizer), reference="ours")
    assert res["max_rel_diff"]["bf16"] < 2e-2


def test_throughput_counts_only_real_tokens(pair, weights, tokenizer):
    teacher, student = pair
    lengths = [[12, 5, 9], [7, 7, 3]]
    batches = [id_batch(ls, seed=i) for i, ls in enumerate(lengths)]
    for algo in (make_distill_loss, reference_loss):
        fn = algo(teacher, smoke_config(), weights, tokenizer.mask_token_id, len(tokenizer))
        res = time_steps(student_from_teacher(teacher), fn, batches, smoke_config())
        assert res["real_tokens"] == sum(map(sum, lengths)) == 43
        assert res["padded_tokens"] == 3 * 12 + 3 * 7 == 57
        assert len(res["step_seconds"]) == 2 and all(s > 0 for s in res["step_seconds"])
        assert res["real_tokens_per_s"] == pytest.approx(43 / res["seconds_total"])
        assert 0 < res["real_tokens_per_s"] < res["padded_tokens_per_s"]
        assert res["rss_peak_mb"] >= res["rss_start_mb"] > 0


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


# The guard of issue 28: ours against the reference algorithm on tiny encoders with the real
# 30,522-word vocabulary (where the reference's full-vocabulary logits cost what they cost at
# the cpu profile's shape), interleaved rounds, a ratio, not a time. FLOOR is set from the
# measured spread: medians of 7 runs on this 2-core machine (1 and 2 threads, 2026-12-07)
# spanned RATIO_SEEN; the floor sits 30% below the lowest. Switching the fused head off
# measured 2.34x here (fails); dropping length grouping 4.42x (a small loss at these lengths).
RATIO_SEEN = (4.2, 6.4)
FLOOR = 3.0


def test_ours_keeps_its_lead_over_the_reference_algorithm(tokenizer, weights):
    """Fails when a change makes our step lose its advantage (a slower head, padding back,
    a copy of the logits): the median ratio of real tokens per CPU-second over interleaved
    rounds, which another job on the machine slows alike for both."""
    from helpers import make_tiny_bert, random_sequences

    from benchmarks.bench_distill import bench_distill

    teacher = make_tiny_bert(layers=4, hidden=64).eval()
    student = student_from_teacher(teacher, (0, 3))
    seqs = random_sequences(n=120, seed=3)
    cfg = smoke_config(batch_size=16)
    res = bench_distill(cfg, teacher, student, seqs, tokenizer, steps=2, rounds=3,
                        names=["reference", "ours"])
    ours = res["variants"]["ours"]  # (its losses equal the reference's: the tests above)
    cpu_ratio = ours["speedup_vs_reference_cpu_ratio_median"]
    assert cpu_ratio >= FLOOR, (
        f"ours runs at {cpu_ratio:.2f}x the reference algorithm's real tokens per CPU-second "
        f"(wall clock {ours['speedup_vs_reference_ratio_median']:.2f}x), below the floor "
        f"{FLOOR}x (seen {RATIO_SEEN}): where the time goes: {res['breakdown_ours']['share']}")
