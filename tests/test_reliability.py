"""Reliability: a killed run resumes to the same weights; bad input fails early and clearly.

Each case asserts the error type and that the message names the problem (and, where there is
one, the fix).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import kill_after_first_checkpoint, make_tiny_bert, write_corpus

from distil_utils.config import get_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    words = "alpha beta gamma delta river mountain city music science history".split()
    return write_corpus(tmp_path_factory.mktemp("corpus") / "docs.txt", words, 200, 6, 50, 3)


def _cli(results: Path, corpus: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "distil_utils.distill", "--profile", "smoke",
            "-p", "results_dir", str(results), "-p", "corpus", f"('{corpus}',)",
            "-p", "corpus_max_docs", "None", "-p", "heldout_docs", "10",
            "-p", "max_seq_len", "32", "-p", "batch_size", "4", "-p", "adapt_steps", "0",
            "-p", "max_steps", str(steps), "-p", "checkpoint_every", "2"]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path, corpus):
    steps = 40
    ref = subprocess.run(_cli(tmp_path / "ref", corpus, steps), env=_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]

    killed = tmp_path / "killed"
    ckpt = killed / "smoke" / "checkpoints" / "student.pt"
    proc = subprocess.Popen(_cli(killed, corpus, steps), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_after_first_checkpoint(proc, ckpt, timeout_s=300, max_delay_s=1.0,
                                kill=lambda: proc.send_signal(signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "smoke" / "student").exists()
    state = torch.load(ckpt, weights_only=False)  # whole: written by rename, never in place
    assert 0 < state["step"] < steps

    resumed = subprocess.run(_cli(killed, corpus, steps), env=_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from safetensors.torch import load_file

    a = load_file(tmp_path / "ref" / "smoke" / "student" / "model.safetensors")
    b = load_file(killed / "smoke" / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_tokenizer_that_does_not_match_the_teacher(tokenizer):
    from distil_utils.teacher import check_vocab

    with pytest.raises(ValueError, match="tokenizer has 30522 tokens but the teacher embeds 999"):
        check_vocab(make_tiny_bert(layers=2, vocab=999), tokenizer)


def test_teacher_that_is_not_a_bert_masked_lm(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from distil_utils.student import student_from_teacher
    from distil_utils.teacher import load_teacher

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(TypeError, match="'gpt2' model.*BertForMaskedLM"):
        load_teacher(tmp_path / "gpt2")
    with pytest.raises(TypeError, match="BertForMaskedLM"):
        student_from_teacher(make_tiny_bert(layers=2).bert)


def test_layer_indices(tokenizer):
    from distil_utils.student import student_from_teacher

    teacher = make_tiny_bert(layers=4)
    with pytest.raises(ValueError, match="out of range.*0..3"):
        student_from_teacher(teacher, (0, 4))
    with pytest.raises(ValueError, match="repeat"):
        student_from_teacher(teacher, (0, 0, 3))


def test_empty_corpus_and_corpus_too_short(tmp_path, tokenizer):
    from distil_utils.data import load_corpus, tokenize_corpus

    (tmp_path / "c.txt").write_text("one two\nthree\n")
    cfg = get_config("smoke", corpus=(str(tmp_path / "c.txt"),), corpus_max_docs=None,
                     heldout_docs=1)
    docs, _ = load_corpus(cfg)
    with pytest.raises(ValueError, match="no sequence of the corpus reaches min_seq_len"):
        tokenize_corpus(docs, tokenizer, 64, 8)
    with pytest.raises(ValueError, match="nothing is left to train on"):
        load_corpus(get_config("smoke", corpus=(str(tmp_path / "c.txt"),),
                               corpus_max_docs=None, heldout_docs=5))


def test_data_dir_without_the_split(tmp_path):
    from distil_utils.hub import load_split

    (tmp_path / "glue" / "sst2").mkdir(parents=True)
    (tmp_path / "glue" / "sst2" / "validation.jsonl").write_text('{"sentence": "a", "label": 1}\n')
    with pytest.raises(FileNotFoundError, match="no split 'train'.*DISTIL_DATA_DIR"):
        load_split("glue/sst2", "train", tmp_path)
    assert len(load_split("glue/sst2", "validation", tmp_path)) == 1


def test_temperature_and_weights():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        get_config("smoke", temperature=0.0)
    with pytest.raises(ValueError, match="alpha_ce must be >= 0"):
        get_config("smoke", alpha_ce=-1.0)


def test_corrupt_teacher_checkpoint(tmp_path):
    from distil_utils.teacher import load_teacher

    make_tiny_bert(layers=2).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(OSError, match="truncated or corrupt"):
        load_teacher(tmp_path)


def test_same_seed_same_numbers(tmp_path, corpus):
    """Two runs of one seed give identical loss histories and weights (timings aside)."""
    outs = []
    for name in ("a", "b"):
        run = subprocess.run(_cli(tmp_path / name, corpus, 6), env=_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        import json

        hist = json.loads((tmp_path / name / "smoke" / "student_history.json").read_text())
        outs.append([{k: v for k, v in h.items() if k != "seconds"}
                     for h in hist["metrics"]["history"]])
    assert outs[0] == outs[1]


# --- every artefact knows what made it (issue: no stale, silent or lost results) -----------------

def _small(tmp_path, corpus, **kw):
    """The smoke profile on a small text corpus: a 2-layer tiny teacher, 2 steps of each."""
    base = dict(results_dir=str(tmp_path), corpus=(str(corpus),), corpus_max_docs=None,
                heldout_docs=10, max_seq_len=32, min_seq_len=4, batch_size=4, adapt_steps=2,
                max_steps=2, checkpoint_every=1, log_every=1, eval_batches=1, tiny_layers=2,
                tiny_hidden=32, tiny_intermediate=64)
    base.update(kw)
    return get_config("smoke", **base)


def _prepared(cfg):
    from distil_utils.distill import prepare_corpus, prepare_teacher
    from distil_utils.teacher import prepare_tokenizer

    tok = prepare_tokenizer(cfg)
    train, held = prepare_corpus(cfg, tok)
    teacher, path, report = prepare_teacher(cfg, tok, train, held)
    return tok, train, held, teacher, path, report


def test_cached_teacher_is_rebuilt_when_its_settings_change_and_keeps_its_report(tmp_path,
                                                                                 corpus):
    from distil_utils.artefacts import read_stamp

    cfg = _small(tmp_path, corpus)
    tok, train, held, _, path, report = _prepared(cfg)
    first = read_stamp(path)
    assert first["settings"]["seed"] == 42 and report["steps"] == 2
    assert first["report"] == report  # the report travels inside the teacher's folder
    (cfg.out / "teacher_adaptation.json").unlink()  # as if killed between the two writes
    *_, again = _prepared(cfg)
    assert again == report and (cfg.out / "teacher_adaptation.json").exists()
    assert read_stamp(path)["created"] == first["created"], "a current teacher is reused"
    # another seed: the cached teacher (and its finished checkpoint) are not reused
    _prepared(_small(tmp_path, corpus, seed=7))
    assert read_stamp(path)["settings"]["seed"] == 7
    report_file = json.loads((cfg.out / "teacher_adaptation.json").read_text())
    assert report_file["provenance"]["seed"] == 7


def test_downstream_refuses_a_student_made_under_other_settings(tmp_path, corpus):
    from distil_utils.artefacts import StaleArtefactError, read_stamp
    from distil_utils.distill import run_distillation
    from distil_utils.pipeline import ensure_models

    cfg = _small(tmp_path, corpus)
    tok, train, _, teacher, teacher_path, _ = _prepared(cfg)
    run_distillation(cfg, teacher, tok, train)
    stamp = read_stamp(cfg.out / "student")
    assert stamp["inputs"]["teacher"] == read_stamp(teacher_path)["digest"]
    assert ensure_models(cfg)[2] == str(cfg.out / "student")
    with pytest.raises(StaleArtefactError, match=r"max_steps: 2 -> 3.*--only 03"):
        ensure_models(_small(tmp_path, corpus, max_steps=3))
    # a student distilled again under the same settings is loaded, not trained again
    student, history = run_distillation(cfg, teacher, tok, train)
    assert read_stamp(cfg.out / "student")["created"] == stamp["created"] and len(history) == 2


@pytest.mark.parametrize("key, value", [("heldout_docs", 11), ("tiny_heads", 4),
                                        ("distill_autocast", "bf16")])
def test_resume_refuses_any_setting_that_changes_the_run(tmp_path, corpus, key, value):
    from distil_utils.checkpoint import CheckpointError
    from distil_utils.distill import run_distillation

    cfg = _small(tmp_path, corpus, max_steps=4, adapt_steps=0)
    tok, train, _, teacher, _, _ = _prepared(cfg)
    run_distillation(cfg, teacher, tok, train, stop_at=2)  # unfinished: step 2 of 4
    with pytest.raises(CheckpointError, match=f"{key}: checkpoint .* vs now {value!r}"):
        run_distillation(_small(tmp_path, corpus, max_steps=4, adapt_steps=0, **{key: value}),
                         teacher, tok, train)


def test_non_finite_loss_stops_the_run_before_anything_is_saved(tmp_path, corpus):
    from distil_utils.distill import run_distillation
    from distil_utils.training import NonFiniteLossError

    cfg = _small(tmp_path, corpus, adapt_steps=0)
    tok, train, _, teacher, _, _ = _prepared(cfg)
    with torch.no_grad():
        teacher.bert.encoder.layer[0].output.dense.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"distil student: .*(ce|cos)=nan.* at step 1"):
        run_distillation(cfg, teacher, tok, train)
    assert not (cfg.out / "student").exists()
    assert not (cfg.out / "checkpoints" / "student.pt").exists()


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(lr=float("inf")), "lr must be a finite number"),
    (dict(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0), "all 0"),
    (dict(max_grad_norm=0.0), "max_grad_norm must be > 0"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(max_steps="abc"), "max_steps must be a whole number.*'abc'"),
    (dict(student_layers=3), r"student_layers must be a tuple.*\(0, 2, 5\)"),
    (dict(heldout_docs=0), "heldout_docs must be >= 1.*held-out"),
    (dict(checkpoint_every=0), "checkpoint_every must be >= 1"),
    (dict(ft_seeds=()), "ft_seeds is empty"),
    (dict(corpus=("/no/such/corpus.txt",)), "corpus entry '/no/such/corpus.txt'"),
    (dict(data_dir="/no/such/mirror"), "data_dir /no/such/mirror is not a folder"),
])
def test_bad_values_are_refused_naming_the_setting(kw, match):
    from distil_utils.validation import SettingError

    with pytest.raises(SettingError, match=match):
        get_config("smoke", **kw)


def test_a_string_for_a_list_setting_is_one_item_not_its_characters(tmp_path, corpus):
    assert get_config("smoke", glue_tasks="sst2").glue_tasks == ("sst2",)
    assert get_config("smoke", corpus=str(corpus)).corpus == (str(corpus),)


def test_corpus_files_that_cannot_be_read_are_named(tmp_path):
    from distil_utils.validation import SettingError

    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 3)
    with pytest.raises(SettingError, match="empty.txt is empty"):
        get_config("smoke", corpus=(str(tmp_path / "empty.txt"),))
    with pytest.raises(SettingError, match="latin1.txt is not UTF-8 .*byte 3"):
        get_config("smoke", corpus=(str(tmp_path / "latin1.txt"),))


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


def test_garbage_results_json_is_an_error_naming_the_file(tmp_path):
    from distil_utils.summary import collect

    (tmp_path / "04_glue.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"04_glue.json is not valid JSON.*delete it"):
        collect(tmp_path)


def _lock_script(out, what, hold):
    code = ("import sys, time\nfrom distil_utils.results_io import lock_results\n"
            f"lock_results(sys.argv[1], {what!r})\nprint('held', flush=True)\n"
            + ("time.sleep(120)\n" if hold else ""))
    return [sys.executable, "-c", code, str(out)]


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(tmp_path, corpus):
    from distil_utils.results_io import LOCK_ENV

    env = {k: v for k, v in _env().items() if k != LOCK_ENV}
    out = tmp_path / "smoke"
    holder = subprocess.Popen(_lock_script(out, "notebook 04_glue", True), env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(_lock_script(out, "second", False), env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "being written by another run" in second.stderr
        assert "notebook 04_glue" in second.stderr and f'"pid": {holder.pid}' in second.stderr
        cli = subprocess.run(_cli(tmp_path, corpus, 2), env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert cli.returncode == 2 and "being written by another run" in cli.stderr
    finally:
        holder.kill()
        holder.wait()
    # what a killed write leaves behind is removed by the next writer
    (out / ".glue_student.json.abc123.tmp").write_text("{half")
    (out / ".student.tmp").mkdir()
    third = subprocess.run(_lock_script(out, "third", False), env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert not (out / ".glue_student.json.abc123.tmp").exists()
    assert not (out / ".student.tmp").exists()


def test_tokenizer_of_the_right_size_with_other_tokens_is_refused(tokenizer, tmp_path,
                                                                 tiny_bert_dir):
    from transformers import BertForMaskedLM, BertTokenizerFast

    from distil_utils.artefacts import vocab_digest
    from distil_utils.teacher import check_vocab

    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    tokens[2000], tokens[2001] = tokens[2001], tokens[2000]
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    other = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    assert len(other) == len(tokenizer)
    teacher = make_tiny_bert(layers=2)
    teacher.config.distil_vocab_sha256 = vocab_digest(tokenizer)  # what save_model records
    check_vocab(teacher, tokenizer)
    with pytest.raises(ValueError, match="other tokens"):
        check_vocab(teacher, other)
    saved = BertForMaskedLM.from_pretrained(tiny_bert_dir)  # no digest: its saved tokenizer
    check_vocab(saved, tokenizer)
    with pytest.raises(ValueError, match="other tokens"):
        check_vocab(saved, other)


# --- fine-tuning: once per task and seed, resumable, never overwriting good results ------------

def _ft_cfg(tmp_path, data_dir, **kw):
    return get_config("smoke", results_dir=str(tmp_path), data_dir=str(data_dir),
                      ft_max_train=48, ft_max_eval=16, ft_batch_size=8, ft_epochs=1.0,
                      ft_checkpoint_every=2, ft_task_overrides={}, **kw)


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
                             str(tmp_path), str(data_dir)], env=_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    cfg = _ft_cfg(tmp_path, data_dir)
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


def test_a_data_folder_without_glue_keeps_the_good_results_file(tmp_path, tiny_bert_dir):
    from distil_utils.finetune import run_glue

    empty = tmp_path / "mirror"
    empty.mkdir()
    cfg = get_config("smoke", results_dir=str(tmp_path), data_dir=str(empty))
    good = cfg.out / "glue_student.json"
    good.parent.mkdir(parents=True)
    good.write_text('{"metrics": {"score": 80.0}}')
    with pytest.raises(FileNotFoundError, match="none of the GLUE tasks"):
        run_glue(str(tiny_bert_dir), cfg, "student")
    assert good.read_text() == '{"metrics": {"score": 80.0}}'


# --- the runner's --skip-done: what a notebook read and wrote ------------------------------------

WRITES = """from distil_utils.config import get_config
from distil_utils.artefacts import write_result
cfg = get_config(PROFILE, results_dir=RESULTS_DIR)
write_result(cfg.out / "01_a.json", {"v": 1}, cfg)"""
READS = """from distil_utils.config import get_config
from distil_utils.results_io import read_result
from distil_utils.artefacts import write_result
cfg = get_config(PROFILE, results_dir=RESULTS_DIR)
v = read_result(cfg.out / "01_a.json")["metrics"]["v"]
write_result(cfg.out / "02_b.json", {"v": 2 * v}, cfg)"""


def test_skip_done_compares_every_file_a_notebook_read_and_wrote(tmp_path):
    import nbformat

    from distil_utils.tools.reproduce import run_suite

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, body in [("01_write", WRITES), ("02_read", READS)]:
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("PROFILE = 'smoke'\nRESULTS_DIR = None")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, nbs / f"{name}.ipynb")
    res = tmp_path / "results"
    out = res / "smoke"

    def run():
        done = run_suite("smoke", notebooks_dir=nbs, results_dir=str(res), skip_done=True,
                         quiet=True)
        return [r["status"] for r in done]

    assert run() == ["ok", "ok"]
    log = json.loads((out / "reproduce_log.json").read_text())["runs"]
    assert "01_a.json" in log[0]["files"] and set(log[1]["files"]) == {"01_a.json",
                                                                      "02_b.json"}
    assert run() == ["skipped", "skipped"]
    (out / "02_b.json").unlink()  # a deleted result: only its notebook runs again
    assert run() == ["skipped", "ok"]
    (out / "01_a.json").unlink()  # an upstream result re-made: everything downstream runs
    assert run() == ["ok", "ok"]
    data = json.loads((out / "reproduce_log.json").read_text())
    for rec in data["runs"]:
        rec.pop("files")  # a log without files (older, or committed without the models)
    (out / "reproduce_log.json").write_text(json.dumps(data))
    assert run() == ["ok", "ok"]


def test_the_summary_refuses_results_of_a_student_made_again_since(tmp_path, tokenizer):
    from distil_utils.artefacts import StaleArtefactError, make_stamp, save_model, write_result
    from distil_utils.summary import collect

    cfg = get_config("smoke", results_dir=str(tmp_path))
    student = cfg.out / "student"
    save_model(make_tiny_bert(layers=2), tokenizer, student, make_stamp("student", {"v": 1}, {}))
    write_result(cfg.out / "04_glue.json", {"models": {}}, cfg, student=str(student))
    assert "04_glue" in collect(cfg.out)
    save_model(make_tiny_bert(layers=2), tokenizer, student, make_stamp("student", {"v": 2}, {}))
    with pytest.raises(StaleArtefactError, match=r"04_glue.json: student .*Re-run"):
        collect(cfg.out)


def test_a_checkpoint_that_does_not_fit_the_model_is_a_clear_error(tmp_path, corpus):
    from distil_utils.checkpoint import CheckpointError
    from distil_utils.distill import run_distillation

    cfg = _small(tmp_path, corpus, max_steps=4, adapt_steps=0)
    tok, train, _, teacher, _, _ = _prepared(cfg)
    run_distillation(cfg, teacher, tok, train, stop_at=2)
    wider = make_tiny_bert(layers=2, hidden=64)  # same settings, another model: no raw error
    with pytest.raises(CheckpointError, match=r"student.pt does not fit this model.*Delete it"):
        run_distillation(cfg, wider, tok, train)
