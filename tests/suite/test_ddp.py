"""Multi-process runs under torchrun: 2 gloo processes on the CPU.

A random teacher of BERT-base's shape (12 layers, 768 wide, 12 heads, 3072 inner, the real
30,522-word vocabulary) is adapted with masked-LM (2 steps) and distilled into the paper's
6-layer student (6 steps) by `prepare_corpus` / `prepare_teacher` / `run_distillation`,
exactly as `python -m distil_utils.distill --profile paper` runs them, only with short
sequences, a local corpus and few steps. Checked: both replicas of the teacher and of the
student are bit-identical after training (gradients really were all-reduced), the
optimizer step saw the planned global batch, and a SIGKILL of the whole job followed by the
same command gives the uninterrupted run's weights. Also: the smoke profile's tiny teacher
under torchrun, fine-tuning refusing several processes, and an unprepared corpus refused.
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
from helpers import (
    ROOT,
    WORDS,
    kill_after_first_checkpoint,
    save_bert_base_teacher,
    subprocess_env,
    write_corpus,
)

from distil_utils.teacher import tiny_teacher

STEPS = 4
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return subprocess_env(TOKENIZERS_PARALLELISM="false")


WORKER = textwrap.dedent("""
    import hashlib, json, sys
    from distil_utils.config import get_config
    from distil_utils.devices import dist_info
    from distil_utils.distill import prepare_corpus, run_distillation
    from distil_utils.teacher import prepare_tokenizer
    from distil_utils.distill import prepare_teacher
    from distil_utils.recipe import plan
    from distil_utils.teacher import load_teacher
    from distil_utils.data import batch_stream
    from distil_utils.flops import run_throughput

    results, corpus, teacher_dir, steps, mode = sys.argv[1:6]
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
    if mode == "prepare":  # one process, before torchrun (what distill --prepare-corpus does)
        sys.exit(0)
    initial = digest(load_teacher(teacher_dir))
    teacher, _, report = prepare_teacher(cfg, tok, train, held)
    student, history = run_distillation(cfg, teacher, tok, train)
    rank, world = dist_info()
    # this rank's own real tokens, replayed from the data stream: the history's are global
    stream = batch_stream(train, cfg.batch_size, cfg.seed, tok.pad_token_id, rank=rank,
                          world=world)
    local = sum(int(b["attention_mask"].sum())
                for _, (_, b) in zip(range(cfg.max_steps * cfg.grad_accum), stream))
    speed = run_throughput(history, teacher.config, student.config,
                           cfg.batch_size * cfg.grad_accum * world, peak=1e12, skip=0,
                           world=world)
    out = {"rank": rank, "world": world, "plan": planned, "grad_accum": cfg.grad_accum,
           "local_tokens": local, "tokens": sum(h["tokens"] for h in history),
           "throughput": speed,
           "max_steps": cfg.max_steps, "teacher_initial": initial, "teacher": digest(teacher),
           "student": digest(student), "steps": [h["step"] for h in history],
           "loss": [h["loss"] for h in history]}
    with open(f"{results}/rank{rank}.json", "w") as fh:
        json.dump(out, fh)
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    corpus = write_corpus(base / "docs.txt", WORDS, 120, 6, 40, 5)
    save_bert_base_teacher(base / "teacher")
    (base / "worker.py").write_text(WORKER)
    return base, corpus


def _cmd(base: Path, results: Path, corpus: Path, mode: str = "train") -> list[str]:
    args = [str(base / "worker.py"), str(results), str(corpus), str(base / "teacher"),
            str(STEPS), mode]
    if mode == "prepare":  # the corpus is tokenised in one process before torchrun
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", *args]


def _run(base: Path, results: Path, corpus: Path) -> list[dict]:
    results.mkdir(parents=True, exist_ok=True)
    for mode in ("prepare", "train"):
        proc = subprocess.run(_cmd(base, results, corpus, mode), env=_env(),
                              capture_output=True, text=True, timeout=900)
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
    prep = subprocess.run(_cmd(base, killed, corpus, "prepare"), env=_env(), timeout=900)
    assert prep.returncode == 0
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


