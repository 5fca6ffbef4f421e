"""Opt-in run tracking (`report_to`): the setting's checks, kept out of every stamp; the
distillation loop logging through accelerate's trackers and fine-tuning through Trainer's,
read back from TensorBoard's event files; nothing written without it."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from helpers import confident_pair, prepared_run, random_sequences, smoke_config

from distil_utils import config as config_module
from distil_utils.artefacts import provenance, student_stamp, teacher_stamp
from distil_utils.config import get_config, runs_dir, trackers
from distil_utils.distill import make_distill_loss, parse_overrides, run_distillation
from distil_utils.ft_runs import run_stamp
from distil_utils.training import run_fingerprint, train_loop
from distil_utils.validation import SettingError

pytest.importorskip("tensorboard")

LOSS_TAGS = {f"train/{k}" for k in ("loss", "ce", "mlm", "cos")}
STEP_TAGS = {"train/learning_rate", "train/grad_norm", "train/tokens_per_s"}
TB_ENV = "TENSORBOARD_LOGGING_DIR"  # where Trainer's TensorBoard callback writes


def scalars(folder):
    """{tag: [(step, value), ...]} of the TensorBoard event files in `folder` (not below)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


# --------------------------------------------------------------------------- the setting
def test_report_to_reads_none_names_lists_and_tuples():
    cfg = get_config("smoke")
    assert cfg.report_to == "none" and trackers(cfg) == ()
    for value, want in [("tensorboard", ("tensorboard",)), ("none", ()),
                        (" TensorBoard , trackio,", ("tensorboard", "trackio")),
                        (("tensorboard", "none"), ("tensorboard",)), ((), ())]:
        assert trackers(dataclasses.replace(cfg, report_to=value)) == want, value
    # -p as the command lines parse it: one name, a comma-separated list, a tuple literal
    for text in ("tensorboard", "tensorboard,tensorboard", "('tensorboard',)"):
        cfg = get_config("smoke", **parse_overrides([["REPORT_TO", text]]))
        assert trackers(cfg) == ("tensorboard",), text


def test_unknown_tracker_and_missing_package_are_refused_naming_the_fix(monkeypatch):
    with pytest.raises(SettingError, match=r"report_to names \['wandb'\].*'tensorboard', "
                                           r"'trackio'.*-p report_to tensorboard"):
        get_config("smoke", report_to="tensorboard,wandb")
    real = config_module.importlib.util.find_spec
    monkeypatch.setattr(config_module.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "trackio")
                        else real(name, *a))
    with pytest.raises(SettingError, match="report_to .*pip install tensorboard trackio"):
        get_config("smoke", report_to=("tensorboard", "trackio"))
    get_config("smoke", report_to="none")  # nothing to install


def test_report_to_is_in_no_stamp_fingerprint_or_settings_digest():
    off, on = get_config("smoke"), get_config("smoke", report_to="tensorboard")
    assert student_stamp(off) == student_stamp(on) and teacher_stamp(off) == teacher_stamp(on)
    assert run_fingerprint(off, "distill") == run_fingerprint(on, "distill")
    assert run_fingerprint(off, "adapt") == run_fingerprint(on, "adapt")
    assert run_stamp("m", "sst2", off, 42) == run_stamp("m", "sst2", on, 42)
    assert provenance(off)["settings_sha256"] == provenance(on)["settings_sha256"]


def test_fine_tuning_logs_nothing_without_trackers(tmp_path, monkeypatch):
    from distil_utils.finetune import training_args

    monkeypatch.setenv(TB_ENV, "unset")  # restored afterwards: training_args sets it

    off = training_args(smoke_config(tmp_path), 0, str(tmp_path / "run"), 1.0)
    assert off.report_to == [] and off.logging_strategy == "no"
    on = training_args(smoke_config(tmp_path, report_to="tensorboard"), 0,
                       str(tmp_path / "run"), 1.0)
    assert on.report_to == ["tensorboard"] and on.logging_strategy == "steps"
    assert on.logging_steps == get_config("smoke").log_every and on.run_name == "run"


# ----------------------------------------------------------------------- the loop

def _seqs(n=60, seed=0, vocab=30000):
    return random_sequences(n, seed, vocab)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("report_to", ["none", "tensorboard"])
