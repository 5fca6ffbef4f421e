"""The `paper` profile's code path under torchrun: 2 gloo processes on the CPU.

A random teacher of BERT-base's shape (12 layers, 768 wide, 12 heads, 3072 inner, the real
30,522-word vocabulary) is adapted with masked-LM (2 steps) and distilled into the paper's
6-layer student (6 steps) by `prepare_corpus` / `prepare_teacher` / `run_distillation`,
exactly as `python -m distil_utils.distill --profile paper` runs them, only with short
sequences, a local corpus and few steps. Checked: both replicas of the teacher and of the
student are bit-identical after training (gradients really were all-reduced), the
optimizer step saw the planned global batch, and a SIGKILL of the whole job followed by the
same command gives the uninterrupted run's weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import kill_after_first_checkpoint, save_bert_base_teacher, write_corpus

ROOT = Path(__file__).resolve().parent.parent
STEPS = 4
pytestmark = pytest.mark.slow

WORKER = textwrap.dedent("""
    import hashlib, json, sys
    from distil_utils.config import get_config
    from distil_utils.devices import dist_info
    from distil_utils.distill import prepare_corpus, run_distillation
    from distil_utils.teacher import prepare_teacher, prepare_tokenizer
    from distil_utils.recipe import plan
    from distil_utils.student import load_teacher

    results, corpus, teacher_dir, steps = sys.argv[1:5]
    cfg = get_config(
        "paper", explicit_none=("data_dir", "corpus_max_docs", "epochs", "tokenizer"),
        results_dir=results, corpus=(corpus,), data_dir=None, corpus_max_docs=None,
        heldout_docs=8, teacher=teacher_dir, tokenizer=None, max_seq_len=16, min_seq_len=4,
        batch_size=2, global_batch=8, epochs=None, max_steps=int(steps), adapt_steps=2,
        checkpoint_every=2, log_every=1, eval_batches=1)
    planned = plan(cfg)

    def digest(model):
        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    tok = prepare_tokenizer(cfg)
    train, held = prepare_corpus(cfg, tok)
    initial = digest(load_teacher(teacher_dir))
    teacher, _, report = prepare_teacher(cfg, tok, train, held)
    student, history = run_distillation(cfg, teacher, tok, train)
    rank, world = dist_info()
    out = {"rank": rank, "world": world, "plan": planned, "grad_accum": cfg.grad_accum,
           "max_steps": cfg.max_steps, "teacher_initial": initial, "teacher": digest(teacher),
           "student": digest(student), "steps": [h["step"] for h in history],
           "loss": [h["loss"] for h in history]}
    with open(f"{results}/rank{rank}.json", "w") as fh:
        json.dump(out, fh)
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    words = ("the teacher model reads many pages of text while a smaller student learns to "
             "predict the same masked words from its soft targets and hidden states").split()
    corpus = write_corpus(base / "docs.txt", words, 120, 6, 40, 5)
    save_bert_base_teacher(base / "teacher")
    (base / "worker.py").write_text(WORKER)
    return base, corpus


def _cmd(base: Path, results: Path, corpus: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", str(base / "worker.py"), str(results), str(corpus), str(base / "teacher"),
            str(STEPS)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run(base: Path, results: Path, corpus: Path) -> list[dict]:
    results.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(_cmd(base, results, corpus), env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-20000:]
    return [json.loads((results / f"rank{r}.json").read_text()) for r in (0, 1)]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


@pytest.fixture(scope="module")
def reference(setup):
    base, corpus = setup
    return _run(base, base / "ref", corpus)


def test_replicas_stay_identical_through_adaptation_and_distillation(reference):
    r0, r1 = reference
    assert (r0["world"], r1["world"]) == (2, 2)
    assert r0["teacher"] == r1["teacher"], "the adapted teacher replicas differ: no all-reduce"
    assert r0["teacher"] != r0["teacher_initial"], "the adaptation did not change the teacher"
    assert r0["student"] == r1["student"], "the student replicas differ"
    assert r0["steps"] == list(range(1, STEPS + 1)) and r0["loss"] == r1["loss"]


def test_the_step_sees_the_planned_global_batch(setup, reference):
    base, _ = setup
    r0 = reference[0]
    plan = r0["plan"]
    assert plan["world_size"] == 2 and plan["per_device_batch"] == 2
    assert plan["grad_accum"] == 2 and plan["global_batch"] == 8  # 2 per device x 2 x 2
    assert r0["grad_accum"] == plan["grad_accum"] and r0["max_steps"] == STEPS
    state = torch.load(base / "ref" / "paper" / "checkpoints" / "student.pt",
                       weights_only=False, mmap=True)
    # the data position counts micro-batches over all ranks: sequences per optimizer step
    assert state["position"] * plan["per_device_batch"] == STEPS * plan["global_batch"]
    assert state["fingerprint"]["world"] == 2 and state["fingerprint"]["grad_accum"] == 2


def test_sigkill_then_resume_under_ddp_gives_the_uninterrupted_weights(setup, reference):
    base, corpus = setup
    killed = base / "killed"
    killed.mkdir()
    ckpt = killed / "paper" / "checkpoints" / "student.pt"
    proc = subprocess.Popen(_cmd(base, killed, corpus), env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the launcher and both ranks at once, at a random point after the first checkpoint
    kill_after_first_checkpoint(proc, ckpt, timeout_s=600, max_delay_s=0.5,
                                kill=lambda: os.killpg(proc.pid, signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "paper" / "student").exists()
    state = torch.load(ckpt, weights_only=False, mmap=True)
    assert 0 < state["step"] < STEPS
    resumed = _run(base, killed, corpus)
    assert resumed[0]["student"] == resumed[1]["student"]
    assert resumed[0]["student"] == reference[0]["student"]
    a = _weights(base / "ref" / "paper" / "student")
    b = _weights(killed / "paper" / "student")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
