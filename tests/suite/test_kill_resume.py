"""Whole runs in subprocesses, killed and resumed or run twice: a SIGKILL mid-distillation
then the same command gives the uninterrupted weights; a killed fine-tuning task resumes
from its Trainer checkpoint and a scored one is not run again; one seed, the same numbers."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, distill_cli, kill_after_first_checkpoint, smoke_config, subprocess_env

pytestmark = pytest.mark.slow


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path, corpus):
    steps = 40
    ref = subprocess.run(distill_cli(tmp_path / "ref", corpus, steps), env=subprocess_env(),
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]

    killed = tmp_path / "killed"
    ckpt = killed / "smoke" / "checkpoints" / "student.pt"
    proc = subprocess.Popen(distill_cli(killed, corpus, steps), env=subprocess_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_after_first_checkpoint(proc, ckpt, timeout_s=300, max_delay_s=1.0,
                                kill=lambda: proc.send_signal(signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "smoke" / "student").exists()
    state = torch.load(ckpt, weights_only=False)  # whole: written by rename, never in place
    assert 0 < state["step"] < steps

    resumed = subprocess.run(distill_cli(killed, corpus, steps), env=subprocess_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from safetensors.torch import load_file

    a = load_file(tmp_path / "ref" / "smoke" / "student" / "model.safetensors")
    b = load_file(killed / "smoke" / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_same_numbers(tmp_path, corpus):
    """Two runs of one seed give identical loss histories and weights (timings aside)."""
    outs = []
    for name in ("a", "b"):
        run = subprocess.run(distill_cli(tmp_path / name, corpus, 6), env=subprocess_env(),
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        import json

        hist = json.loads((tmp_path / name / "smoke" / "student_history.json").read_text())
        outs.append([{k: v for k, v in h.items() if k != "seconds"}
                     for h in hist["metrics"]["history"]])
    assert outs[0] == outs[1]


KILL_AT_STEP_5 = """
import os, signal, sys
import transformers
from distil_utils.config import get_config
from distil_utils.finetune import finetune_glue

step = transformers.Trainer.training_step
def dying_step(self, *a, **k):
    if self.state.global_step == 5:  # checkpoint-4 is on disk
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *a, **k)
transformers.Trainer.training_step = dying_step
cfg = get_config("smoke", results_dir=sys.argv[2], data_dir=sys.argv[3], ft_max_train=48,
                 ft_max_eval=16, ft_batch_size=8, ft_epochs=1.0, ft_checkpoint_every=2,
                 ft_task_overrides={})
finetune_glue(sys.argv[1], "sst2", cfg, 42)
"""


def test_a_killed_fine_tuning_task_resumes_and_a_scored_one_is_not_run_again(
        tmp_path, tiny_bert_dir, data_dir, monkeypatch):
    import transformers

    from distil_utils.finetune import finetune_glue

    killed = subprocess.run([sys.executable, "-c", KILL_AT_STEP_5, str(tiny_bert_dir),
                             str(tmp_path), str(data_dir)], env=subprocess_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    cfg = smoke_config(tmp_path, data_dir=data_dir, preset="finetune")
    assert list((cfg.out / "checkpoints" / "ft").glob("*/checkpoint-4"))
    resumed_from = []
    train = transformers.Trainer.train

    def spy(self, *a, resume_from_checkpoint=None, **k):
        resumed_from.append(resume_from_checkpoint)
        return train(self, *a, resume_from_checkpoint=resume_from_checkpoint, **k)

    monkeypatch.setattr(transformers.Trainer, "train", spy)
    scores = finetune_glue(str(tiny_bert_dir), "sst2", cfg, 42)
    assert resumed_from and resumed_from[0].endswith("checkpoint-4")
    assert 0 <= scores["accuracy"] <= 100
    assert not list((cfg.out / "checkpoints" / "ft").glob("*/checkpoint-*")), "left behind"
    # scored once: the same task and seed is not run again, another seed is
    assert finetune_glue(str(tiny_bert_dir), "sst2", cfg, 42) == scores
    assert len(resumed_from) == 1
    finetune_glue(str(tiny_bert_dir), "sst2", cfg, 43)
    assert len(resumed_from) == 2