def test_the_loop_logs_loss_terms_lr_grad_norm_and_tokens_per_second(tmp_path, weights,
                                                                     tokenizer, report_to):
    teacher, student = confident_pair(layers=2, hidden=32, scale=30.0)
    cfg = smoke_config(tmp_path, batch_size=4, log_every=2, checkpoint_every=100,
                       report_to=report_to)
    fn = make_distill_loss(teacher, cfg, weights, tokenizer.mask_token_id, len(tokenizer))
    hist = train_loop(student, fn, _seqs(), cfg=cfg, max_steps=5, lr=1e-3,
                      ckpt_path=tmp_path / "loop.pt", fingerprint={}, pad_id=0)
    if report_to == "none":
        assert not runs_dir(cfg).exists()  # nothing changes
        return
    logged = scalars(runs_dir(cfg) / "loop")
    assert LOSS_TAGS | STEP_TAGS <= set(logged), sorted(logged)
    for tag in LOSS_TAGS | STEP_TAGS:
        assert [s for s, _ in logged[tag]] == [2, 4, 5], tag  # every log_every, and the end
        assert all(math.isfinite(v) for _, v in logged[tag]), tag
    # the window's mean loss, the step's lr and norm, tokens over the window's seconds
    by_step = {h["step"]: h for h in hist}
    assert logged["train/loss"][0][1] == pytest.approx((hist[0]["loss"] + hist[1]["loss"]) / 2,
                                                       rel=1e-5)
    assert logged["train/learning_rate"][1][1] == pytest.approx(by_step[4]["lr"], rel=1e-5)
    assert logged["train/grad_norm"][2][1] == pytest.approx(by_step[5]["grad_norm"], rel=1e-5)
    tps = by_step[5]["tokens"] / (by_step[5]["seconds"] - by_step[4]["seconds"])
    assert logged["train/tokens_per_s"][2][1] == pytest.approx(tps, rel=1e-3)
    assert 0 < tps < 1e9


@pytest.mark.slow  # the smoke pipeline: adaptation and distillation (~5 s)
def test_smoke_adaptation_and_distillation_write_tensorboard_runs(tmp_path, corpus_file):
    cfg = smoke_config(tmp_path, corpus_file, preset="small", adapt_steps=3, max_steps=5,
                       log_every=2, report_to="tensorboard")
    tok, train, _, teacher, _, _ = prepared_run(cfg)
    _, hist = run_distillation(cfg, teacher, tok, train)
    adapt = scalars(runs_dir(cfg) / "teacher_adapt")
    assert {"train/loss"} | STEP_TAGS <= set(adapt), sorted(adapt)
    assert [s for s, _ in adapt["train/loss"]] == [2, 3]
    student = scalars(runs_dir(cfg) / "student")
    for tag in LOSS_TAGS | STEP_TAGS:
        assert [s for s, _ in student[tag]] == [2, 4, 5], tag
        assert all(math.isfinite(v) for _, v in student[tag]), tag
    # the last window is step 5 alone
    assert student["train/cos"][-1][1] == pytest.approx(hist[-1]["cos"], rel=1e-5)
    # the settings, as hparams (accelerate writes them beside the run)
    assert list((runs_dir(cfg) / "student").glob("*/hparams.yml"))


# ----------------------------------------------------------------------- fine-tuning
@pytest.mark.slow  # one tiny fine-tuning (~5 s)
def test_glue_fine_tuning_writes_events_and_hf_metrics_files(models, tmp_path, data_dir,
                                                              monkeypatch):
    from distil_utils.finetune import finetune_glue

    monkeypatch.setenv(TB_ENV, "unset")  # restored afterwards: training_args sets it

    cfg = smoke_config(tmp_path, data_dir=data_dir, preset="finetune", log_every=2,
                       report_to="tensorboard")
    out = tmp_path / "sst2"
    metrics = finetune_glue(str(models / "student"), "sst2", cfg, 0, output_dir=out)
    evaluated = json.loads((out / "eval_results.json").read_text())
    combined = json.loads((out / "all_results.json").read_text())
    trained = json.loads((out / "train_results.json").read_text())
    assert evaluated == {"eval_accuracy": metrics["accuracy"]}
    assert combined["eval_accuracy"] == metrics["accuracy"] and "train_loss" in combined
    assert math.isfinite(trained["train_loss"]) and trained["train_runtime"] > 0
    [run] = [p for p in runs_dir(cfg).iterdir() if p.is_dir()]
    assert run.name.startswith("student_sst2_seed0_")  # the run's id (ft_runs)
    logged = scalars(run)
    assert {"train/loss", "train/learning_rate", "train/grad_norm"} <= set(logged), logged
    assert [s for s, _ in logged["train/loss"]] == [2, 4, 6]  # 48 examples, batch 8
    assert logged["eval/accuracy"][-1][1] == pytest.approx(metrics["accuracy"])
    # the checkpoints' folder is gone once recorded; the events stay
    assert not (cfg.out / "checkpoints" / "ft" / run.name).exists()


def test_glue_fine_tuning_without_trackers_logs_nothing_but_saves_metrics(models, tmp_path,
                                                                         data_dir):
    from distil_utils.finetune import finetune_glue

    cfg = smoke_config(tmp_path, data_dir=data_dir, preset="finetune", ft_max_train=16)
    out = tmp_path / "sst2"
    metrics = finetune_glue(str(models / "student"), "sst2", cfg, 0, output_dir=out)
    assert not runs_dir(cfg).exists()
    assert json.loads((out / "eval_results.json").read_text()) == {
        "eval_accuracy": metrics["accuracy"]}
