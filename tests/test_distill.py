"""Distillation: the loss function (masks drawn on the host; the GPU's default bf16 branch
against the float32 triple loss), the cached teacher, resume, and the command line."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from helpers import (
    confident_pair,
    id_batch,
    make_tiny_bert,
    prepared_run,
    smoke_config,
    smoke_teacher,
)

from distil_utils.config import get_config
from distil_utils.distill import main, make_distill_loss, prepare_corpus, run_distillation
from distil_utils.losses import triple_loss
from distil_utils.masking import mask_tokens
from distil_utils.recipe import precision


@pytest.fixture(scope="module")
def pair():
    """A 4-layer x 64 teacher (confident: L_ce far from 0) and a random 2-layer student."""
    return confident_pair(layers=4, hidden=64, scale=30.0)


def test_the_masks_are_still_drawn_on_the_host_from_the_step_seed(tokenizer, weights):
    """Moving the masking out of the forward keeps the per-step masks (exact resume)."""
    cfg = get_config("smoke")
    fn = make_distill_loss(make_tiny_bert(layers=2), cfg, weights, tokenizer.mask_token_id,
                           len(tokenizer))
    batch = id_batch([20, 9, 16])
    prepared = fn.prepare(batch, torch.Generator().manual_seed(7))
    masked, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], weights,
                                 tokenizer.mask_token_id, len(tokenizer), cfg.mlm_prob,
                                 torch.Generator().manual_seed(7))
    assert torch.equal(prepared["input_ids"], masked) and torch.equal(prepared["labels"], labels)
    assert all(v.device.type == "cpu" for v in prepared.values() if torch.is_tensor(v))
    assert torch.equal(prepared["mlm_index"], (labels.reshape(-1) != -100).nonzero()[:, 0])
    assert torch.equal(prepared["ce_index"],
                       batch["attention_mask"].reshape(-1).nonzero()[:, 0])
    assert prepared["padded"] is True and id_batch([5, 5])["attention_mask"].all()
    assert fn.prepare(id_batch([5, 5]), torch.Generator().manual_seed(0))["padded"] is False


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
    batch = id_batch([40, 23, 31, 12])
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


def test_cached_teacher_is_rebuilt_when_its_settings_change_and_keeps_its_report(tmp_path,
                                                                                 corpus):
    from distil_utils.artefacts import read_stamp

    cfg = smoke_config(tmp_path, corpus, preset="small")
    tok, train, held, _, path, report = prepared_run(cfg)
    first = read_stamp(path)
    assert first["settings"]["seed"] == 42 and report["steps"] == 2
    assert first["report"] == report  # the report travels inside the teacher's folder
    (cfg.out / "teacher_adaptation.json").unlink()  # as if killed between the two writes
    *_, again = prepared_run(cfg)
    assert again == report and (cfg.out / "teacher_adaptation.json").exists()
    assert read_stamp(path)["created"] == first["created"], "a current teacher is reused"
    # another seed: the cached teacher (and its finished checkpoint) are not reused
    prepared_run(smoke_config(tmp_path, corpus, preset="small", seed=7))
    assert read_stamp(path)["settings"]["seed"] == 7
    report_file = json.loads((cfg.out / "teacher_adaptation.json").read_text())
    assert report_file["provenance"]["seed"] == 7


def test_command_line_refuses_no_op_and_bad_values_before_any_work(tmp_path, corpus, capsys):
    from distil_utils.distill import main

    for pairs, match in [(["max_steps", "0"], "max_steps is 0"),
                         (["max_steps", "abc"], "max_steps must be a whole number"),
                         (["temperature", "nan"], "temperature must be a finite")]:
        with pytest.raises(SystemExit) as info:
            main(["--profile", "smoke", "-p", "results_dir", str(tmp_path), "-p", *pairs])
        assert info.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists(), "nothing may be written before the checks"
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "checkpoints").write_text("")  # a file where a folder must be
    with pytest.raises(SystemExit):
        main(["--profile", "smoke", "-p", "results_dir", str(tmp_path)])
    assert "checkpoints is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # checked against the teacher's depth, first
        main(["--profile", "smoke", "-p", "results_dir", str(tmp_path / "l"), "-p",
              "student_layers", "(0, 7)"])
    assert info.value.code == 2 and "student_layers (0, 7)" in capsys.readouterr().err
    assert not (tmp_path / "l" / "smoke" / "corpus").exists(), "checked before tokenising"
    for name in ("teacher", "finetuned", "ablation_without_l_ce", "../elsewhere"):
        with pytest.raises(SystemExit) as info:  # the suite's own folders are not a student's
            main(["--profile", "smoke", "-p", "results_dir", str(tmp_path), "--name", name])
        assert info.value.code == 2 and "--name" in capsys.readouterr().err


@pytest.mark.slow  # ~4 s
def test_resume_reproduces_the_uninterrupted_run(tmp_path, corpus_file, tokenizer):
    cfg_a = smoke_config(tmp_path / "a", corpus_file, preset="distill")
    train, _ = prepare_corpus(cfg_a, tokenizer)
    teacher = smoke_teacher(tokenizer, cfg_a)
    student_a, hist_a = run_distillation(cfg_a, teacher, tokenizer, train)

    cfg_b = smoke_config(tmp_path / "b", corpus_file, preset="distill")
    _, first = run_distillation(cfg_b, teacher, tokenizer, train, stop_at=4)
    assert len(first) == 4 and not (cfg_b.out / "student").exists()
    student_b, hist_b = run_distillation(cfg_b, teacher, tokenizer, train)

    assert [h["step"] for h in hist_b] == list(range(1, 9))
    for a, b in zip(hist_a[4:], hist_b[4:], strict=True):
        for k in ("loss", "ce", "mlm", "cos"):
            assert abs(a[k] - b[k]) < 1e-6, (a["step"], k, a[k], b[k])
    for (n, pa), (_, pb) in zip(student_a.state_dict().items(),
                                student_b.state_dict().items(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), n
    # the losses moved: the loop really trained
    assert hist_a[0]["loss"] != hist_a[-1]["loss"]
    assert all(h["lr"] >= 0 for h in hist_a) and hist_a[-1]["lr"] < max(h["lr"] for h in hist_a)
    # a finished run is not redone
    _, again = run_distillation(cfg_b, teacher, tokenizer, train)
    assert again == hist_b
    from transformers import DistilBertForMaskedLM
    assert DistilBertForMaskedLM.from_pretrained(cfg_a.out / "student").config.n_layers == 2


@pytest.mark.slow  # ~4 s
def test_a_finished_run_is_not_made_again_for_nothing(tmp_path, corpus_file, tokenizer, capsys):
    """The student folder lost after its run finished: the finished checkpoint is found again
    and 0 steps are trained (it was discarded as "other settings" and everything re-trained)."""
    import shutil

    cfg = smoke_config(tmp_path, corpus_file, preset="distill")
    train, _ = prepare_corpus(cfg, tokenizer)
    teacher = smoke_teacher(tokenizer, cfg)
    student, history = run_distillation(cfg, teacher, tokenizer, train)
    shutil.rmtree(cfg.out / "student")
    steps = []
    again, history_again = run_distillation(cfg, teacher, tokenizer, train, on_log=steps.append)
    assert "starting anew" not in capsys.readouterr().out
    assert steps == [] and history_again == history  # nothing trained: the checkpoint's history
    for (n, a), (_, b) in zip(student.state_dict().items(), again.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), n
    # other settings: a finished checkpoint is a shortcut no longer, and is discarded
    other = dataclasses.replace(cfg, temperature=cfg.temperature + 1)
    run_distillation(other, teacher, tokenizer, train)
    assert "starting anew" in capsys.readouterr().out


@pytest.mark.slow  # ~4 s
def test_command_line_runs_the_pipeline(tmp_path, corpus_file, capsys):
    main(["--profile", "smoke", "-p", "results_dir", str(tmp_path), "-p", "corpus",
          f"('{corpus_file}',)", "-p", "corpus_max_docs", "None", "-p", "heldout_docs", "10",
          "-p", "max_steps", "3", "-p", "adapt_steps", "2", "-p", "max_seq_len", "32"])
    out = capsys.readouterr().out
    assert "step 3: loss" in out and "held-out masked-token accuracy" in out
    run = json.loads((tmp_path / "smoke" / "student_run.json").read_text())
    assert run["metrics"]["n_masked"] > 0 and 0 <= run["metrics"]["mlm_acc"] <= 100
    assert (tmp_path / "smoke" / "student" / "config.json").exists()
    assert (tmp_path / "smoke" / "teacher" / "config.json").exists()
    assert (tmp_path / "smoke" / "teacher_adaptation.json").exists()
    # the command line's student carries a full card: profile, data, its own measure
    from distil_utils.modelcard import card_numbers

    card = (tmp_path / "smoke" / "student" / "README.md").read_text()
    assert "`smoke` profile" in card and "unknown" not in card
    [result] = card_numbers(tmp_path / "smoke" / "student" / "README.md")
    assert result["metric_value"] == pytest.approx(run["metrics"]["mlm_acc"], abs=1e-4)
    assert result["metric_type"] == "accuracy" and result["task_type"] == "fill-mask"
    [adapted] = card_numbers(tmp_path / "smoke" / "teacher" / "README.md")
    report = json.loads((tmp_path / "smoke" / "teacher_adaptation.json").read_text())
    assert adapted["metric_value"] == pytest.approx(report["metrics"]["after"]["mlm_acc"],
                                                    abs=1e-4)