def test_throughput_and_mfu_are_per_device_under_ddp(reference):
    r0, r1 = reference
    # the history's tokens are the global batch's: both ranks' own real tokens, all-reduced
    assert r0["tokens"] == r1["tokens"] == r0["local_tokens"] + r1["local_tokens"]
    assert r0["local_tokens"] > 0 and r1["local_tokens"] > 0
    t = r0["throughput"]
    assert t["world"] == 2
    assert t["real_tokens_per_s_per_device"] == pytest.approx(t["real_tokens_per_s"] / 2)
    # MFU is one device's share of the model FLOPs against one device's peak
    assert t["mfu"] == pytest.approx(t["model_flops_per_s"] / 2 / t["peak_flops_per_s"])


REFUSE = textwrap.dedent("""
    import json, os, sys
    from distil_utils.config import get_config
    from distil_utils.finetune import glue_run

    results = sys.argv[1]
    cfg = get_config("smoke", results_dir=results)
    try:
        glue_run("minilm", "sst2", cfg, 42, output_dir=cfg.out / "finetuned" / "x")
    except RuntimeError as err:
        print("REFUSED", os.environ["RANK"], err, flush=True)
        sys.exit(3)
""")


def test_fine_tuning_refuses_several_processes_before_any_write(tmp_path):
    (tmp_path / "refuse.py").write_text(REFUSE)
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(tmp_path / "refuse.py"), str(results)], env=_env(), capture_output=True,
        text=True, timeout=300)
    assert proc.returncode != 0
    out = proc.stdout
    assert "REFUSED 0" in out and "REFUSED 1" in out, proc.stderr[-3000:]
    assert "fine-tuning runs in one process" in out and "WORLD_SIZE=2" in out
    assert not results.exists() or not any(results.rglob("*.json")), "a rank wrote results"


def test_ddp_distillation_refuses_an_unprepared_corpus_in_seconds(setup, tmp_path):
    base, corpus = setup
    results = tmp_path / "r"
    results.mkdir()
    proc = subprocess.run(_cmd(base, results, corpus, "train"), env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert "--prepare-corpus" in proc.stderr and "no tokenised corpus" in proc.stderr
    assert not (results / "paper" / "checkpoints").exists()


def test_torchrun_two_cpu_processes_keep_identical_replicas(tmp_path, corpus_file):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from distil_utils.config import get_config
        from distil_utils.devices import dist_info
        from distil_utils.distill import prepare_corpus, run_distillation
        from distil_utils.hub import load_tokenizer
        from distil_utils.teacher import tiny_teacher
        cfg = get_config("smoke", results_dir={str(tmp_path)!r}, corpus=({str(corpus_file)!r},),
                         corpus_max_docs=None, heldout_docs=10, max_seq_len=32, min_seq_len=4,
                         batch_size=4, max_steps=4, checkpoint_every=2, adapt_steps=0)
        tok = load_tokenizer("minilm")
        train, _ = prepare_corpus(cfg, tok)
        if "WORLD_SIZE" not in os.environ:  # one process first: distill --prepare-corpus
            raise SystemExit(0)
        teacher = tiny_teacher(len(tok), 2, 32, 2, 64, seed=0)
        student, hist = run_distillation(cfg, teacher, tok, train)
        rank, world = dist_info()
        assert world == 2
        torch.save(student.state_dict(), {str(tmp_path)!r} + f"/rank{{rank}}.pt")
        torch.distributed.destroy_process_group()
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    prep = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    init = tiny_teacher(30522, 2, 32, 2, 64, seed=0)
    assert not torch.equal(a["distilbert.transformer.layer.0.ffn.lin1.weight"],
                           init.bert.encoder.layer[0].intermediate.dense.weight)
    assert (tmp_path / "smoke" / "student" / "config.json").exists()
