"""The first command a GPU user runs: does the suite's GPU path work here, and how fast is it?

    python -m benchmarks.gpu_check                 # on one GPU, minutes, no Hub
    python -m benchmarks.gpu_check --dry-run       # the same checks, tiny, on the CPU

One JSON file (`--out`, default gpu_check.json) and a short table; send both with any issue
about a GPU run. Each check is recorded as ok, failed (with its error) or skipped (with the
reason); the exit status is 1 when one failed. The checks:

* **environment** — torch, CUDA, cuDNN, the device and its compute capability, whether bf16
  is native, the precision the suite picks (`devices.gpu_precision`), library versions.
* **gpu tests** — `pytest -m gpu tests/test_gpu.py` (the paper profile end to end).
* **step** — the paper's distillation step (`training.TrainStep`) at BERT-base's shape,
  512-token sequences, per-device batch 16, 32 and 64: real tokens/s, MFU against the
  measured and the datasheet peak, peak memory; out of memory is recorded, not fatal.
* **precision** — step-0 losses and gradients of fp32, TF32, bf16 and fp16 (scaled) on one
  batch, relative to fp32.
* **syncs** — host synchronisations per micro-step (`torch.cuda.set_sync_debug_mode`), and
  the micro-step on the `meta` device, where any synchronisation would raise.
* **ddp** — two processes on this GPU (gloo), a few `train_loop` steps: replicas identical.
* **finetune** — a few `Trainer` steps of a classifier through `finetune.training_args`.

`--dry-run` runs every check at tiny shapes on the CPU (CUDA-only parts are skipped with the
reason); tests/test_bench_gpu_check.py runs it so this command cannot rot unnoticed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_distill import time_steps
from distil_utils.config import get_config
from distil_utils.data import collate
from distil_utils.devices import gpu_precision, native_bf16, set_tf32
from distil_utils.distill import make_distill_loss
from distil_utils.finetune import make_trainer, training_args
from distil_utils.flops import distill_step_flops, matmul_peak, precision_dtype
from distil_utils.hub import load_tokenizer
from distil_utils.masking import masking_weights
from distil_utils.recipe import precision
from distil_utils.student import student_from_teacher
from distil_utils.training import TrainStep, make_accelerator, make_optimizer

ROOT = Path(__file__).resolve().parents[1]

# Dense (no sparsity) peak FLOP/s from the vendors' datasheets, by precision: the MFU against
# these is what papers report; the measured matmul peak is what this card reaches here.
DATASHEET = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "H100 SXM": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "H100 PCIe": {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "A10G": {"bf16": 70e12, "fp16": 70e12, "tf32": 35e12, "fp32": 31.2e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12},
    "T4": {"fp16": 65e12, "fp32": 8.1e12},
    "V100": {"fp16": 125e12, "fp32": 15.7e12},
}

# The shapes: the paper's on a GPU, tiny ones for --dry-run (same functions, same code path).
FULL = {"seq_len": 512, "batches": (16, 32, 64), "steps": 3, "layers": 12, "hidden": 768,
        "heads": 12, "inner": 3072, "ddp_seq_len": 128, "ddp_batch": 4}
DRY = {"seq_len": 24, "batches": (2, 4), "steps": 2, "layers": 4, "hidden": 32, "heads": 2,
       "inner": 64, "ddp_seq_len": 16, "ddp_batch": 2}


def datasheet_peak(name: str, prec: str) -> float | None:
    """The datasheet's dense peak of the GPU called `name` at `prec`, if this table knows it."""
    for key in sorted(DATASHEET, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if all(part in name for part in key.split()):
            return DATASHEET[key].get(prec)
    return None


def make_teacher(shape: dict[str, int]) -> torch.nn.Module:
    """A random `BertForMaskedLM` of BERT-base's shape (or tiny), the real vocabulary size."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(
        num_hidden_layers=shape["layers"], hidden_size=shape["hidden"],
        num_attention_heads=shape["heads"], intermediate_size=shape["inner"])).eval()


def random_batch(n: int, length: int, seed: int, padded: bool = False) -> dict[str, torch.Tensor]:
    """`n` sequences of `length` random word ids between [CLS] and [SEP]; with `padded` the
    odd ones are shorter (the paper's length-grouped batches of full sequences have no pad)."""
    rng = random.Random(seed)
    lengths = [length - (i % 2) * (length // 3) if padded else length for i in range(n)]
    return collate([[101] + [rng.randrange(1000, 30000) for _ in range(k - 2)] + [102]
                    for k in lengths], pad_id=0)


# ---------------------------------------------------------------------------- the checks
def check_environment(dev: torch.device) -> dict[str, Any]:
    import accelerate
    import transformers

    out: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda, "transformers": transformers.__version__,
        "accelerate": accelerate.__version__, "device": str(dev),
        "cuda_available": torch.cuda.is_available(), "gpus": torch.cuda.device_count()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        out.update(
            gpu=props.name, capability=list(torch.cuda.get_device_capability(dev)),
            memory_gb=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(), bf16_native=native_bf16(dev),
            bf16_including_emulation=torch.cuda.is_bf16_supported(),
            precision=gpu_precision(dev), nccl=".".join(map(str, torch.cuda.nccl.version())))
    return out


def check_gpu_tests(dry: bool) -> dict[str, Any]:
    tests = ROOT / "tests" / "test_gpu.py"
    if dry:
        return {"skipped": "dry run: the gpu tests need CUDA"}
    if not tests.exists():
        return {"skipped": f"{tests} not found: run from a clone of the repository"}
    import importlib.util

    if importlib.util.find_spec("pytest") is None:
        return {"skipped": "pytest is not installed: python3 -m distil_utils.tools.setup_env "
                "--dev installs it"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-s", str(tests)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0:
        raise RuntimeError("pytest -m gpu failed:\n" + "\n".join(lines[-30:]))
    return {"summary": lines[-1] if lines else "", "report": [
        ln for ln in proc.stdout.splitlines() if ln.startswith("[gpu]")]}


def _loss_fn(teacher: torch.nn.Module, cfg: Any, tok_size: int = 30522) -> Any:
    weights = masking_weights(None, [0, 100, 101, 102, 103], tok_size)
    return make_distill_loss(teacher, cfg, weights, 103, tok_size)


def check_step(dev: torch.device, shape: dict[str, Any], teacher: torch.nn.Module,
               student: torch.nn.Module) -> dict[str, Any]:
    cfg = get_config("paper", device=str(dev))
    amp = precision(cfg, dev)
    set_tf32(cfg.tf32, dev)  # as train_loop does: what stays float32 runs in TF32
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = matmul_peak(dev, precision_dtype(amp))
    sheet = datasheet_peak(name, amp or ("tf32" if dev.type == "cuda" else "fp32"))
    fn = _loss_fn(teacher, cfg)
    rows = []
    for b in shape["batches"]:
        batches = [random_batch(b, shape["seq_len"], seed=i) for i in range(shape["steps"])]
        try:
            res = time_steps(copy.deepcopy(student), fn, batches, cfg)
        except torch.OutOfMemoryError as err:
            rows.append({"per_device_batch": b, "out_of_memory": str(err).splitlines()[0]})
            torch.cuda.empty_cache()
            continue
        lengths = [shape["seq_len"]] * b
        flops = distill_step_flops(teacher.config, student.config, lengths)
        per_s = flops / res["seconds_per_step"]
        rows.append({
            "per_device_batch": b, "seq_len": shape["seq_len"],
            "seconds_per_step": res["seconds_per_step"],
            "real_tokens_per_s": res["real_tokens_per_s"], "model_flops_per_s": per_s,
            "mfu_measured_peak": per_s / peak,
            "mfu_datasheet": per_s / sheet if sheet else None,
            "peak_memory_mb": res.get("cuda_peak_mb", res.get("rss_peak_mb")),
            "losses": res["losses"]})
    return {"precision": amp or "fp32", "measured_peak_flops_per_s": peak,
            "datasheet_peak_flops_per_s": sheet, "gpu": name, "rows": rows}


def _one_step(model: torch.nn.Module, fn: Any, batch: dict, amp: str | None,
              dev: torch.device) -> tuple[dict[str, float], torch.Tensor]:
    """Step-0 losses and the flat gradient of `model` at precision `amp` (fp16 through a
    GradScaler, unscaled before it is read)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    ctx = (torch.autocast(dev.type, dtype=precision_dtype(amp)) if amp
           else contextlib.nullcontext())
    with ctx:
        out = fn(model, batch, torch.Generator().manual_seed(1))
    if amp == "fp16":
        scaler = torch.amp.GradScaler(dev.type)
        scaler.scale(out["loss"]).backward()
        scale = scaler.get_scale()
        grads = [p.grad.float() / scale for p in model.parameters() if p.grad is not None]
    else:
        out["loss"].backward()
        grads = [p.grad.float() for p in model.parameters() if p.grad is not None]
    return ({k: float(v.detach()) for k, v in out.items()},
            torch.cat([g.reshape(-1) for g in grads]))


def check_precision(dev: torch.device, shape: dict[str, Any], teacher: torch.nn.Module,
                    student: torch.nn.Module) -> dict[str, Any]:
    cfg = get_config("paper", device=str(dev), gpu_mixed_precision=False, tf32=False)
    fn = _loss_fn(teacher, cfg)
    batch = random_batch(2, shape["seq_len"], seed=0)  # on the host: the step masks it there
    modes: dict[str, Any] = {"fp32": None, "bf16": "bf16", "fp16+scaler": "fp16", "tf32": None}
    out: dict[str, Any] = {}
    ref_losses, ref_grad = None, None
    torch.set_float32_matmul_precision("highest")
    for mode, amp in modes.items():
        if mode == "tf32":
            if dev.type != "cuda" or torch.cuda.get_device_capability(dev)[0] < 8:
                out[mode] = {"skipped": "TF32 needs an Ampere or newer GPU"}
                continue
            set_tf32(True, dev)
        if mode == "fp16+scaler" and dev.type != "cuda":
            out[mode] = {"skipped": "fp16 with a loss scaler is the GPU path"}
            continue
        losses, grad = _one_step(copy.deepcopy(student).to(dev).train(), fn, batch, amp, dev)
        row: dict[str, Any] = {"losses": losses}
        if ref_losses is None:
            ref_losses, ref_grad = losses, grad
        else:
            row["loss_rel_diff"] = {k: abs(v - ref_losses[k]) / max(abs(ref_losses[k]), 1e-12)
                                    for k, v in losses.items()}
            row["grad_rel_diff"] = float((grad - ref_grad).norm() / ref_grad.norm())
            row["grad_cosine"] = float(torch.nn.functional.cosine_similarity(
                grad, ref_grad, dim=0))
        out[mode] = row
    torch.set_float32_matmul_precision("highest")
    return out


def check_syncs(dev: torch.device, shape: dict[str, Any], teacher: torch.nn.Module,
                student: torch.nn.Module) -> dict[str, Any]:
    cfg = get_config("paper", device=str(dev), grad_accum=4)
    out: dict[str, Any] = {}
    # on `meta` every data-dependent host synchronisation raises: the micro-step has none
    t_meta, s_meta = copy.deepcopy(teacher).to("meta"), copy.deepcopy(student).to("meta")
    out["meta_micro_step"] = _micro_steps(s_meta, _loss_fn(t_meta, cfg), cfg,
                                          torch.device("cpu"), shape, padded=False, n=2)
    out["meta_micro_step"] = "ok: no host synchronisation (it would raise on meta)"
    if dev.type != "cuda":
        out["cuda_syncs_per_micro_step"] = {"skipped": "the sync counter needs CUDA"}
        return out
    fn = _loss_fn(teacher, cfg)
    counts = {}
    for padded in (False, True):
        model = copy.deepcopy(student)
        _micro_steps(model, fn, cfg, dev, shape, padded, n=1)  # warm-up: allocator, cuBLAS
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                _micro_steps(model, fn, cfg, dev, shape, padded, n=4)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
        counts["padded" if padded else "unpadded"] = {
            "per_micro_step": len(syncs) / 4, "first": syncs[:3]}
    out["cuda_syncs_per_micro_step"] = counts
    return out


def _micro_steps(student: torch.nn.Module, fn: Any, cfg: Any, acc_dev: torch.device,
                 shape: dict[str, Any], padded: bool, n: int) -> None:
    student.train()
    opt, sched = make_optimizer([{"params": list(student.parameters())}], cfg, 1e-4, 10)
    step = TrainStep(student, fn, make_accelerator(cfg, acc_dev), opt, sched, cfg)
    step.gen.manual_seed(0)
    for i in range(n):
        step.micro_step(random_batch(2, shape["seq_len"], seed=i, padded=padded),
                        last=i == n - 1)


DDP_WORKER = textwrap.dedent("""
    import hashlib, json, sys
    import datasets, torch
    from distil_utils.config import get_config
    from distil_utils.devices import dist_info
    from distil_utils.masking import masking_weights
    from distil_utils.distill import make_distill_loss
    from distil_utils.student import student_from_teacher
    from benchmarks.gpu_check import DRY, FULL, make_teacher, random_batch
    from distil_utils.training import train_loop

    out_dir, device, dry = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    shape = DRY if dry else FULL
    if device == "cuda":  # both ranks on the one GPU, gloo between them (NCCL refuses that)
        torch.distributed.init_process_group("gloo")
    rank, world = dist_info(300)
    teacher = make_teacher(shape)
    student = student_from_teacher(teacher)
    cfg = get_config("paper", device=device, results_dir=out_dir, batch_size=shape["ddp_batch"],
                     grad_accum=2, global_batch=None, epochs=None, max_steps=3,
                     checkpoint_every=1000, log_every=1000, dist_timeout_s=300,
                     explicit_none=("global_batch", "epochs"))
    seqs = [random_batch(1, shape["ddp_seq_len"] - (i % 5), seed=i)["input_ids"][0].tolist()
            for i in range(64)]
    train = datasets.Dataset.from_dict({"input_ids": seqs, "length": [len(s) for s in seqs]})
    weights = masking_weights(None, [0, 100, 101, 102, 103], 30522)
    teacher.to(device)
    fn = make_distill_loss(teacher, cfg, weights, 103, 30522)
    history = train_loop(student, fn, train, cfg=cfg, max_steps=3, lr=1e-4,
                         ckpt_path=f"{out_dir}/ckpt{rank}.pt", fingerprint={"gpu_check": 1},
                         pad_id=0, desc="ddp check")
    h = hashlib.sha256()
    for k, v in sorted(student.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    json.dump({"rank": rank, "world": world, "device": str(next(student.parameters()).device),
               "digest": h.hexdigest(), "loss": [r["loss"] for r in history]},
              open(f"{out_dir}/rank{rank}.json", "w"))
    torch.distributed.destroy_process_group()
""")


def check_ddp(dev: torch.device, dry: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "worker.py").write_text(DDP_WORKER)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for rank in (0, 1):
            env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                   "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port), "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1",
                   "OMP_NUM_THREADS": "1"}
            procs.append(subprocess.Popen(
                [sys.executable, str(Path(tmp) / "worker.py"), tmp, dev.type,
                 "1" if dry else "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True))
        errs = []
        for p in procs:
            try:
                _, err = p.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            if p.returncode != 0:
                errs.append(err[-3000:])
        if errs:
            raise RuntimeError("a DDP rank failed:\n" + "\n".join(errs))
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in (0, 1)]
    same = ranks[0]["digest"] == ranks[1]["digest"]
    if not same or ranks[0]["loss"] != ranks[1]["loss"]:
        raise RuntimeError(f"the DDP replicas differ after training: {ranks}")
    return {"world": 2, "backend": "gloo", "devices": [r["device"] for r in ranks],
            "replicas_identical": same, "loss": ranks[0]["loss"]}


def check_finetune(dev: torch.device, shape: dict[str, Any], student: torch.nn.Module,
                   dry: bool) -> dict[str, Any]:
    import datasets
    from transformers import DistilBertForSequenceClassification


    tok = load_tokenizer("minilm")
    words = "the film was good bad slow fast dull bright and very not at all".split()
    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(64)]
    ds = datasets.Dataset.from_dict({"text": texts, "label": [int("good" in t) for t in texts]})
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=32), batched=True,
                remove_columns=["text"])
    with tempfile.TemporaryDirectory() as tmp:
        student.save_pretrained(tmp)
        model = DistilBertForSequenceClassification.from_pretrained(tmp, num_labels=2)
        cfg = get_config("smoke", ft_batch_size=8)
        args = training_args(cfg, 0, str(Path(tmp) / "run"), 1.0, max_steps=4 if dry else 20,
                             save_strategy="no")
        trainer = make_trainer(model, tok, args, ds)
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
    loss = float(result.training_loss)
    if not loss == loss or loss in (float("inf"), float("-inf")):
        raise RuntimeError(f"fine-tuning loss is {loss}")
    return {"device": str(trainer.model.device), "bf16": args.bf16, "fp16": args.fp16,
            "steps": result.global_step, "train_loss": loss, "seconds": seconds}


# ------------------------------------------------------------------------ the command
def run_checks(dry: bool, only: set[str] | None = None) -> dict[str, Any]:
    if not dry and not torch.cuda.is_available():
        raise SystemExit("error: torch sees no CUDA device (torch "
                         f"{torch.__version__}, CUDA build {torch.version.cuda}): install the "
                         "CUDA build (python3 -m distil_utils.tools.setup_env) or run "
                         "--dry-run to check the same code on the CPU at tiny shapes")
    dev = torch.device("cuda", torch.cuda.current_device()) if not dry else torch.device("cpu")
    shape = DRY if dry else FULL
    report: dict[str, Any] = {"command": " ".join(sys.argv), "dry_run": dry, "checks": {}}
    teacher = make_teacher(shape).to(dev)
    student = student_from_teacher(teacher)
    checks: dict[str, Callable[[], dict[str, Any]]] = {
        "environment": lambda: check_environment(dev),
        "precision": lambda: check_precision(dev, shape, teacher, student),
        "step": lambda: check_step(dev, shape, teacher, student),
        "syncs": lambda: check_syncs(dev, shape, teacher, student),
        "ddp": lambda: check_ddp(dev, dry),
        "finetune": lambda: check_finetune(dev, shape, student, dry),
        "gpu_tests": lambda: check_gpu_tests(dry),
    }
    for name, fn in checks.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            row = fn()
            status = "skipped" if set(row) == {"skipped"} else "ok"
        except Exception as err:  # a failed check is reported, and the others still run
            row = {"error": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc()[-4000:]}
            status = "failed"
        report["checks"][name] = {"status": status, "seconds": time.perf_counter() - t0, **row}
        print(f"[gpu_check] {name}: {status} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return report


def table(report: dict[str, Any]) -> str:
    """The short table printed after the run."""
    c = report["checks"]
    lines = [f"{'check':<12} {'status':<8} result"]
    env = c.get("environment", {})
    for name, row in c.items():
        if row["status"] != "ok":
            lines.append(f"{name:<12} {row['status']:<8} "
                         f"{row.get('error', row.get('skipped', ''))[:100]}")
            continue
        if name == "environment":
            what = (f"torch {env['torch']} (CUDA {env['torch_cuda_build']}), {env['device']}"
                    + (f" {env['gpu']} sm{''.join(map(str, env['capability']))}, bf16 native "
                       f"{env['bf16_native']}, precision {env['precision']}"
                       if "gpu" in env else ""))
        elif name == "step":
            parts = []
            for r in row["rows"]:
                if "out_of_memory" in r:
                    parts.append(f"b{r['per_device_batch']}: OOM")
                    continue
                sheet = (f", {100 * r['mfu_datasheet']:.0f}% datasheet"
                         if r["mfu_datasheet"] else "")
                parts.append(f"b{r['per_device_batch']}: {r['real_tokens_per_s']:,.0f} tok/s, "
                             f"MFU {100 * r['mfu_measured_peak']:.0f}% measured{sheet}, "
                             f"{r['peak_memory_mb']:,.0f} MB")
            what = f"{row['precision']}; " + "; ".join(parts)
        elif name == "precision":
            what = "; ".join(
                f"{m}: " + (r["skipped"] if "skipped" in r else
                            "ref" if "loss_rel_diff" not in r else
                            f"loss {r['loss_rel_diff']['loss']:.1e}, grad {r['grad_rel_diff']:.1e}")
                for m, r in row.items() if isinstance(r, dict) and m not in ("status",))
        elif name == "syncs":
            cuda = row["cuda_syncs_per_micro_step"]
            what = ("meta: none; " + ("; ".join(f"{k}: {v['per_micro_step']:g}/micro-step"
                                                 for k, v in cuda.items())
                                       if "skipped" not in cuda else cuda["skipped"]))
        elif name == "ddp":
            what = (f"2 ranks ({row['backend']}) on {row['devices']}, replicas identical "
                    f"{row['replicas_identical']}")
        elif name == "finetune":
            what = (f"{row['steps']} Trainer steps on {row['device']} (bf16 {row['bf16']}, "
                    f"fp16 {row['fp16']}), loss {row['train_loss']:.3f}")
        else:
            what = row.get("summary", "")
        lines.append(f"{name:<12} {'ok':<8} {what}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="every check at tiny shapes on the CPU (what the test suite runs)")
    ap.add_argument("--out", default="gpu_check.json",
                    help="the JSON report (default: %(default)s)")
    ap.add_argument("--only", default=None,
                    help="comma-separated checks: environment,precision,step,syncs,ddp,"
                    "finetune,gpu_tests")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    report = run_checks(args.dry_run, only)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(out)  # atomic: no half-written report after a kill
    print(table(report))
    print(f"[gpu_check] report: {out.resolve()}")
    return 1 if any(c["status"] == "failed" for c in report["checks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
